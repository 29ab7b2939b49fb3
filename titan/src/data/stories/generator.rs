//! The public face of the corpus: [`StoryConfig`] and [`StoryGenerator`], which turns a
//! story index into its text.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::rng::story_rng;
use super::story::build_story;

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

impl StoryConfig {
    /// Enough stories (about 190 tokens each) for a run of `tokens` tokens to see each about
    /// once: 20,000 at least, 400,000 at most.
    pub fn for_tokens(seed: u64, tokens: usize) -> Self {
        Self {
            seed,
            num_stories: (tokens / 190).clamp(20_000, 400_000),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
