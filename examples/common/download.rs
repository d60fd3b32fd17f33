//! Fetching public data files into a cache folder, shared by the examples.
//! Callers check what they fetched before it is kept, so a bad download is
//! never cached.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// `$XDG_CACHE_HOME/burn-norm/<name>` or `~/.cache/burn-norm/<name>`.
pub fn cache_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("burn-norm").join(name)
}

/// The body of `url` (at most 64 MiB).
pub fn fetch(url: &str) -> Result<Vec<u8>, String> {
    println!("downloading {url}");
    let mut response = ureq::get(url).call().map_err(|e| format!("{url}: {e}"))?;
    response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| format!("{url}: {e}"))
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes through a temporary name, so an interrupted write leaves no file
/// that looks complete.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)
        .and_then(|_| std::fs::rename(&partial, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
