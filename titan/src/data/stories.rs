//! Built-in training corpus: seeded, template-generated children's stories.
//!
//! All word lists and templates here were written for this project, so the
//! default corpus carries no third-party text or licence. The language is kept
//! small and repetitive on purpose: a tiny model with a small BPE vocabulary
//! can learn it quickly, while the combinations of characters, places, plots
//! and sentence variants keep the number of distinct stories very large.
//!
//! Every story is a pure function of `(seed, index)`, so any shard of the
//! corpus can be regenerated anywhere without storing it.

use std::ops::Range;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Settings for the built-in story corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoryConfig {
    /// Base seed; changing it yields a different corpus of the same style.
    pub seed: u64,
    /// How many stories make up one pass over the corpus.
    pub num_stories: usize,
}

impl Default for StoryConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            num_stories: 20_000,
        }
    }
}

/// Seeded generator of simple children's stories; story `i` depends only on (seed, i).
#[derive(Debug, Clone)]
pub struct StoryGenerator {
    config: StoryConfig,
}

impl StoryGenerator {
    /// Creates a generator; nothing is precomputed, stories are built on demand.
    pub fn new(config: StoryConfig) -> Self {
        Self { config }
    }

    /// The settings this generator was built with.
    pub fn config(&self) -> &StoryConfig {
        &self.config
    }

    /// The story at `index` (deterministic: same seed and index -> same text).
    ///
    /// Indices past `len()` are valid too; `len()` only sizes one epoch.
    pub fn story(&self, index: u64) -> String {
        let mut rng = story_rng(self.config.seed, index);
        build_story(&mut rng)
    }

    /// Iterator over stories `range`.
    pub fn stories(&self, range: Range<u64>) -> impl Iterator<Item = String> + '_ {
        range.map(move |index| self.story(index))
    }

    /// Number of stories in one pass over the corpus (`config.num_stories`).
    pub fn len(&self) -> usize {
        self.config.num_stories
    }

    /// True when the configured corpus holds no stories.
    pub fn is_empty(&self) -> bool {
        self.config.num_stories == 0
    }
}

/// SplitMix64 finaliser: spreads nearby seeds/indices over the whole key space
/// so that story `i` and story `i + 1` get unrelated RNG streams.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Per-story RNG, independent of iteration order and platform word size.
fn story_rng(seed: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(splitmix64(seed ^ splitmix64(index)))
}

// ---------------------------------------------------------------------------
// Random helpers. Ranges are sampled as u32 so results do not depend on the
// width of usize.
// ---------------------------------------------------------------------------

/// Uniform pick from a non-empty constant table.
fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    let n = u32::try_from(items.len()).unwrap_or(u32::MAX).max(1);
    &items[rng.random_range(0..n) as usize]
}

/// `n` distinct picks (fewer if the table is shorter), via a partial shuffle.
fn pick_distinct<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T], n: usize) -> Vec<&'a T> {
    let mut idx: Vec<usize> = (0..items.len()).collect();
    let n = n.min(idx.len());
    for i in 0..n {
        let remaining = u32::try_from(idx.len() - i).unwrap_or(u32::MAX);
        let j = i + rng.random_range(0..remaining) as usize;
        idx.swap(i, j);
    }
    idx[..n].iter().map(|&i| &items[i]).collect()
}

/// True with probability `percent`/100.
fn chance(rng: &mut ChaCha8Rng, percent: u32) -> bool {
    rng.random_range(0..100u32) < percent
}

// ---------------------------------------------------------------------------
// Word lists.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gender {
    She,
    He,
    They,
}

impl Gender {
    fn subject(self) -> &'static str {
        match self {
            Gender::She => "she",
            Gender::He => "he",
            Gender::They => "they",
        }
    }
    fn object(self) -> &'static str {
        match self {
            Gender::She => "her",
            Gender::He => "him",
            Gender::They => "them",
        }
    }
    fn possessive(self) -> &'static str {
        match self {
            Gender::She => "her",
            Gender::He => "his",
            Gender::They => "their",
        }
    }
    /// Past tense of "to be"; singular "they" still takes "were".
    fn was(self) -> &'static str {
        match self {
            Gender::They => "were",
            _ => "was",
        }
    }
}

