//! MNIST in its standard IDX files: finding them, checking them, reading them.

use crate::download::{cache_dir, fetch, sha256_hex, write_atomically};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Side of an image, in pixels.
pub const SIDE: usize = 28;
/// Pixels per image.
pub const PIXELS: usize = SIDE * SIDE;

/// One IDX file: its name, what it holds, and the sha256 of its decompressed
/// bytes as published in `shared/data/README.md`.
struct IdxFile {
    name: &'static str,
    images: bool,
    count: usize,
    sha256: &'static str,
}

const TRAIN_IMAGES: IdxFile = IdxFile {
    name: "train-images-idx3-ubyte",
    images: true,
    count: 60_000,
    sha256: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
};
const TRAIN_LABELS: IdxFile = IdxFile {
    name: "train-labels-idx1-ubyte",
    images: false,
    count: 60_000,
    sha256: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
};
const TEST_IMAGES: IdxFile = IdxFile {
    name: "t10k-images-idx3-ubyte",
    images: true,
    count: 10_000,
    sha256: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
};
const TEST_LABELS: IdxFile = IdxFile {
    name: "t10k-labels-idx1-ubyte",
    images: false,
    count: 10_000,
    sha256: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
};
const FILES: [&IdxFile; 4] = [&TRAIN_IMAGES, &TRAIN_LABELS, &TEST_IMAGES, &TEST_LABELS];

/// Public mirrors of the original distribution, tried in order.
const MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// Images (row-major `u8` pixels) and their labels.
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// The first `n` examples (all if `n` is larger).
    pub fn truncate(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.images.truncate(n * PIXELS);
        self.labels.truncate(n);
        self
    }
}

pub struct Mnist {
    pub train: Split,
    pub test: Split,
}

/// Finds, checks and reads MNIST: `--data-dir`, then `$MNIST_DIR`, then
/// `../shared/data/mnist`, then the cache folder (`~/.cache/burn-norm/mnist`), downloading into it from a
/// public mirror if needed. Every file is checked (gzip stream, sha256, IDX
/// header and size); a bad file is an error that names it.
pub fn load(data_dir: Option<&Path>) -> Result<Mnist, String> {
    let dir = locate(data_dir)?;
    println!("MNIST from {}", dir.display());
    let read = |f: &IdxFile| read_idx(&dir, f);
    Ok(Mnist {
        train: Split {
            images: read(&TRAIN_IMAGES)?,
            labels: read(&TRAIN_LABELS)?,
        },
        test: Split {
            images: read(&TEST_IMAGES)?,
            labels: read(&TEST_LABELS)?,
        },
    })
}

/// The file of `f` in `dir`, gzip-compressed or not, if present.
fn find(dir: &Path, f: &IdxFile) -> Option<PathBuf> {
    [format!("{}.gz", f.name), f.name.to_string()]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

fn locate(data_dir: Option<&Path>) -> Result<PathBuf, String> {
    let mut candidates: Vec<(String, PathBuf)> = Vec::new();
    if let Some(dir) = data_dir {
        candidates.push(("--data-dir".into(), dir.to_path_buf()));
    }
    if let Some(dir) = std::env::var_os("MNIST_DIR") {
        candidates.push(("$MNIST_DIR".into(), dir.into()));
    }
    candidates.push(("../shared/data/mnist".into(), "../shared/data/mnist".into()));
    let beside_repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist");
    candidates.push(("the shared data beside the repository".into(), beside_repo));
    let cache = cache_dir("mnist");
    candidates.push(("the cache".into(), cache.clone()));

    for (what, dir) in &candidates {
        let missing: Vec<_> = FILES
            .iter()
            .filter(|f| find(dir, f).is_none())
            .map(|f| f.name)
            .collect();
        if missing.is_empty() {
            return Ok(dir.clone());
        }
        if data_dir.is_some() && what == "--data-dir" {
            eprintln!(
                "--data-dir {}: missing {}; looking further",
                dir.display(),
                missing.join(", ")
            );
        }
    }
    download(&cache)?;
    Ok(cache)
}

fn download(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for f in FILES {
        if find(dir, f).is_some() {
            continue;
        }
        let target = dir.join(format!("{}.gz", f.name));
        let mut errors = Vec::new();
        let mut done = false;
        for mirror in MIRRORS {
            let url = format!("{mirror}{}.gz", f.name);
            match fetch(&url) {
                Ok(bytes) => {
                    // Check before keeping it, so a bad download is never cached.
                    if let Err(e) = check(&url, f, &gunzip(&url, &bytes)?) {
                        errors.push(e);
                        continue;
                    }
                    write_atomically(&target, &bytes)?;
                    done = true;
                    break;
                }
                Err(e) => errors.push(e),
            }
        }
        if !done {
            return Err(format!(
                "MNIST not found locally and could not be downloaded:\n  {}\n\
                 Pass --data-dir DIR (or set MNIST_DIR) to a folder with the four IDX files.",
                errors.join("\n  ")
            ));
        }
    }
    Ok(())
}

fn gunzip(what: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| format!("{what}: not a valid gzip stream (corrupt or truncated?): {e}"))?;
    Ok(out)
}

