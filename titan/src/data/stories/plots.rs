//! Plots: problem -> resolution -> moral. Each returns whether the story ends at home (so
//! the closing line does not send the friends home twice).
//!
//! One file although it is over 500 lines: it is one catalogue of nine plots of the same
//! shape, each a run of sentence choices whose order is the RNG stream; splitting it would
//! only scatter the catalogue.

use rand_chacha::ChaCha8Rng;

use super::render::{Ctx, Doc};
use super::rng::{chance, pick};

pub(super) fn plot_lost(rng: &mut ChaCha8Rng, doc: &mut Doc) -> bool {
    doc.say_pick(
        rng,
        &[
            "{Name} had brought {his} {obj}. {He} loved it very much, because {his} {adult} had given it to {him}.",
            "{Name} had {a_obj} with {him}. It was {his} favorite toy in the whole world.",
            "{Name} had brought {his} {obj} along. {He} took it everywhere {he} went.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            "But after a while, {Name} looked down, and the {obj} was gone!",
            "Later, when it was time to go home, {Name} could not find {his} {obj}.",
            "Suddenly, {Name} stopped. Where was {his} {obj}?",
        ],
    );
    doc.say_pick(
        rng,
        &[
            r#""Oh no! I lost my {obj}!" {he} cried."#,
            "{Name} felt very sad. Tears filled {his} eyes.",
            r#""My {obj}! Where is it?" {Name} said in a shaky voice."#,
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            r#""Don't worry," said {Friend}. "I will help you find it.""#,
            r#"{Friend} gave {Name} a hug. "Let's look for it together," {fhe} said."#,
            r#""We will find it," said {Friend}. "Let's look everywhere!""#,
        ],
    );
    doc.say_pick(
        rng,
        &[
            "They looked {spot1}. They looked {spot2}. But the {obj} was not there.",
            "First they looked {spot1}. Then they looked {spot2}. Still no {obj}.",
            "They searched {spot1} and {spot2}, but they could not find it.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            r#"Then {Friend} shouted, "Look! There it is!" The {obj} was {spot3}."#,
            "At last, {Name} saw it. The {obj} was {spot3}!",
            r#"Then {Name} had an idea. "Maybe it is {spot3}," {he} said. And it was!"#,
        ],
    );
    doc.say_pick(
        rng,
        &[
            r#"{Name} picked up the {obj} and hugged it tight. "Thank you, {Friend}!" {he} said."#,
            "{Name} was so happy. {He} gave {Friend} a big hug.",
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            "{Name} learned that good friends always help each other.",
            "{Name} was glad to have a friend like {Friend}.",
            "From then on, {Name} always kept a close eye on {his} {obj}.",
        ],
    );
    false
}

pub(super) fn plot_sharing(rng: &mut ChaCha8Rng, doc: &mut Doc) -> bool {
    doc.say_pick(
        rng,
        &[
            "{Name} had brought {a_obj}. It was brand new, and {he} loved it very much.",
            "{Name} had a new {obj}, and {he} played with it happily.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            r#"{Friend} watched. "Can I play with your {obj} too?" {fhe} asked."#,
            r#""Can I have a turn?" asked {Friend}."#,
        ],
    );
    doc.say_pick(
        rng,
        &[
            r#""No!" said {Name}. "It is mine.""#,
            r#"{Name} held the {obj} tight. "No, it is mine," {he} said."#,
        ],
    );
    doc.say_pick(
        rng,
        &[
            "{Friend} looked down at the ground. {Fhe} sat down all alone.",
            "{Friend} felt sad and walked away.",
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            "{Name} played with the {obj}, but it was not much fun.",
            "Soon, playing alone was not fun anymore.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            "{He} looked at {Friend}, and {he} felt bad inside.",
            "{Name} saw that {Friend} was sad, and {he} felt sorry.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            r#"{Name} walked over to {Friend}. "I am sorry," {he} said. "Do you want to play with my {obj}?""#,
            r#""Here, you can have a turn," said {Name}, and {he} gave {Friend} the {obj}."#,
        ],
    );
    doc.say_pick(
        rng,
        &[
            r#"{Friend} smiled a big smile. "Thank you!" {fhe} said."#,
            "{Friend}'s face lit up.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            "They took turns with the {obj}, and they laughed and laughed.",
            "They played with the {obj} together, and it was much more fun.",
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            "{Name} learned that sharing makes everyone happy.",
            "{Name} learned that playing together is better than playing alone.",
            "Sharing was not so hard after all.",
        ],
    );
    false
}