const SHE_NAMES: &[&str] = &[
    "Lily", "Mia", "Emma", "Rose", "Ella", "Lucy", "Anna", "Zoe", "Ruby", "Grace", "Nora", "Sara",
    "Maya", "Ivy", "Daisy", "Lena", "Amy", "Kate", "Molly", "Hana", "Priya", "Julia", "Olive",
    "Bella", "Luna", "Poppy", "Clara", "Nina", "Tess", "Fern",
];

const HE_NAMES: &[&str] = &[
    "Tom", "Ben", "Max", "Leo", "Jack", "Finn", "Noah", "Jake", "Owen", "Luke", "Tim", "Eli",
    "Omar", "Ravi", "Dan", "Theo", "Milo", "Oscar", "Hugo", "Felix", "Toby", "Jonah", "Ivan",
    "Rex", "Bruno", "Otis",
];

const ANY_NAMES: &[&str] = &[
    "Sam", "Alex", "Robin", "Kim", "Jo", "Riley", "Charlie", "Pat", "Remy", "Sky", "Kai", "Jamie",
    "Ari", "Rowan", "Pip", "Coco", "Sunny", "Wren",
];

const KIND_ADJECTIVES: &[&str] = &[
    "little",
    "small",
    "brave",
    "kind",
    "happy",
    "curious",
    "shy",
    "silly",
    "clever",
    "gentle",
    "cheerful",
    "friendly",
    "playful",
    "tiny",
    "busy",
    "brave little",
    "happy little",
    "sweet little",
];

/// Animal kinds with the body part a friend holds to comfort them.
const ANIMALS: &[(&str, &str)] = &[
    ("dog", "paw"),
    ("puppy", "paw"),
    ("cat", "paw"),
    ("kitten", "paw"),
    ("bunny", "paw"),
    ("bear", "paw"),
    ("fox", "paw"),
    ("mouse", "paw"),
    ("squirrel", "paw"),
    ("lion", "paw"),
    ("hedgehog", "paw"),
    ("duck", "wing"),
    ("bird", "wing"),
    ("owl", "wing"),
    ("penguin", "wing"),
    ("frog", "hand"),
    ("turtle", "foot"),
    ("elephant", "trunk"),
];

/// Grown-up relatives; each has a fixed pronoun so adult lines stay simple.
const ADULTS: &[(&str, Gender)] = &[
    ("mom", Gender::She),
    ("dad", Gender::He),
    ("grandma", Gender::She),
    ("grandpa", Gender::He),
    ("aunt", Gender::She),
    ("uncle", Gender::He),
];

const HOMES: &[&str] = &[
    "in a small house with a red door",
    "on a quiet farm",
    "in a little town by the sea",
    "near a big green forest",
    "in a busy city",
    "in a village on a hill",
    "in a cozy house by a lake",
    "in a yellow house at the end of a long road",
    "in a little white house with a garden",
    "in a tall building with many windows",
];

const HOBBIES: &[&str] = &[
    "play outside",
    "draw pictures",
    "sing songs",
    "read books",
    "run and jump",
    "build things with blocks",
    "look at the stars",
    "splash in puddles",
    "help in the garden",
    "dance",
    "make up funny games",
    "climb trees",
    "play ball",
    "bake cookies with {his} {adult}",
    "listen to stories",
    "collect pretty rocks",
];

const TIMES: &[&str] = &[
    "one day",
    "one morning",
    "one sunny morning",
    "one afternoon",
    "one bright day",
    "on Saturday",
    "early one morning",
    "one warm afternoon",
    "one fine day",
];

const WEATHER: &[&str] = &[
    "The sun was shining.",
    "The sky was blue, and the sun was warm.",
    "A soft wind was blowing.",
    "It was a bright, warm day.",
    "A few fluffy clouds floated in the sky.",
    "The air smelled fresh and sweet.",
];

/// Made-up playground games the newcomer teaches.
const GAMES: &[&str] = &[
    "Hop and Stop",
    "Sleepy Bear",
    "Frog Jump",
    "Catch the Wind",
    "Sticky Feet",
    "Silly Statues",
];

const COLORS: &[&str] = &[
    "red", "blue", "yellow", "green", "orange", "purple", "pink", "shiny", "striped",
];

