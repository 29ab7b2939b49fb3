//! Differences between two JSON trees, leaf by leaf, for errors that name the key and both
//! values: a checkpoint's settings against the run's, a tokenizer's fingerprint against what
//! would train it now.

use std::fmt;

use serde_json::Value;

/// One leaf that differs: its dotted key, and its value on each side (`unset` when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The dotted key, e.g. `llama.hidden_size`.
    pub key: String,
    /// The value on the saved side.
    pub was: String,
    /// The value on the current side.
    pub is: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is {} there and {} here",
            self.key, self.was, self.is
        )
    }
}

/// Every leaf where `was` and `is` differ, in key order, leaving out the subtrees `skip`
/// accepts (it sees the path of keys).
pub fn differences(was: &Value, is: &Value, skip: &dyn Fn(&[String]) -> bool) -> Vec<Difference> {
    let mut out = Vec::new();
    walk(was, is, &mut Vec::new(), skip, &mut out);
    out
}

fn walk(
    was: &Value,
    is: &Value,
    path: &mut Vec<String>,
    skip: &dyn Fn(&[String]) -> bool,
    out: &mut Vec<Difference>,
) {
    if skip(path) {
        return;
    }
    match (was, is) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                path.push(key.clone());
                let (x, y) = (
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                );
                walk(x, y, path, skip, out);
                path.pop();
            }
        }
        (a, b) if same_value(a, b) => {}
        (a, b) => out.push(Difference {
            key: path.join("."),
            was: shown(a),
            is: shown(b),
        }),
    }
}

/// Equal as settings: integers exactly, a float and a number by value (TOML's `1` for an f64
/// key is JSON's `1.0`), the rest exactly.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            x.as_f64() == y.as_f64()
        }
        _ => a == b,
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::Null => "unset".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_that_differ_are_named_with_both_values() {
        let was = serde_json::json!({"a": {"b": 1, "c": "x"}, "d": 2.0});
        let is = serde_json::json!({"a": {"b": 1.0, "c": "y"}, "e": true});
        let found = differences(&was, &is, &|_| false);
        let keys: Vec<&str> = found.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["a.c", "d", "e"]);
        assert_eq!(found[0].to_string(), "`a.c` is \"x\" there and \"y\" here");
        assert_eq!(found[1].is, "unset");
        let skipped = differences(&was, &is, &|path| path.first().is_some_and(|k| k == "a"));
        assert_eq!(skipped.len(), 2);
    }
}