pub(super) fn plot_newcomer(rng: &mut ChaCha8Rng, doc: &mut Doc) -> bool {
    doc.say_pick(
        rng,
        &[
            "Then {Name} saw {a_okind} standing all alone.",
            "After a while, {Friend} saw {a_okind} sitting all alone.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            "{Ohis} name was {Other}, and {ohe} {owas} new in town.",
            "{Ohis} name was {Other}. {Ohe} had just moved here and did not know anyone yet.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            "{Other} looked shy. {Ohe} watched them play.",
            "{Other} wanted to join in, but {ohe} {owas} too shy to ask.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            r#"At last, {Other} walked over slowly. "Can I play too?" {ohe} asked."#,
            r#""Can I play too?" asked {Other} in a small voice."#,
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            r#""Of course!" said {Name}. "Come and play with us!""#,
            r#""Yes! The more, the merrier!" said {Friend}."#,
        ],
    );
    doc.say_pick(rng, &["{Other} smiled.", "{Other}'s face lit up."]);
    doc.say_pick(
        rng,
        &[
            "{Other} knew a fun new game called {game}, and {ohe} showed the others how to play.",
            "{Other} taught them a game called {game}. It was very silly and very fun.",
            "The three friends {act2} together.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            "They laughed and played until it was time to go home.",
            "Soon it felt like they had always been friends.",
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            "{Name} learned that there is always room for one more friend.",
            "Now {Name} had two good friends instead of one.",
            "{Name} learned that it is kind to ask others to play.",
        ],
    );
    false
}

pub(super) fn plot_fear(rng: &mut ChaCha8Rng, doc: &mut Doc) -> bool {
    doc.say_pick(
        rng,
        &[
            r#"Then {Friend} pointed at {brave_thing}. "Let's {brave_do}!" {fhe} said."#,
            r#""Let's {brave_do}!" said {Friend}."#,
        ],
    );
    doc.say("But {Name} was scared. {Brave_thing} looked {brave_look}.");
    doc.say_pick(
        rng,
        &[
            r#""I don't want to," said {Name} in a small voice. "I am scared.""#,
            r#"{Name} shook {his} head. "What if something bad happens?" {he} asked."#,
            r#""I can't do it," {Name} whispered."#,
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            r#"{Friend} held {Name}'s {hand}. "It is okay to be scared," {fhe} said. "We can do it together.""#,
            r#""I will be right next to you," said {Friend}. "You can do it!""#,
        ],
    );
    doc.say_pick(
        rng,
        &[
            "{Name} took a deep breath. One, two, three!",
            "{Name} counted to three. Then {he} {was} ready.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            "{He} {brave_done} with {Friend}. It was not scary at all. It was fun!",
            "{Name} and {Friend} {brave_done}. It was not scary. It was great!",
        ],
    );
    doc.say_pick(
        rng,
        &[
            r#""Again! Again!" laughed {Name}."#,
            r#""I did it!" shouted {Name}."#,
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            "{Name} felt very brave and proud.",
            "{Name} learned that being brave means trying, even when you feel a little scared.",
            "Sometimes the things that look scary are the most fun.",
        ],
    );
    false
}

