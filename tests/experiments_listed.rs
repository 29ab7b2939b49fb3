//! Every experiment file is a binary: `experiments/NAME.rs` needs its `[[bin]]` in the root
//! `Cargo.toml` (Cargo discovers binaries only under `src/bin/`). This test names the lines
//! to add when one is missing, so adding an experiment stays "one file, then what this says".

use std::path::Path;

#[test]
fn every_experiment_file_has_its_bin_entry() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))?.parse()?;
    let bins: Vec<(String, String)> = manifest
        .get("bin")
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
        .filter_map(|b| {
            let name = b.get("name")?.as_str()?;
            let path = b.get("path")?.as_str()?;
            Some((name.to_string(), path.to_string()))
        })
        .collect();
    let mut missing = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(root.join("experiments"))? {
        let path = entry?.path();
        let (Some(stem), Some("rs")) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        files += 1;
        let want = (stem.to_string(), format!("experiments/{stem}.rs"));
        if !bins.contains(&want) {
            missing.push(format!(
                "[[bin]]\nname = \"{}\"\npath = \"{}\"",
                want.0, want.1
            ));
        }
    }
    assert!(files >= 2, "experiments/ holds {files} experiments");
    assert!(
        missing.is_empty(),
        "add to Cargo.toml, beside the other [[bin]] entries:\n\n{}",
        missing.join("\n\n")
    );
    Ok(())
}

/// The README shows `experiments/tiny_llama.rs` "all of it": the block must be the file, so
/// the first thing a reader sees is never an older version.
#[test]
fn the_readme_shows_tiny_llama_as_it_is() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md"))?;
    let file = std::fs::read_to_string(root.join("experiments/tiny_llama.rs"))?;
    let intro = "This is `experiments/tiny_llama.rs`, all of it:\n\n```rust\n";
    let start = readme
        .find(intro)
        .map(|i| i + intro.len())
        .ok_or_else(|| anyhow::anyhow!("README.md no longer says {intro:?}"))?;
    let end = readme[start..]
        .find("```\n")
        .map(|i| start + i)
        .ok_or_else(|| anyhow::anyhow!("the README's code block does not end"))?;
    anyhow::ensure!(
        readme[start..end] == file,
        "README.md's copy of experiments/tiny_llama.rs differs from the file: copy the file in"
    );
    Ok(())
}
