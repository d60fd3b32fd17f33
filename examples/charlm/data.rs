//! The text corpus: finding it, checking it, its character vocabulary and
//! the train/validation split.

use crate::download::{cache_dir, fetch, sha256_hex, write_atomically};
use std::path::{Path, PathBuf};

/// sha256 of Tiny Shakespeare's `input.txt` (see `shared/data/README.md`).
const SHAKESPEARE_SHA256: &str = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed";
const SHAKESPEARE_URL: &str =
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt";

/// Finds the text: `--data`, then `../shared/data/tinyshakespeare/input.txt`
/// (from the working directory, then beside the repository), then the cache
/// (`~/.cache/burn-norm/tinyshakespeare/input.txt`), downloading the public
/// file into it if needed. Returns the text and where it came from.
pub fn load(data: Option<&Path>) -> Result<(String, PathBuf), String> {
    if let Some(path) = data {
        // An explicit path is the user's own corpus: any valid text goes.
        let bytes = std::fs::read(path).map_err(|e| format!("--data {}: {e}", path.display()))?;
        return Ok((
            decode(&path.display().to_string(), bytes)?,
            path.to_path_buf(),
        ));
    }
    let relative = Path::new("../shared/data/tinyshakespeare/input.txt");
    let beside_repo = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let cached = cache_dir("tinyshakespeare").join("input.txt");
    for path in [relative.to_path_buf(), beside_repo, cached.clone()] {
        if path.is_file() {
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok((decode(&path.display().to_string(), bytes)?, path));
        }
    }
    let bytes = fetch(SHAKESPEARE_URL).map_err(|e| {
        format!("Tiny Shakespeare not found locally and could not be downloaded: {e}\nPass --data FILE (any UTF-8 text).")
    })?;
    let digest = sha256_hex(&bytes);
    if digest != SHAKESPEARE_SHA256 {
        return Err(format!(
            "{SHAKESPEARE_URL}: sha256 {digest}, expected {SHAKESPEARE_SHA256}; not cached"
        ));
    }
    write_atomically(&cached, &bytes)?;
    Ok((decode(SHAKESPEARE_URL, bytes)?, cached))
}

/// The bytes as text, or an error that says where the first invalid byte is.
pub fn decode(what: &str, bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "{what}: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// The characters of a corpus, sorted, each with its token id (its index).
#[derive(Clone, Debug, PartialEq)]
pub struct Vocab {
    chars: Vec<char>,
}

impl Vocab {
    pub fn of(text: &str) -> Self {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Self { chars }
    }

    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Token ids of `text`; a character outside the vocabulary is an error.
    pub fn encode(&self, text: &str) -> Result<Vec<usize>, String> {
        text.chars()
            .map(|c| {
                self.chars
                    .binary_search(&c)
                    .map_err(|_| format!("character {c:?} is not in the model's vocabulary"))
            })
            .collect()
    }

    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter().map(|&i| self.chars[i]).collect()
    }

    /// Saved beside the model as a JSON array of one-character strings.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let strings: Vec<String> = self.chars.iter().map(|c| c.to_string()).collect();
        let json = serde_json::to_string(&strings).expect("strings serialize");
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    pub fn load(path: &Path) -> Result<Self, String> {
        let what = path.display();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{what}: {e}"))?;
        let strings: Vec<String> =
            serde_json::from_str(&text).map_err(|e| format!("{what}: not a vocabulary: {e}"))?;
        let mut chars = Vec::with_capacity(strings.len());
        for s in strings {
            let mut it = s.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => chars.push(c),
                _ => return Err(format!("{what}: entry {s:?} is not one character")),
            }
        }
        if chars.is_empty() || chars.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!(
                "{what}: the vocabulary must be non-empty, sorted and without repeats"
            ));
        }
        Ok(Self { chars })
    }
}

/// The corpus as token ids, split by position: the first 90% for training,
/// the rest for validation.
pub struct Corpus {
    pub vocab: Vocab,
    pub train: Vec<usize>,
    pub valid: Vec<usize>,
}

impl Corpus {
    /// Each split must hold at least one window of `context + 1` characters.
    pub fn new(what: &str, text: &str, context: usize) -> Result<Self, String> {
        let n = text.chars().count();
        // The validation tenth must hold one full window (input + next char).
        let needed = 10 * (context + 1) + 10;
        if n == 0 {
            return Err(format!("{what}: the text is empty"));
        }
        if n < needed {
            return Err(format!(
                "{what}: {n} characters is too short for a context of {context}: need at least {needed} \
                 (10% for validation must hold {} characters)",
                context + 1
            ));
        }
        let vocab = Vocab::of(text);
        let ids = vocab
            .encode(text)
            .expect("the vocabulary covers its own text");
        let cut = n * 9 / 10;
        Ok(Self {
            vocab,
            train: ids[..cut].to_vec(),
            valid: ids[cut..].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_text_is_a_clear_error() {
        let e = decode("t.txt", vec![b'a', b'b', 0xff, b'c']).unwrap_err();
        assert_eq!(e, "t.txt: not UTF-8 text (invalid byte at offset 2)");
        let e = Corpus::new("t.txt", "", 8).err().unwrap();
        assert_eq!(e, "t.txt: the text is empty");
        let e = Corpus::new("t.txt", &"ab".repeat(49), 8).err().unwrap();
        assert!(
            e.starts_with(
                "t.txt: 98 characters is too short for a context of 8: need at least 100"
            ),
            "{e}"
        );
        assert!(Corpus::new("t.txt", &"ab".repeat(50), 8).is_ok());
    }

    #[test]
    fn split_and_vocabulary() {
        let text = "héllo wörld, ".repeat(10);
        let corpus = Corpus::new("t", &text, 8).unwrap();
        assert_eq!(corpus.train.len(), 117);
        assert_eq!(corpus.valid.len(), 13);
        assert_eq!(corpus.vocab.len(), 10); // " ,dehlorwö" (é too): sorted, distinct
        let ids = corpus.vocab.encode("wörld").unwrap();
        assert_eq!(corpus.vocab.decode(&ids), "wörld");
        assert_eq!(corpus.vocab.decode(&corpus.train[..5]), "héllo");
        assert!(corpus.vocab.encode("z").unwrap_err().contains("'z'"));

        let dir = std::env::temp_dir().join(format!("charlm-vocab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vocab.json");
        corpus.vocab.save(&path).unwrap();
        assert_eq!(Vocab::load(&path).unwrap(), corpus.vocab);
        std::fs::write(&path, r#"["b","a"]"#).unwrap();
        assert!(Vocab::load(&path).unwrap_err().contains("sorted"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