const TOYS: &[&str] = &[
    "ball",
    "kite",
    "hat",
    "teddy bear",
    "toy car",
    "toy boat",
    "book",
    "scarf",
    "drum",
    "doll",
    "robot",
    "yo-yo",
    "balloon",
    "bucket",
    "toy truck",
    "toy train",
    "puppet",
    "umbrella",
];

/// A place the friends visit, with details that keep each plot consistent
/// with where it happens.
struct Place {
    to: &'static str,
    sights: &'static [&'static str],
    /// Past-tense verb phrases with a plural subject.
    acts: &'static [&'static str],
    /// Where a lost thing can turn up; at least three entries.
    spots: &'static [&'static str],
    /// Where to run from the rain, with a motion preposition ("under", "into").
    shelter: &'static str,
    /// Something a little scary here: (thing, how it looks, do it, did it).
    brave: (&'static str, &'static str, &'static str, &'static str),
    /// The place name with "the", for dialogue.
    the: &'static str,
}

const PLACES: &[Place] = &[
    Place {
        to: "to the park",
        the: "the park",
        sights: &[
            "The grass was soft and green.",
            "Birds sang in the tall trees.",
            "Ducks swam on the little pond.",
        ],
        acts: &[
            "played on the swings",
            "ran on the soft grass",
            "fed the ducks",
            "played tag",
            "threw a ball back and forth",
        ],
        spots: &[
            "under a bench",
            "behind a big tree",
            "in the tall grass",
            "next to the swings",
            "by the pond",
        ],
        shelter: "under a big oak tree",
        brave: (
            "the big slide",
            "so tall",
            "go down the big slide",
            "went down the big slide",
        ),
    },
    Place {
        to: "to the beach",
        the: "the beach",
        sights: &[
            "The sand was warm and soft.",
            "Little waves splashed on the shore.",
            "White birds flew over the blue sea.",
        ],
        acts: &[
            "built a big sand castle",
            "looked for pretty shells",
            "splashed in the waves",
            "dug a deep hole in the sand",
            "ran along the water",
        ],
        spots: &[
            "under a pile of sand",
            "behind a big rock",
            "next to the sand castle",
            "near the water",
            "under a beach towel",
        ],
        shelter: "under a big beach umbrella",
        brave: ("the waves", "so big", "swim in the sea", "swam in the sea"),
    },
    Place {
        to: "to the forest",
        the: "the forest",
        sights: &[
            "Tall trees grew all around.",
            "Sunlight came down through the green leaves.",
            "A squirrel ran up a tree.",
        ],
        acts: &[
            "picked berries",
            "looked for mushrooms",
            "walked along a little path",
            "listened to the birds",
            "jumped over logs",
        ],
        spots: &[
            "under a pile of leaves",
            "behind an old log",
            "next to a big mushroom",
            "under a bush",
            "inside a hollow tree",
        ],
        shelter: "under a big tree with thick leaves",
        brave: (
            "the little cave",
            "so dark",
            "look inside the little cave",
            "looked inside the little cave",
        ),
    },
    Place {
        to: "to the garden",
        the: "the garden",
        sights: &[
            "Bright flowers grew in long rows.",
            "Bees buzzed from flower to flower.",
            "Big red tomatoes hung on the plants.",
        ],
        acts: &[
            "watered the flowers",
            "dug in the dirt",
            "picked some peas",
            "chased butterflies",
            "looked for worms",
        ],
        spots: &[
            "under a big leaf",
            "behind the flower pots",
            "next to the watering can",
            "in the tall beans",
            "under the garden bench",
        ],
        shelter: "into the little garden shed",
        brave: (
            "the old tree house",
            "so high",
            "climb up to the tree house",
            "climbed up to the tree house",
        ),
    },
    Place {
        to: "to the farm",
        the: "the farm",
        sights: &[
            "Cows ate grass in the field.",
            "Hens clucked in the yard.",
            "A big red barn stood on the hill.",
        ],
        acts: &[
            "fed the hens",
            "patted the cows",
            "jumped in the hay",
            "looked for eggs",
            "watched the baby goats",
        ],
        spots: &[
            "in the hay",
            "behind the barn door",
            "next to the big tractor",
            "under the fence",
            "by the water trough",
        ],
        shelter: "into the big red barn",
        brave: (
            "the big horse",
            "so tall",
            "ride the big horse",
            "rode the big horse",
        ),
    },
    Place {
        to: "to the lake",
        the: "the lake",
        sights: &[
            "The water was blue and still.",
            "Frogs sat on green lily pads.",
            "Little fish swam near the shore.",
        ],
        acts: &[
            "skipped stones on the water",
            "watched the frogs",
            "fed the ducks",
            "sailed a little paper boat",
            "put their feet in the cool water",
        ],
        spots: &[
            "behind the tall reeds",
            "under the wooden dock",
            "next to a big stone",
            "in the soft mud",
            "under a bush by the shore",
        ],
        shelter: "under a big willow tree",
        brave: (
            "the little rowboat",
            "so wobbly",
            "get in the little rowboat",
            "got in the little rowboat",
        ),
    },
    Place {
        to: "to the playground",
        the: "the playground",
        sights: &[
            "There were swings, slides, and a big sandbox.",
            "Children laughed and ran everywhere.",
            "The seesaw went up and down.",
        ],
        acts: &[
            "went up and down on the seesaw",
            "played in the sandbox",
            "swung on the swings",
            "climbed on the jungle gym",
            "played hide and seek",
        ],
        spots: &[
            "under the slide",
            "in the sandbox",
            "behind the seesaw",
            "next to the swings",
            "under a bench",
        ],
        shelter: "into the little play house",
        brave: (
            "the monkey bars",
            "so high",
            "cross the monkey bars",
            "crossed the monkey bars",
        ),
    },
    Place {
        to: "to the meadow",
        the: "the meadow",
        sights: &[
            "Yellow and white flowers grew everywhere.",
            "Butterflies danced in the warm air.",
            "The grass was tall and green.",
        ],
        acts: &[
            "picked flowers",
            "chased butterflies",
            "lay in the grass and looked at the clouds",
            "made flower crowns",
            "played catch",
        ],
        spots: &[
            "in the tall grass",
            "behind a big rock",
            "under a bush",
            "next to a tree stump",
            "by the little stream",
        ],
        shelter: "under a big tree at the edge of the meadow",
        brave: (
            "the big hill",
            "so steep",
            "roll down the big hill",
            "rolled down the big hill",
        ),
    },
];

