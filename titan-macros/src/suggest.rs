//! "Did you mean …?": the closest of a few known names to a misspelt one. Fields, roles and
//! the macro's own attributes all use it, so a typo reads the same wherever it is made.

/// The candidate closest to `name` within `max_edits` (ties go to the earliest candidate), or
/// `None` when nothing is that close or `name` is itself a candidate.
pub fn closest<'a, I>(
    name: &str,
    candidates: I,
    max_edits: impl Fn(&str) -> usize,
) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let d = distance(name, candidate);
        if d == 0 {
            return None;
        }
        if d <= max_edits(candidate) && best.is_none_or(|(b, _)| d < b) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, c)| c)
}

/// How many edits a misspelling of `name` may have: one for short names, two from five letters
/// (`biuld`, `confg`, `modle`), so a short unrelated word is not taken for a typo.
pub fn tolerance(name: &str) -> usize {
    if name.chars().count() >= 5 { 2 } else { 1 }
}

/// Edit distance counting a swap of two neighbours as one edit (optimal string alignment), so
/// `biuld` is one edit from `build`, as a reader would count it.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j]; three rows are enough for a swap.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let substitute = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = substitute.min(prev[j] + 1).min(cur[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits_and_swaps() {
        assert_eq!(distance("model", "model"), 0);
        assert_eq!(distance("modl", "model"), 1);
        assert_eq!(distance("modle", "model"), 1);
        assert_eq!(distance("biuld", "build"), 1);
        assert_eq!(distance("confg", "config"), 1);
        assert_eq!(distance("tokenzier", "tokenizer"), 1);
        assert_eq!(distance("", "role"), 4);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn closest_keeps_to_the_tolerance() {
        let ours = ["build", "config", "role"];
        assert_eq!(closest("biuld", ours, tolerance), Some("build"));
        assert_eq!(closest("cofnig", ours, tolerance), Some("config"));
        // Attributes take one edit at most, so another derive's helpers stay theirs.
        assert_eq!(closest("confg", ours, |_| 1), Some("config"));
        assert_eq!(closest("builder", ours, |_| 1), None);
        assert_eq!(closest("rloe", ours, tolerance), Some("role"));
        assert_eq!(closest("build", ours, tolerance), None);
        // Attributes of rustc and of common derives are far from ours.
        for other in [
            "doc", "cfg", "cfg_attr", "allow", "warn", "deny", "expect", "serde",
        ] {
            assert_eq!(closest(other, ours, tolerance), None, "{other}");
        }
    }
}
