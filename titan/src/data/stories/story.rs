//! Story assembly: casts the characters, fills in the template values, then tells an
//! opening, one plot and a closing line. The order of the draws here is the corpus: the
//! same seed and index must keep giving the same text.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::cast::make_person;
use super::places::PLACES;
use super::plots::{
    plot_fear, plot_gift, plot_honesty, plot_lost, plot_newcomer, plot_practice, plot_rain,
    plot_rescue, plot_sharing,
};
use super::render::{Ctx, Doc, with_article};
use super::rng::{chance, pick, pick_distinct};
use super::words::{ADULTS, COLORS, GAMES, HOBBIES, HOMES, TIMES, TOYS, WEATHER};

pub(super) fn build_story(rng: &mut ChaCha8Rng) -> String {
    let hero = make_person(rng, &[]);
    let friend = make_person(rng, &[hero.name]);
    let other = make_person(rng, &[hero.name, friend.name]);
    let place = pick(rng, PLACES);
    let (adult, adult_gender) = *pick(rng, ADULTS);
    let toy = format!("{} {}", pick(rng, COLORS), pick(rng, TOYS));

    let mut ctx = Ctx::new();
    ctx.set("Name", hero.name);
    ctx.set("kind", hero.kind.as_str());
    ctx.set("a_kind", with_article(&hero.kind));
    ctx.set("hand", hero.hand);
    ctx.set_pronouns(["he", "him", "his", "was"], hero.gender);
    ctx.set("Friend", friend.name);
    ctx.set("a_fkind", with_article(&friend.kind));
    ctx.set_pronouns(["fhe", "fhim", "fhis", "fwas"], friend.gender);
    ctx.set("Other", other.name);
    ctx.set("a_okind", with_article(&other.kind));
    ctx.set_pronouns(["ohe", "ohim", "ohis", "owas"], other.gender);
    ctx.set("adult", adult);
    ctx.set_pronouns(["ahe", "ahim", "ahis", "awas"], adult_gender);
    ctx.set("obj", toy.as_str());
    ctx.set("a_obj", with_article(&toy));
    ctx.set("to_place", place.to);
    ctx.set("the_place", place.the);
    ctx.set("time", *pick(rng, TIMES));
    ctx.set("home", *pick(rng, HOMES));
    let hobbies = pick_distinct(rng, HOBBIES, 2);
    ctx.set("hobby", *hobbies[0]);
    ctx.set("hobby2", *hobbies[1]);
    let acts = pick_distinct(rng, place.acts, 2);
    ctx.set("act1", *acts[0]);
    ctx.set("act2", *acts[1]);
    let spots = pick_distinct(rng, place.spots, 3);
    ctx.set("spot1", *spots[0]);
    ctx.set("spot2", *spots[1]);
    ctx.set("spot3", *spots[2]);
    ctx.set("shelter", place.shelter);
    ctx.set("sight", *pick(rng, place.sights));
    ctx.set("game", *pick(rng, GAMES));
    ctx.set("brave_thing", place.brave.0);
    ctx.set("brave_look", place.brave.1);
    ctx.set("brave_do", place.brave.2);
    ctx.set("brave_done", place.brave.3);

    let mut doc = Doc::new();
    if chance(rng, 75) {
        intro_long(rng, &mut doc);
        doc.para();
        outing(rng, &mut doc);
    } else {
        intro_short(rng, &mut doc);
    }
    doc.para();

    let at_home = match rng.random_range(0..8u32) {
        0 => plot_lost(rng, &mut doc),
        1 => plot_sharing(rng, &mut doc),
        2 => plot_newcomer(rng, &mut doc),
        3 => plot_fear(rng, &mut doc),
        4 => plot_rescue(rng, &mut doc, &mut ctx),
        5 => plot_rain(rng, &mut doc, &mut ctx),
        6 => plot_practice(rng, &mut doc, &mut ctx),
        _ => {
            if chance(rng, 50) {
                plot_honesty(rng, &mut doc, &mut ctx)
            } else {
                plot_gift(rng, &mut doc, &mut ctx)
            }
        }
    };
    closing(rng, &mut doc, at_home);
    doc.finish(&ctx)
}

