//! Unit tests' access to `../shared` (the reference material beside the project): present for
//! developers and CI, absent for a reader of the crate alone.

use std::path::{Path, PathBuf};

/// `../shared`, or `None` with a printed notice when it is absent; a panic instead when
/// `GOFLOW2_EXPORTER_STRICT_TESTS=1` (set by `.ci/run`) demands it.
pub(crate) fn shared_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var_os("GOFLOW2_EXPORTER_STRICT_TESTS").is_some_and(|v| v == "1") {
        panic!("../shared is required (GOFLOW2_EXPORTER_STRICT_TESTS=1)");
    }
    eprintln!("NOTICE: skipping: ../shared not available");
    None
}
