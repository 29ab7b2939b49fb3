//! Characters: a story's hero, friend and newcomer, each with a name, pronouns and a kind
//! ("brave little dog") that agree with one another.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::rng::{chance, pick};
use super::words::{ANIMALS, ANY_NAMES, Gender, HE_NAMES, KIND_ADJECTIVES, SHE_NAMES};

pub(super) struct Person {
    pub(super) name: &'static str,
    pub(super) gender: Gender,
    /// e.g. "brave little dog".
    pub(super) kind: String,
    pub(super) hand: &'static str,
}

pub(super) fn make_person(rng: &mut ChaCha8Rng, taken: &[&str]) -> Person {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::stories::rng::story_rng;

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
}