// ---------------------------------------------------------------------------
// Template rendering. Templates use `{key}`; a key written with a capital
// first letter (`{He}`) inserts the capitalised value of `{he}`, so one
// table of values serves both mid-sentence and sentence-start positions.
// ---------------------------------------------------------------------------

/// Substitution values for one story.
struct Ctx {
    vars: Vec<(&'static str, String)>,
}

impl Ctx {
    fn new() -> Self {
        Self { vars: Vec::new() }
    }

    fn set(&mut self, key: &'static str, value: impl Into<String>) {
        let value = value.into();
        match self.vars.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((key, value)),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets a character's (subject, object, possessive, was) keys.
    fn set_pronouns(&mut self, keys: [&'static str; 4], gender: Gender) {
        self.set(keys[0], gender.subject());
        self.set(keys[1], gender.object());
        self.set(keys[2], gender.possessive());
        self.set(keys[3], gender.was());
    }

    fn render(&self, template: &str) -> String {
        let mut out = String::with_capacity(template.len() + 64);
        self.render_into(template, &mut out, 0);
        out
    }

    /// Values may themselves hold keys (e.g. a hobby with `{his}`), hence
    /// the bounded recursion. Unknown keys are left in braces so tests catch them.
    fn render_into(&self, template: &str, out: &mut String, depth: u32) {
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                out.push_str(&rest[open..]);
                return;
            };
            let key = &after[..close];
            match self.lookup(key) {
                Some((value, capital)) if depth < 4 => {
                    let start = out.len();
                    self.render_into(value, out, depth + 1);
                    if capital {
                        capitalize_at(out, start);
                    }
                }
                _ => {
                    out.push('{');
                    out.push_str(key);
                    out.push('}');
                }
            }
            rest = &after[close + 1..];
        }
        out.push_str(rest);
    }

