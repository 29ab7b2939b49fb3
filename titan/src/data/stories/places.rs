//! The places the friends visit, each with the sights, games, hiding spots, shelter and dare
//! that keep a plot consistent with where it happens. Their order is part of the corpus: a
//! pick is an index.

/// A place the friends visit, with details that keep each plot consistent
/// with where it happens.
pub(super) struct Place {
    pub(super) to: &'static str,
    pub(super) sights: &'static [&'static str],
    /// Past-tense verb phrases with a plural subject.
    pub(super) acts: &'static [&'static str],
    /// Where a lost thing can turn up; at least three entries.
    pub(super) spots: &'static [&'static str],
    /// Where to run from the rain, with a motion preposition ("under", "into").
    pub(super) shelter: &'static str,
    /// Something a little scary here: (thing, how it looks, do it, did it).
    pub(super) brave: (&'static str, &'static str, &'static str, &'static str),
    /// The place name with "the", for dialogue.
    pub(super) the: &'static str,
}

pub(super) const PLACES: &[Place] = &[
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
