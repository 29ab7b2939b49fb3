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
//!
//! [`StoryGenerator`] (in `generator.rs`) turns `(seed, index)` into a story: `story.rs`
//! casts the characters (`cast.rs`) and tells an opening, one of the plots (`plots.rs`) and
//! a closing, drawing from the word lists (`words.rs`, `places.rs`) with the seeded helpers
//! of `rng.rs`, and `render.rs` fills the templates in.

mod cast;
mod generator;
mod places;
mod plots;
mod render;
mod rng;
mod story;
mod words;

pub use generator::{StoryConfig, StoryGenerator};

#[cfg(test)]
mod tests {
    use super::render::article;
    use super::*;
    use std::collections::HashSet;

    fn generator(seed: u64) -> StoryGenerator {
        StoryGenerator::new(StoryConfig {
            seed,
            num_stories: 2_000,
        })
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
}