    /// Finds `key`, or its lower-case form (returning `capital = true`).
    fn lookup(&self, key: &str) -> Option<(&str, bool)> {
        if let Some(v) = self.get(key) {
            return Some((v, false));
        }
        let mut chars = key.chars();
        let first = chars.next()?;
        if !first.is_ascii_uppercase() {
            return None;
        }
        let lower: String = first.to_ascii_lowercase().to_string() + chars.as_str();
        self.get(&lower).map(|v| (v, true))
    }
}

/// Upper-cases the first ASCII letter at or after byte `start`.
fn capitalize_at(s: &mut str, start: usize) {
    if let Some(tail) = s.get_mut(start..) {
        // Only an ASCII letter changes, so the string stays valid UTF-8.
        if let Some(pos) = tail.find(|c: char| c.is_ascii_alphabetic()) {
            tail[pos..pos + 1].make_ascii_uppercase();
        }
    }
}

/// "a" or "an" for a noun phrase; only the few exceptions our lists can hit.
fn article(phrase: &str) -> &'static str {
    let first = phrase.split(' ').next().unwrap_or("").to_ascii_lowercase();
    let vowel = first.starts_with(['a', 'e', 'i', 'o', 'u']);
    let sounds_like_y = ["uni", "use", "one", "eu"]
        .iter()
        .any(|p| first.starts_with(p));
    if vowel && !sounds_like_y { "an" } else { "a" }
}

fn with_article(phrase: &str) -> String {
    format!("{} {}", article(phrase), phrase)
}

/// Safety net for sentence starts: capitalises the first letter of each
/// paragraph and of any sentence after ". ", "! " or "? " (also inside an
/// opening quote). A closing quote before the space blocks it, so dialogue
/// tags such as `"Oh no!" cried Tom` stay lower-case.
fn capitalize_sentences(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut cap_next = true;
    let mut after_stop = false;
    for c in text.chars() {
        if cap_next && c.is_ascii_alphabetic() {
            out.push(c.to_ascii_uppercase());
            cap_next = false;
            after_stop = false;
            continue;
        }
        match c {
            '.' | '!' | '?' => {
                after_stop = true;
                cap_next = false;
            }
            ' ' | '\n' if after_stop => cap_next = true,
            '\n' => cap_next = true,
            '"' if cap_next => {}
            _ => {
                after_stop = false;
                cap_next = false;
            }
        }
        out.push(c);
    }
    out
}

/// Accumulates sentence templates into paragraphs.
struct Doc {
    paras: Vec<String>,
    cur: String,
}

impl Doc {
    fn new() -> Self {
        Self {
            paras: Vec::new(),
            cur: String::new(),
        }
    }

    fn say(&mut self, sentence: &str) {
        if !self.cur.is_empty() {
            self.cur.push(' ');
        }
        self.cur.push_str(sentence);
    }

    fn say_pick(&mut self, rng: &mut ChaCha8Rng, options: &[&str]) {
        let s = *pick(rng, options);
        self.say(s);
    }

    fn para(&mut self) {
        if !self.cur.is_empty() {
            self.paras.push(std::mem::take(&mut self.cur));
        }
    }

    /// Paragraphs are joined by a single newline so the story stays one
    /// document even for loaders that split on blank lines.
    fn finish(mut self, ctx: &Ctx) -> String {
        self.para();
        let rendered: Vec<String> = self.paras.iter().map(|p| ctx.render(p)).collect();
        capitalize_sentences(&rendered.join("\n"))
    }
}

// ---------------------------------------------------------------------------
// Characters.
// ---------------------------------------------------------------------------

struct Person {
    name: &'static str,
    gender: Gender,
    /// e.g. "brave little dog".
    kind: String,
    hand: &'static str,
}

fn make_person(rng: &mut ChaCha8Rng, taken: &[&str]) -> Person {
    let gender = match rng.random_range(0..100u32) {
        0..=44 => Gender::She,
        45..=89 => Gender::He,
        _ => Gender::They,
    };
    let mut name = "Sam";
    for _ in 0..16 {
        let list = match gender {
            Gender::She if chance(rng, 85) => SHE_NAMES,
            Gender::He if chance(rng, 85) => HE_NAMES,
            _ => ANY_NAMES,
        };
        name = *pick(rng, list);
        if !taken.contains(&name) {
            break;
        }
    }
    let (noun, hand) = if chance(rng, 55) {
        let noun = match gender {
            Gender::She => *pick(rng, &["girl", "girl", "girl", "kid"]),
            Gender::He => *pick(rng, &["boy", "boy", "boy", "kid"]),
            Gender::They => *pick(rng, &["kid", "child"]),
        };
        (noun, "hand")
    } else {
        *pick(rng, ANIMALS)
    };
    let kind = if chance(rng, 75) {
        format!("{} {}", pick(rng, KIND_ADJECTIVES), noun)
    } else {
        noun.to_string()
    };
    Person {
        name,
        gender,
        kind,
        hand,
    }
}

