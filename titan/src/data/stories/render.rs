//! Template rendering. Templates use `{key}`; a key written with a capital first letter
//! (`{He}`) inserts the capitalised value of `{he}`, so one table of values serves both
//! mid-sentence and sentence-start positions. [`Doc`] gathers a story's sentence templates
//! into paragraphs and [`Ctx`] holds the values they are rendered with.

use rand_chacha::ChaCha8Rng;

use super::rng::pick;
use super::words::Gender;

/// Substitution values for one story.
pub(super) struct Ctx {
    vars: Vec<(&'static str, String)>,
}

impl Ctx {
    pub(super) fn new() -> Self {
        Self { vars: Vec::new() }
    }

    pub(super) fn set(&mut self, key: &'static str, value: impl Into<String>) {
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
    pub(super) fn set_pronouns(&mut self, keys: [&'static str; 4], gender: Gender) {
        self.set(keys[0], gender.subject());
        self.set(keys[1], gender.object());
        self.set(keys[2], gender.possessive());
        self.set(keys[3], gender.was());
    }

    pub(super) fn render(&self, template: &str) -> String {
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
pub(super) fn article(phrase: &str) -> &'static str {
    let first = phrase.split(' ').next().unwrap_or("").to_ascii_lowercase();
    let vowel = first.starts_with(['a', 'e', 'i', 'o', 'u']);
    let sounds_like_y = ["uni", "use", "one", "eu"]
        .iter()
        .any(|p| first.starts_with(p));
    if vowel && !sounds_like_y { "an" } else { "a" }
}

pub(super) fn with_article(phrase: &str) -> String {
    format!("{} {}", article(phrase), phrase)
}

/// Safety net for sentence starts: capitalises the first letter of each
/// paragraph and of any sentence after ". ", "! " or "? " (also inside an
/// opening quote). A closing quote before the space blocks it, so dialogue
/// tags such as `"Oh no!" cried Tom` stay lower-case.
pub(super) fn capitalize_sentences(text: &str) -> String {
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
pub(super) struct Doc {
    paras: Vec<String>,
    cur: String,
}

impl Doc {
    pub(super) fn new() -> Self {
        Self {
            paras: Vec::new(),
            cur: String::new(),
        }
    }

    pub(super) fn say(&mut self, sentence: &str) {
        if !self.cur.is_empty() {
            self.cur.push(' ');
        }
        self.cur.push_str(sentence);
    }

    pub(super) fn say_pick(&mut self, rng: &mut ChaCha8Rng, options: &[&str]) {
        let s = *pick(rng, options);
        self.say(s);
    }

    pub(super) fn para(&mut self) {
        if !self.cur.is_empty() {
            self.paras.push(std::mem::take(&mut self.cur));
        }
    }

    /// Paragraphs are joined by a single newline so the story stays one
    /// document even for loaders that split on blank lines.
    pub(super) fn finish(mut self, ctx: &Ctx) -> String {
        self.para();
        let rendered: Vec<String> = self.paras.iter().map(|p| ctx.render(p)).collect();
        capitalize_sentences(&rendered.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
