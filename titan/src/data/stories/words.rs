//! Word lists: pronouns by gender, names, kinds of characters, grown-ups, homes, hobbies,
//! times, weather, games and toys. Their order is part of the corpus: a pick is an index.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gender {
    She,
    He,
    They,
}

impl Gender {
    pub(super) fn subject(self) -> &'static str {
        match self {
            Gender::She => "she",
            Gender::He => "he",
            Gender::They => "they",
        }
    }
    pub(super) fn object(self) -> &'static str {
        match self {
            Gender::She => "her",
            Gender::He => "him",
            Gender::They => "them",
        }
    }
    pub(super) fn possessive(self) -> &'static str {
        match self {
            Gender::She => "her",
            Gender::He => "his",
            Gender::They => "their",
        }
    }
    /// Past tense of "to be"; singular "they" still takes "were".
    pub(super) fn was(self) -> &'static str {
        match self {
            Gender::They => "were",
            _ => "was",
        }
    }
}

pub(super) const SHE_NAMES: &[&str] = &[
    "Lily", "Mia", "Emma", "Rose", "Ella", "Lucy", "Anna", "Zoe", "Ruby", "Grace", "Nora", "Sara",
    "Maya", "Ivy", "Daisy", "Lena", "Amy", "Kate", "Molly", "Hana", "Priya", "Julia", "Olive",
    "Bella", "Luna", "Poppy", "Clara", "Nina", "Tess", "Fern",
];

pub(super) const HE_NAMES: &[&str] = &[
    "Tom", "Ben", "Max", "Leo", "Jack", "Finn", "Noah", "Jake", "Owen", "Luke", "Tim", "Eli",
    "Omar", "Ravi", "Dan", "Theo", "Milo", "Oscar", "Hugo", "Felix", "Toby", "Jonah", "Ivan",
    "Rex", "Bruno", "Otis",
];

pub(super) const ANY_NAMES: &[&str] = &[
    "Sam", "Alex", "Robin", "Kim", "Jo", "Riley", "Charlie", "Pat", "Remy", "Sky", "Kai", "Jamie",
    "Ari", "Rowan", "Pip", "Coco", "Sunny", "Wren",
];

pub(super) const KIND_ADJECTIVES: &[&str] = &[
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
pub(super) const ANIMALS: &[(&str, &str)] = &[
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
pub(super) const ADULTS: &[(&str, Gender)] = &[
    ("mom", Gender::She),
    ("dad", Gender::He),
    ("grandma", Gender::She),
    ("grandpa", Gender::He),
    ("aunt", Gender::She),
    ("uncle", Gender::He),
];

pub(super) const HOMES: &[&str] = &[
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

pub(super) const HOBBIES: &[&str] = &[
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

pub(super) const TIMES: &[&str] = &[
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

pub(super) const WEATHER: &[&str] = &[
    "The sun was shining.",
    "The sky was blue, and the sun was warm.",
    "A soft wind was blowing.",
    "It was a bright, warm day.",
    "A few fluffy clouds floated in the sky.",
    "The air smelled fresh and sweet.",
];

/// Made-up playground games the newcomer teaches.
pub(super) const GAMES: &[&str] = &[
    "Hop and Stop",
    "Sleepy Bear",
    "Frog Jump",
    "Catch the Wind",
    "Sticky Feet",
    "Silly Statues",
];

pub(super) const COLORS: &[&str] = &[
    "red", "blue", "yellow", "green", "orange", "purple", "pink", "shiny", "striped",
];

pub(super) const TOYS: &[&str] = &[
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