// ---------------------------------------------------------------------------
// Story assembly.
// ---------------------------------------------------------------------------

fn build_story(rng: &mut ChaCha8Rng) -> String {
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

// ---------------------------------------------------------------------------
// Plots: problem -> resolution -> moral. Each returns whether the story ends
// at home (so the closing line does not send the friends home twice).
// ---------------------------------------------------------------------------

fn plot_lost(rng: &mut ChaCha8Rng, doc: &mut Doc) -> bool {
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

fn plot_sharing(rng: &mut ChaCha8Rng, doc: &mut Doc) -> bool {
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

fn plot_newcomer(rng: &mut ChaCha8Rng, doc: &mut Doc) -> bool {
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

fn plot_fear(rng: &mut ChaCha8Rng, doc: &mut Doc) -> bool {
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

fn plot_rescue(rng: &mut ChaCha8Rng, doc: &mut Doc, ctx: &mut Ctx) -> bool {
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

fn plot_rain(rng: &mut ChaCha8Rng, doc: &mut Doc, ctx: &mut Ctx) -> bool {
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

fn plot_practice(rng: &mut ChaCha8Rng, doc: &mut Doc, ctx: &mut Ctx) -> bool {
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

fn plot_honesty(rng: &mut ChaCha8Rng, doc: &mut Doc, ctx: &mut Ctx) -> bool {
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

fn plot_gift(rng: &mut ChaCha8Rng, doc: &mut Doc, ctx: &mut Ctx) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn generator(seed: u64) -> StoryGenerator {
        StoryGenerator::new(StoryConfig {
            seed,
            num_stories: 2_000,
        })
    }

    #[test]
    fn default_config() {
        let c = StoryConfig::default();
        assert_eq!(c.seed, 0);
        assert_eq!(c.num_stories, 20_000);
        let g = StoryGenerator::new(c.clone());
        assert_eq!(g.len(), 20_000);
        assert!(!g.is_empty());
        assert_eq!(g.config(), &c);
    }

    #[test]
    fn deterministic_per_seed_and_index() {
        let a = generator(7);
        let b = generator(7);
        for i in [0u64, 1, 2, 999, 123_456_789] {
            assert_eq!(a.story(i), b.story(i));
        }
        // Order of generation must not matter.
        let forward: Vec<String> = a.stories(0..20).collect();
        let backward: Vec<String> = (0..20u64).rev().map(|i| b.story(i)).collect();
        let backward: Vec<String> = backward.into_iter().rev().collect();
        assert_eq!(forward, backward);
    }

    #[test]
    fn different_seed_changes_text() {
        let a = generator(0);
        let b = generator(1);
        let differing = (0..50u64).filter(|&i| a.story(i) != b.story(i)).count();
        assert!(differing >= 49, "only {differing} of 50 stories differ");
    }

    #[test]
    fn stories_are_mostly_distinct() {
        let g = generator(0);
        let distinct: HashSet<String> = g.stories(0..2_000).collect();
        assert!(distinct.len() >= 1_900, "only {} distinct", distinct.len());
    }

    #[test]
    fn word_count_within_bounds() {
        let g = generator(3);
        for (i, s) in g.stories(0..500).enumerate() {
            let n = s.split_whitespace().count();
            assert!((80..=250).contains(&n), "story {i} has {n} words:\n{s}");
        }
    }

    #[test]
    fn text_is_clean() {
        let g = generator(11);
        for (i, s) in g.stories(0..2_000).enumerate() {
            assert!(s.is_ascii(), "story {i} not ASCII:\n{s}");
            assert!(
                !s.contains('{') && !s.contains('}'),
                "template leftover in {i}:\n{s}"
            );
            assert!(!s.contains("  "), "double space in {i}:\n{s}");
            assert!(!s.ends_with('\n') && !s.starts_with(char::is_whitespace));
            assert_eq!(
                s.matches('"').count() % 2,
                0,
                "unbalanced quotes in {i}:\n{s}"
            );
            for para in s.split('\n') {
                let first = para.chars().next();
                assert!(
                    first.is_some_and(|c| c.is_ascii_uppercase() || c == '"'),
                    "paragraph start in {i}: {para}"
                );
                assert!(
                    para.ends_with(['.', '!', '?', '"']),
                    "paragraph end in {i}: {para}"
                );
            }
        }
    }

    #[test]
    fn articles_agree() {
        let g = generator(5);
        for (i, s) in g.stories(0..2_000).enumerate() {
            let words: Vec<String> = s
                .split_whitespace()
                .map(|w| {
                    w.trim_matches(|c: char| !c.is_ascii_alphabetic())
                        .to_string()
                })
                .collect();
            for pair in words.windows(2) {
                let (art, next) = (pair[0].to_ascii_lowercase(), pair[1].as_str());
                if (art == "a" || art == "an") && !next.is_empty() {
                    assert_eq!(art, article(next), "story {i}: '{art} {next}'\n{s}");
                }
            }
        }
    }

    #[test]
    fn pronouns_agree_with_verbs() {
        let g = generator(9);
        let bad = [
            "they was",
            "he were",
            "she were",
            "they has",
            "he have ",
            "she have ",
            "they is ",
            "he are ",
            "she are ",
            "themself",
            "hisself",
        ];
        let mut saw_they = false;
        for (i, s) in g.stories(0..2_000).enumerate() {
            let lower = s.to_ascii_lowercase();
            for b in bad {
                assert!(!lower.contains(b), "story {i} contains '{b}':\n{s}");
            }
            saw_they |= lower.contains("they were");
        }
        assert!(saw_they);
    }

    #[test]
    fn hero_pronoun_matches_kind() {
        // "... girl named Mia. She ..." and never "... girl named Mia. He ...".
        let g = generator(13);
        let mut checked = 0;
        for (i, s) in g.stories(0..2_000).enumerate() {
            let mut sentences = s.split(". ");
            let (Some(first), Some(second)) = (sentences.next(), sentences.next()) else {
                continue;
            };
            if !first.starts_with("Once upon a time, there was") {
                continue;
            }
            let pronoun = second.split(' ').next().unwrap_or("");
            let expected = if first.contains(" girl named ") || first.contains(" girl called ") {
                "She"
            } else if first.contains(" boy named ") || first.contains(" boy called ") {
                "He"
            } else {
                continue;
            };
            if ["She", "He", "They"].contains(&pronoun) {
                assert_eq!(pronoun, expected, "story {i}:\n{s}");
                checked += 1;
            }
        }
        assert!(checked > 50, "only {checked} stories checked");
    }

    #[test]
    fn persons_have_consistent_gender() {
        let mut rng = story_rng(1, 2);
        for _ in 0..2_000 {
            let p = make_person(&mut rng, &[]);
            if p.kind.ends_with("girl") {
                assert_eq!(p.gender, Gender::She);
            }
            if p.kind.ends_with("boy") {
                assert_eq!(p.gender, Gender::He);
            }
            if p.gender == Gender::They {
                assert!(ANY_NAMES.contains(&p.name), "{}", p.name);
            }
        }
    }

    #[test]
    fn openings_vary() {
        let g = generator(0);
        let stories: Vec<String> = g.stories(0..500).collect();
        let once = stories
            .iter()
            .filter(|s| s.starts_with("Once upon a time"))
            .count();
        assert!(
            once > 150 && once < 450,
            "{once} of 500 start with Once upon a time"
        );
    }

    #[test]
    fn capitalization_rules() {
        assert_eq!(
            capitalize_sentences(r#"hi. "oh no!" cried Tom. the end"#),
            r#"Hi. "Oh no!" cried Tom. The end"#
        );
        let mut ctx = Ctx::new();
        ctx.set("time", "on Saturday");
        ctx.set("he", "they");
        assert_eq!(
            ctx.render("{Time}, {he} left. {He} ran."),
            "On Saturday, they left. They ran."
        );
        assert_eq!(ctx.render("{nope}"), "{nope}");
        assert_eq!(with_article("orange kite"), "an orange kite");
        assert_eq!(with_article("umbrella"), "an umbrella");
        assert_eq!(with_article("yo-yo"), "a yo-yo");
    }
}