/// Classic opening: who the hero is, where they live, and who their friend is.
fn intro_long(rng: &mut ChaCha8Rng, doc: &mut Doc) {
    // (template, mentions home)
    const ONCE: &[(&str, bool)] = &[
        ("Once upon a time, there was {a_kind} named {Name}.", false),
        ("Once upon a time, there was {a_kind} called {Name}.", false),
        (
            "Once upon a time, {a_kind} named {Name} lived {home}.",
            true,
        ),
        (
            "Once upon a time, in a land not far away, there lived {a_kind} named {Name}.",
            false,
        ),
    ];
    const OTHER: &[(&str, bool)] = &[
        (
            "There was once {a_kind} named {Name} who lived {home}.",
            true,
        ),
        ("Long ago, there lived {a_kind} called {Name}.", false),
        ("{Name} was {a_kind} who lived {home}.", true),
        ("There was once {a_kind} called {Name}.", false),
    ];
    let (opening, has_home) = if chance(rng, 65) {
        *pick(rng, ONCE)
    } else {
        *pick(rng, OTHER)
    };
    doc.say(opening);
    if !has_home && chance(rng, 70) {
        doc.say_pick(
            rng,
            &[
                "{He} lived with {his} {adult} {home}.",
                "{He} lived {home}.",
                "{Name} and {his} family lived {home}.",
            ],
        );
    }
    doc.say_pick(
        rng,
        &[
            "{He} loved to {hobby}.",
            "More than anything, {Name} loved to {hobby}.",
            "Every day, {he} liked to {hobby}.",
            "{Name} liked to {hobby} and {hobby2}.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            "{His} best friend was {a_fkind} named {Friend}.",
            "{Name} had a best friend, {a_fkind} called {Friend}.",
            "{Name}'s best friend was {Friend}, {a_fkind}.",
            "{Name} had a good friend named {Friend}. {Friend} was {a_fkind}.",
        ],
    );
}

/// The friends go somewhere and play before the plot starts.
fn outing(rng: &mut ChaCha8Rng, doc: &mut Doc) {
    doc.say_pick(
        rng,
        &[
            "{Time}, {Name} and {Friend} went {to_place}.",
            "{Time}, {Name} asked {Friend} to come {to_place}.",
            "{Time}, the two friends went {to_place} to play.",
            "{Time}, {Name} and {Friend} walked {to_place} together.",
        ],
    );
    scenery(rng, doc);
    play(rng, doc);
}

/// "One day, ..." opening that meets the hero already on the way out.
fn intro_short(rng: &mut ChaCha8Rng, doc: &mut Doc) {
    doc.say_pick(
        rng,
        &[
            "{Time}, {a_kind} named {Name} went {to_place} with {his} best friend, {Friend}.",
            "{Time}, {a_kind} called {Name} and {his} friend {Friend} went {to_place}.",
        ],
    );
    if chance(rng, 60) {
        doc.say_pick(
            rng,
            &[
                "{Friend} was {a_fkind}.",
                "{Friend} was {a_fkind} who loved to {hobby2}.",
            ],
        );
    }
    scenery(rng, doc);
    play(rng, doc);
}

fn scenery(rng: &mut ChaCha8Rng, doc: &mut Doc) {
    if chance(rng, 75) {
        doc.say_pick(rng, WEATHER);
    }
    if chance(rng, 70) {
        doc.say("{sight}");
    }
}

fn play(rng: &mut ChaCha8Rng, doc: &mut Doc) {
    doc.say_pick(
        rng,
        &[
            "They {act1} and {act2}.",
            "First, they {act1}. Then they {act2}.",
            "{Name} and {Friend} {act1}.",
            "They {act1}, and then they {act2}.",
        ],
    );
    if chance(rng, 45) {
        doc.say_pick(
            rng,
            &[
                r#""I love this place!" said {Friend}."#,
                r#""This is so much fun!" {Name} laughed."#,
                r#""What a perfect day!" said {Name}."#,
                r#""I am so happy we came to {the_place}," said {Friend}."#,
            ],
        );
    }
}

/// Ends the story with an optional closing line after the plot's moral.
fn closing(rng: &mut ChaCha8Rng, doc: &mut Doc, at_home: bool) {
    if !chance(rng, 70) {
        return;
    }
    let line = if !at_home && chance(rng, 25) {
        "When the sun went down, the friends walked home, tired and happy."
    } else {
        *pick(
            rng,
            &[
                "From that day on, {Name} and {Friend} played together every day.",
                "That night, {Name} went to sleep with a big smile on {his} face.",
                "It was a wonderful day.",
                "And that is how {Name} had the best day ever.",
                "It was a day {Name} would always remember.",
            ],
        )
    };
    doc.say(line);
}
