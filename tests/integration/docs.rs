//! `ARCHITECTURE.md` against the tree: every file it names exists, and every module of `src/`
//! is on its map, so the page cannot silently fall behind a rename or a new module.

use std::path::Path;

use crate::common::repo_path;

const ARCHITECTURE: &str = "ARCHITECTURE.md";

/// Directories a repository path in the page starts with.
const ROOTS: [&str; 9] = [
    "src/",
    "tests/",
    "benches/",
    "scripts/",
    "fuzz/",
    "testdata/",
    "deploy/",
    "docs/",
    ".ci/",
];

/// The words of `text` that name a file or directory: repository paths (`src/flow.rs`,
/// `testdata/fixtures/*.pcap`), top-level Markdown files, and bare Rust file names (`delta.rs`),
/// without the punctuation around them.
fn named_paths(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || "`()|,;".contains(c))
        .map(|w| w.trim_end_matches([':', '.']))
        .filter(|w| {
            ROOTS.iter().any(|r| w.starts_with(r))
                || (w.ends_with(".md") && !w.contains('/'))
                || (w.ends_with(".rs") && !w.contains('/'))
        })
        .map(str::to_string)
        .collect()
}

/// Whether `name` exists: a path from the repository root (a `*` in the last component matches
/// any file of that directory with the given ending), or a bare `.rs` name of a file under `src/`.
fn exists(name: &str) -> bool {
    if let Some((dir, pattern)) = name.rsplit_once("/*") {
        return std::fs::read_dir(repo_path(dir)).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with(pattern))
        });
    }
    if name.contains('/') || name.ends_with(".md") {
        return repo_path(name).exists();
    }
    rust_files(&repo_path("src"))
        .iter()
        .any(|p| p.file_name().is_some_and(|f| f == name))
}

fn rust_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

fn architecture() -> String {
    std::fs::read_to_string(repo_path(ARCHITECTURE))
        .expect("ARCHITECTURE.md at the repository root")
}

#[test]
fn every_file_the_architecture_page_names_exists() {
    let text = architecture();
    let named = named_paths(&text);
    assert!(named.len() > 30, "the page names its files: {named:?}");
    let missing: Vec<&String> = named.iter().filter(|n| !exists(n)).collect();
    assert!(
        missing.is_empty(),
        "{ARCHITECTURE} names missing files: {missing:?}"
    );
}

#[test]
fn every_module_of_src_is_on_the_architecture_page() {
    let text = architecture();
    let src = repo_path("src");
    let unnamed: Vec<String> = rust_files(&src)
        .iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(repo_path("")).unwrap().to_string_lossy();
            let file = path.file_name().unwrap().to_string_lossy();
            // A module is on the page by its path, by its directory (`src/flows_out/`), or by
            // its file name where the map lists a directory's files side by side.
            let dir = format!(
                "{}/",
                path.parent()
                    .unwrap()
                    .strip_prefix(repo_path(""))
                    .unwrap()
                    .to_string_lossy()
            );
            let named = text.contains(rel.as_ref())
                || (dir != "src/" && text.contains(&dir))
                || text.contains(&format!(" {file}"))
                || text.contains(&format!("`{file}`"));
            (!named).then(|| rel.into_owned())
        })
        .collect();
    assert!(
        unnamed.is_empty(),
        "modules missing from {ARCHITECTURE}: {unnamed:?}"
    );
}

#[test]
fn the_path_reader_sees_paths_and_the_check_sees_missing_ones() {
    let named = named_paths("see `src/flow.rs`, (delta.rs) and README.md: src/nothing.rs.");
    assert_eq!(
        named,
        ["src/flow.rs", "delta.rs", "README.md", "src/nothing.rs"]
    );
    assert!(exists("src/flow.rs") && exists("delta.rs") && exists("README.md"));
    assert!(exists("testdata/fixtures/*.pcap"));
    assert!(!exists("src/nothing.rs") && !exists("nothing.rs") && !exists("NOTHING.md"));
}
