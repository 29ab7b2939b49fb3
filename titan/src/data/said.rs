//! What a file's readers say once per process, however often the file is opened again (each
//! pass over the data, the validation split, refilling the shuffle buffer).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

static SAID: LazyLock<Mutex<HashSet<(PathBuf, &'static str)>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

/// True the first time `what` is asked about `path` in this process, false afterwards.
pub(crate) fn first_time(path: &Path, what: &'static str) -> bool {
    // A poisoned set (a reader panicked while holding it) still answers.
    let mut said = SAID
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    said.insert((path.to_path_buf(), what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_and_kind_is_said_once() {
        let path = Path::new("/nowhere/said-test.jsonl");
        assert!(first_time(path, "null"));
        assert!(!first_time(path, "null"));
        assert!(first_time(path, "other"));
        assert!(first_time(Path::new("/nowhere/said-test-2.jsonl"), "null"));
    }
}