/// Checks the decompressed bytes of `f`: sha256, IDX magic number, shape
/// and length.
fn check(what: &str, f: &IdxFile, bytes: &[u8]) -> Result<(), String> {
    let digest = sha256_hex(bytes);
    let (magic, header) = if f.images {
        (2051u32, 16)
    } else {
        (2049u32, 8)
    };
    let word = |i: usize| -> Option<u32> {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|w| u32::from_be_bytes(w.try_into().unwrap()))
    };
    if word(0) != Some(magic) {
        return Err(format!(
            "{what}: not an IDX {} file (magic number {:?}, expected {magic})",
            if f.images { "image" } else { "label" },
            word(0)
        ));
    }
    let count = word(1).unwrap_or(0) as usize;
    if count != f.count || (f.images && (word(2), word(3)) != (Some(28), Some(28))) {
        return Err(format!(
            "{what}: header says {count} items, expected {} of 28x28",
            f.count
        ));
    }
    let expected_len = header + f.count * if f.images { PIXELS } else { 1 };
    if bytes.len() != expected_len {
        return Err(format!(
            "{what}: {} bytes, expected {expected_len} (truncated or padded file)",
            bytes.len()
        ));
    }
    if digest != f.sha256 {
        return Err(format!(
            "{what}: sha256 {digest}, expected {} (corrupt file)",
            f.sha256
        ));
    }
    Ok(())
}

/// Reads and checks one file, returning its payload (pixels or labels).
fn read_idx(dir: &Path, f: &IdxFile) -> Result<Vec<u8>, String> {
    let path = find(dir, f).ok_or_else(|| format!("{}: missing in {}", f.name, dir.display()))?;
    let what = path.display().to_string();
    let raw = std::fs::read(&path).map_err(|e| format!("{what}: {e}"))?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        gunzip(&what, &raw)?
    } else {
        raw
    };
    check(&what, f, &bytes)?;
    let header = if f.images { 16 } else { 8 };
    let payload = bytes[header..].to_vec();
    if !f.images && payload.iter().any(|&l| l > 9) {
        return Err(format!("{what}: a label is outside 0..=9"));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
        std::iter::once(magic)
            .chain(dims.iter().copied())
            .flat_map(u32::to_be_bytes)
            .collect()
    }

    #[test]
    fn bad_files_are_named_errors() {
        let e = check("x", &TEST_LABELS, &header(2051, &[10_000])).unwrap_err();
        assert!(e.contains("x: not an IDX label file"), "{e}");
        let e = check("x", &TEST_LABELS, &header(2049, &[10_000])).unwrap_err();
        assert!(e.contains("x: 8 bytes, expected 10008 (truncated"), "{e}");
        let mut bytes = header(2049, &[10_000]);
        bytes.resize(10_008, 0);
        let e = check("x", &TEST_LABELS, &bytes).unwrap_err();
        assert!(e.contains("x: sha256"), "{e}");
        let e = gunzip("y.gz", b"not gzip").unwrap_err();
        assert!(e.starts_with("y.gz: not a valid gzip stream"), "{e}");
    }
}