/// Small creatures in trouble: (how we meet it, how it is saved, how it says thanks).
const CREATURES: &[(&str, &str, &str)] = &[
    (
        r#"Then they heard a small sound. "Meow! Meow!" It was a little kitten, stuck high up in a tree."#,
        "{Name} stood on a big rock and reached up as high as {he} could. Very gently, {he} lifted the kitten down.",
        "The kitten purred and rubbed against {Name}'s leg.",
    ),
    (
        r#"Then they heard a tiny sound. "Cheep! Cheep!" A baby bird had fallen out of its nest."#,
        "{Friend} helped {Name} climb up, and {Name} put the baby bird back in its nest, safe and sound.",
        "The mother bird sang a happy song.",
    ),
    (
        r#"Then they heard a sad little sound. "Yip! Yip!" A small puppy was stuck in a thick, prickly bush."#,
        "{Name} and {Friend} moved the branches away, one by one. At last, the puppy wiggled out.",
        "The puppy wagged its tail and licked {Name}'s face.",
    ),
    (
        r#"Then they saw a tiny yellow duckling. "Peep! Peep!" it cried. It was lost, and it could not find its mother."#,
        "They looked and looked until they found a mother duck with her babies. The little duckling ran to her as fast as it could.",
        "The mother duck quacked, as if to say thank you.",
    ),
    (
        "Then they saw a little turtle lying on its back. Its legs kicked in the air, but it could not turn over.",
        "{Name} gently turned the turtle over.",
        "The turtle poked its head out and slowly walked away, safe and happy.",
    ),
    (
        "Then they saw a little bunny. Its foot was stuck under a heavy branch.",
        "{Name} and {Friend} pushed and pulled. At last, they lifted the branch, and the bunny hopped free.",
        "The bunny wiggled its nose and hopped away happily.",
    ),
];

pub(super) fn plot_rescue(rng: &mut ChaCha8Rng, doc: &mut Doc, ctx: &mut Ctx) -> bool {
    let (meet, save, thanks) = *pick(rng, CREATURES);
    ctx.set("creature_meet", meet);
    ctx.set("creature_save", save);
    ctx.set("creature_thanks", thanks);
    doc.say("{creature_meet}");
    doc.say_pick(
        rng,
        &[
            r#""Oh no! It needs help!" said {Friend}."#,
            r#""We have to help it," said {Name}."#,
            r#""Poor little thing," said {Name}. "Let's help it.""#,
        ],
    );
    doc.para();
    doc.say("{creature_save}");
    doc.say("{creature_thanks}");
    doc.say_pick(
        rng,
        &[
            r#""We did it!" said {Friend}, and they gave each other a high five."#,
            "{Name} and {Friend} smiled at each other.",
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            "Helping others made {Name} feel warm and happy inside.",
            "{Name} learned that it feels good to help others.",
            "{Name} and {Friend} were proud that they had helped.",
        ],
    );
    false
}

pub(super) fn plot_rain(rng: &mut ChaCha8Rng, doc: &mut Doc, ctx: &mut Ctx) -> bool {
    const IDEAS: &[(&str, &str)] = &[
        ("sing a song about the rain", "sang a song about the rain"),
        ("tell funny stories", "told each other funny stories"),
        ("play a guessing game", "played a guessing game"),
        ("count the raindrops", "counted the raindrops"),
    ];
    let (idea, idea_done) = *pick(rng, IDEAS);
    ctx.set("idea", idea);
    ctx.set("idea_done", idea_done);
    let (thinker, other) = if chance(rng, 50) {
        ("{Name}", "{Friend}")
    } else {
        ("{Friend}", "{Name}")
    };
    ctx.set("thinker", thinker);
    ctx.set("sad_one", other);

    doc.say_pick(
        rng,
        &[
            "Suddenly, dark clouds filled the sky.",
            "Then the wind began to blow, and big gray clouds rolled in.",
            "But soon, the sky turned gray.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            "Drip, drop! It started to rain.",
            "Then big drops of rain began to fall.",
            "Plop, plop, plop! Rain began to fall.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            r#""Oh no!" cried {Friend}. "We are getting wet!""#,
            r#""Quick, let's find a dry place!" said {Name}."#,
        ],
    );
    doc.say_pick(
        rng,
        &[
            "They ran {shelter} and waited.",
            "They hurried {shelter} to stay dry.",
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            r#""Now we can't play," said {sad_one} sadly."#,
            r#""Our fun day is ruined," said {sad_one}."#,
        ],
    );
    doc.say(r#"Then {thinker} had an idea. "Let's {idea}!""#);
    doc.say_pick(
        rng,
        &[
            "So they {idea_done}. They laughed so much that they forgot about the rain.",
            "So they {idea_done}, and soon they were giggling.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            "Soon the rain stopped, and the sun came out again.",
            "After a while, the rain stopped.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            r#"Then they saw a big, bright rainbow across the sky! "Wow!" said {Name}. "It is so beautiful!""#,
            r#"A rainbow came out over {the_place}. "Look at all the colors!" said {Friend}."#,
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            "{Name} learned that a rainy day can still be a happy day.",
            "Even a rainy day can be fun with a good friend.",
        ],
    );
    false
}

pub(super) fn plot_practice(rng: &mut ChaCha8Rng, doc: &mut Doc, ctx: &mut Ctx) -> bool {
    // (what to try, a failed try starting with "But", the successful try)
    const SKILLS: &[(&str, &str, &str)] = &[
        (
            "fly {his} new kite",
            "But the kite just bumped along the ground.",
            "This time, the wind caught the kite, and up, up, up it went, high into the sky!",
        ),
        (
            "learn how to whistle",
            "But {he} puffed and puffed, and only air came out.",
            "This time, a clear little whistle came out!",
        ),
        (
            "learn to jump rope",
            "But the rope got stuck on {his} feet.",
            "This time, {he} jumped once, twice, three times, and more. Ten jumps in a row!",
        ),
        (
            "do a cartwheel",
            "But {he} wobbled and fell down in a heap.",
            "This time, {his} legs went up and over, and {he} landed on {his} feet!",
        ),
        (
            "throw a ball into a bucket",
            "But the ball bounced off the edge and rolled away.",
            "This time, the ball flew through the air and landed right in the bucket. Plop!",
        ),
        (
            "build a tall tower of stones",
            "But the tower wobbled and fell down.",
            "This time, {he} went slowly and carefully. The tower stood tall and did not fall!",
        ),
    ];
    let (want, fail, success) = *pick(rng, SKILLS);
    ctx.set("skill", want);
    ctx.set("skill_fail", fail);
    ctx.set("skill_win", success);

    doc.say_pick(
        rng,
        &[
            "{Name} wanted to {skill}.",
            "{Name} really wanted to {skill}, but {he} had never done it before.",
        ],
    );
    doc.say("{He} tried. {skill_fail}");
    doc.say_pick(
        rng,
        &[
            "{He} tried again, but it did not work.",
            "{He} tried one more time. It still did not work.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            r#"{Name} felt sad. "I can't do it," {he} said."#,
            r#"{Name} sat down with a frown. "It is too hard," {he} said."#,
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            r#""Don't give up," said {Friend}. "Everyone has to practice.""#,
            r#""You are getting better every time," said {Friend}. "Try again!""#,
            r#""I know you can do it," said {Friend}."#,
        ],
    );
    doc.say_pick(
        rng,
        &[
            "So {Name} tried again. And again. And again.",
            "{Name} stood up and tried one more time.",
        ],
    );
    doc.say("{skill_win}");
    doc.say_pick(
        rng,
        &[
            r#""I did it!" shouted {Name}. {Friend} clapped and cheered."#,
            r#""Hooray!" cried {Friend}. "You did it!""#,
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            "{Name} learned that if you keep trying, you can do hard things.",
            "{Name} felt very proud. Practice really does help.",
            "{Name} learned never to give up.",
        ],
    );
    false
}

pub(super) fn plot_honesty(rng: &mut ChaCha8Rng, doc: &mut Doc, ctx: &mut Ctx) -> bool {
    const FRAGILE: &[&str] = &[
        "vase",
        "cup",
        "lamp",
        "flower pot",
        "bowl",
        "teapot",
        "picture frame",
    ];
    ctx.set("fragile", *pick(rng, FRAGILE));

    doc.say_pick(
        rng,
        &[
            "When they got home, {Name} and {Friend} played with a ball in the living room.",
            "Later, back at home, {Name} and {Friend} played catch inside the house.",
        ],
    );
    if chance(rng, 40) {
        doc.say(r#"{His} {adult} had said, "No balls in the house," but they forgot."#);
    }
    doc.say_pick(
        rng,
        &[
            "{Name} threw the ball too high. Crash! It hit {his} {adult}'s favorite {fragile}, and the {fragile} broke.",
            "Oops! The ball bounced off the wall and hit {his} {adult}'s favorite {fragile}. It fell to the floor and broke into pieces.",
        ],
    );
    doc.say_pick(
        rng,
        &[
            r#""What do we do?" whispered {Friend}."#,
            r#"{Name} felt scared. "Maybe we can hide it," {he} said."#,
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            r#"{Friend} shook {fhis} head. "We should tell the truth," {fhe} said."#,
            "{Name} thought about it. Hiding it would not be right.",
        ],
    );
    doc.say(
        r#"{Name} walked slowly to {his} {adult}. "I am sorry," {he} said. "I broke your {fragile}.""#,
    );
    doc.say_pick(
        rng,
        &[
            "{His} {adult} looked at the pieces. Then {ahe} gave {Name} a big hug.",
            "{His} {adult} was quiet for a moment. Then {ahe} smiled.",
        ],
    );
    doc.say(r#""Thank you for telling me the truth," {ahe} said. "I am proud of you.""#);
    doc.say_pick(
        rng,
        &[
            "Together, they cleaned up the pieces.",
            "Then they all glued the {fragile} back together.",
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            "{Name} learned that it is always best to tell the truth.",
            "Telling the truth was hard, but {Name} felt much better after.",
        ],
    );
    true
}

pub(super) fn plot_gift(rng: &mut ChaCha8Rng, doc: &mut Doc, ctx: &mut Ctx) -> bool {
    // (how the present is made, what the maker says when giving it)
    const GIFTS: &[(&str, &str)] = &[
        (
            "picked the prettiest flowers {he} could find and tied them with a ribbon",
            "I picked them just for you.",
        ),
        (
            "drew a picture of the two friends playing together",
            "I drew it just for you.",
        ),
        (
            "made a card with a big red heart on it",
            "I made it just for you.",
        ),
        (
            "found a smooth, round stone and painted a smiling face on it",
            "I painted it just for you.",
        ),
        (
            "made a paper crown with gold stars on it",
            "I made it just for you.",
        ),
    ];
    let (make, give) = *pick(rng, GIFTS);
    ctx.set("gift_make", make);
    ctx.set("gift_give", give);

    doc.say_pick(
        rng,
        &[
            "On the way home, {Name} remembered something. Tomorrow was {Friend}'s birthday!",
            "That evening, {Name} remembered that the next day was {Friend}'s birthday.",
        ],
    );
    doc.say("{Name} wanted to give {Friend} a present, but {he} did not have any money.");
    doc.say("{Name} thought and thought. Then {he} had an idea.");
    doc.para();
    doc.say("{He} {gift_make}.");
    doc.say(r#"The next day, {Name} gave the present to {Friend}. "Happy birthday!" {he} said. "{gift_give}""#);
    doc.say_pick(
        rng,
        &[
            r#"{Friend} smiled from ear to ear. "This is the best present ever!" {fhe} said."#,
            r#"{Friend}'s eyes grew wide. "I love it!" {fhe} cried, and {fhe} gave {Name} a big hug."#,
        ],
    );
    doc.para();
    doc.say_pick(
        rng,
        &[
            "{Name} learned that the best presents come from the heart.",
            "{Name} learned that a gift made with love is worth more than gold.",
        ],
    );
    true
}
