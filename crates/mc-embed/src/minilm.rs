//! A sentence-transformers BERT model from a local directory (all-MiniLM-L6-v2 and its kin), run by this crate's
//! own forward pass ([`crate::bert`]).
//!
//! The directory holds `config.json` (BERT config), `tokenizer.json` (Hugging Face tokenizer) and
//! `model.safetensors` (f32, f16 or bf16 weights, with or without the `bert.` prefix). Texts are tokenised with
//! special tokens and truncated to [`MAX_TOKENS`] tokens; up to [`BATCH`] texts go through the encoder together
//! (their tokens stacked, no padding), are mean-pooled over their tokens and L2-normalised, as sentence-transformers
//! does for these models.
//!
//! The constructor only checks the files and reads `config.json`; the tokenizer and the weights (read into memory:
//! no mmap, the workspace forbids `unsafe`) are loaded once, on first use or with [`MiniLmDirEmbedder::load`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use safetensors::{Dtype, SafeTensors};
use tokenizers::{Tokenizer, TruncationParams};

use crate::bert::{Arithmetic, Bert, BertShape, Weights, embed_texts};
use crate::{EmbedError, Embedder, check_texts, join_error, on_model_threads};

/// Tokens per text, special tokens included (sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2).
pub const MAX_TOKENS: usize = 256;
/// Texts per forward pass.
pub const BATCH: usize = 32;

const FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// An all-MiniLM-L6-v2 style model directory. Cheap to clone; clones share the loaded model.
#[derive(Clone)]
pub struct MiniLmDirEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    model_id: String,
    shape: BertShape,
    loaded: OnceLock<Result<Loaded, String>>,
}

struct Loaded {
    bert: Bert,
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for MiniLmDirEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiniLmDirEmbedder")
            .field("dir", &self.inner.dir)
            .field("model_id", &self.inner.model_id)
            .field("dim", &self.inner.shape.hidden)
            .field("loaded", &matches!(self.inner.loaded.get(), Some(Ok(_))))
            .finish()
    }
}

impl MiniLmDirEmbedder {
    /// Checks that `dir` holds the three files and that `config.json` is a BERT config. Does not load weights.
    pub fn new(dir: impl AsRef<Path>) -> Result<Self, EmbedError> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(EmbedError::Invalid(format!("model directory {} does not exist", dir.display())));
        }
        let missing: Vec<&str> = FILES.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
        if !missing.is_empty() {
            return Err(EmbedError::Invalid(format!(
                "model directory {} lacks {} (needs config.json, tokenizer.json and model.safetensors)",
                dir.display(),
                missing.join(", ")
            )));
        }
        let config_path = dir.join("config.json");
        let config_text = std::fs::read_to_string(&config_path)
            .map_err(|e| EmbedError::Invalid(format!("cannot read {}: {e}", config_path.display())))?;
        let shape = serde_json::from_str(&config_text)
            .map_err(|e| e.to_string())
            .and_then(|config| BertShape::from_config(&config))
            .map_err(|e| EmbedError::Invalid(format!("{} is not a BERT config: {e}", config_path.display())))?;
        let fingerprint = fingerprint(&dir, &config_text)?;
        let model_id = format!("minilm-dir/{}@{fingerprint}", display_name(&dir));
        Ok(Self { inner: Arc::new(Inner { dir, model_id, shape, loaded: OnceLock::new() }) })
    }

    /// The model directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Loads the tokenizer and the weights now, on a blocking thread, instead of on the first `embed`.
    pub async fn load(&self) -> Result<(), EmbedError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.loaded().map(|_| ())).await.map_err(join_error)?
    }

    fn loaded(&self) -> Result<&Loaded, EmbedError> {
        // A failed load is remembered: the files are local, retrying would re-read ~90 MB for the same error.
        self.inner
            .loaded
            .get_or_init(|| {
                let start = std::time::Instant::now();
                let loaded = load(&self.inner.dir, self.inner.shape);
                match &loaded {
                    Ok(_) => tracing::info!(
                        model_id = %self.inner.model_id,
                        elapsed_ms = start.elapsed().as_millis() as u64,
                        "embedding model loaded"
                    ),
                    Err(e) => {
                        tracing::warn!(model_id = %self.inner.model_id, error = %e, "embedding model failed to load")
                    }
                }
                loaded
            })
            .as_ref()
            .map_err(|e| EmbedError::Invalid(e.clone()))
    }

    fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let loaded = self.loaded()?;
        embed_texts(&loaded.bert, &loaded.tokenizer, texts.iter().map(String::as_str), BATCH)
            .map_err(|e| EmbedError::Invalid(format!("model {}: {e}", self.inner.model_id)))
    }
}

fn load(dir: &Path, shape: BertShape) -> Result<Loaded, String> {
    let tokenizer_path = dir.join("tokenizer.json");
    let mut tokenizer =
        Tokenizer::from_file(&tokenizer_path).map_err(|e| format!("cannot load {}: {e}", tokenizer_path.display()))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: MAX_TOKENS.min(shape.max_positions),
            ..Default::default()
        }))
        .map_err(|e| format!("cannot configure truncation: {e}"))?;
    let weights_path = dir.join("model.safetensors");
    let bytes = std::fs::read(&weights_path).map_err(|e| format!("cannot read {}: {e}", weights_path.display()))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("{} is not a safetensors file: {e}", weights_path.display()))?;
    let prefix = if file.names().iter().any(|n| n.starts_with("bert.")) { "bert." } else { "" };
    let bert = Bert::load(&DirWeights { file, prefix }, shape, Arithmetic::Exact)
        .map_err(|e| format!("{} does not match config.json: {e}", weights_path.display()))?;
    Ok(Loaded { bert, tokenizer })
}

/// Tensors of a Hugging Face BERT checkpoint, in f32, f16 or bf16.
struct DirWeights<'a> {
    file: SafeTensors<'a>,
    prefix: &'static str,
}

impl Weights for DirWeights<'_> {
    fn tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
        let view = self.file.tensor(&format!("{}{name}", self.prefix)).map_err(|e| format!("{name}: {e}"))?;
        let data = view.data();
        let values: Vec<f32> = match view.dtype() {
            Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            other => return Err(format!("{name} is {other:?}; f32, f16 or bf16 expected")),
        };
        Ok((view.shape().to_vec(), values))
    }
}

/// Directory name for the model id; a generic last component such as `model` is qualified by its parent.
fn display_name(dir: &Path) -> String {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    match name(&dir) {
        Some(last) if matches!(last.to_ascii_lowercase().as_str(), "model" | "models" | "weights") => {
            match dir.parent().and_then(name) {
                Some(parent) => format!("{parent}/{last}"),
                None => last,
            }
        }
        Some(last) => last,
        None => "unnamed".to_owned(),
    }
}

/// 32-bit hex fingerprint of the model: `config.json`, the weights' size and three 64 KiB samples of the weights
/// (start, middle, end). Cheap (no full read) and different for a fine-tuned or re-exported model in a same-named
/// directory, so its vectors are never mixed with the old ones.
fn fingerprint(dir: &Path, config_text: &str) -> Result<String, EmbedError> {
    use std::io::{Read, Seek, SeekFrom};
    const SAMPLE: u64 = 64 * 1024;
    let path = dir.join("model.safetensors");
    let invalid = |e: std::io::Error| EmbedError::Invalid(format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(&path).map_err(invalid)?;
    let size = file.metadata().map_err(invalid)?.len();
    let mut h = Fnv::default();
    h.write(config_text.as_bytes());
    h.write(&size.to_le_bytes());
    let mut buf = Vec::with_capacity(SAMPLE as usize);
    for offset in [0, (size / 2).saturating_sub(SAMPLE / 2), size.saturating_sub(SAMPLE)] {
        file.seek(SeekFrom::Start(offset)).map_err(invalid)?;
        buf.clear();
        file.by_ref().take(SAMPLE).read_to_end(&mut buf).map_err(invalid)?;
        h.write(&buf);
    }
    Ok(format!("{:08x}", (h.0 ^ (h.0 >> 32)) as u32))
}

struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

#[async_trait::async_trait]
impl Embedder for MiniLmDirEmbedder {
    fn model_id(&self) -> &str {
        &self.inner.model_id
    }

    fn dim(&self) -> usize {
        self.inner.shape.hidden
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        check_texts(texts)?;
        let this = self.clone();
        let texts = texts.to_vec();
        on_model_threads(move || this.embed_blocking(&texts)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
        "intermediate_size": 1536, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "max_position_embeddings": 512,
        "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
        "model_type": "bert"}"#;

    fn dir_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("write");
        }
        dir
    }

    fn invalid_message(r: Result<MiniLmDirEmbedder, EmbedError>) -> String {
        match r {
            Err(EmbedError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn missing_directory_is_invalid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = invalid_message(MiniLmDirEmbedder::new(dir.path().join("nope")));
        assert!(m.contains("does not exist"), "{m}");
    }

    #[test]
    fn missing_files_are_named() {
        let dir = dir_with(&[("config.json", CONFIG.as_bytes())]);
        let m = invalid_message(MiniLmDirEmbedder::new(dir.path()));
        assert!(m.contains("tokenizer.json, model.safetensors"), "{m}");
        assert!(!m.contains("lacks config.json"), "{m}");
    }

    #[test]
    fn bad_config_is_invalid() {
        let dir = dir_with(&[
            ("config.json", b"{\"hidden_size\": 384}"),
            ("tokenizer.json", b"{}"),
            ("model.safetensors", b"x"),
        ]);
        let m = invalid_message(MiniLmDirEmbedder::new(dir.path()));
        assert!(m.contains("not a BERT config"), "{m}");
    }

    #[tokio::test]
    async fn corrupt_files_fail_on_load_not_on_construction() {
        let dir =
            dir_with(&[("config.json", CONFIG.as_bytes()), ("tokenizer.json", b"{}"), ("model.safetensors", b"x")]);
        let e = MiniLmDirEmbedder::new(dir.path()).expect("files present and config valid");
        assert_eq!(e.dim(), 384);
        assert!(e.model_id().starts_with("minilm-dir/"), "{}", e.model_id());
        let err = e.embed(&["hello".to_owned()]).await.expect_err("corrupt tokenizer must fail");
        assert!(matches!(&err, EmbedError::Invalid(m) if m.contains("tokenizer.json")), "{err}");
        // The failure is remembered and reported again.
        assert!(matches!(e.load().await, Err(EmbedError::Invalid(_))));
    }

    #[test]
    fn fingerprint_changes_with_the_weights_and_names_are_qualified() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = dir.path().join("some-pack").join("model");
        std::fs::create_dir_all(&model).expect("mkdir");
        std::fs::write(model.join("config.json"), CONFIG).expect("write");
        std::fs::write(model.join("tokenizer.json"), "{}").expect("write");
        std::fs::write(model.join("model.safetensors"), vec![1u8; 200_000]).expect("write");
        let a = MiniLmDirEmbedder::new(&model).expect("valid");
        assert!(a.model_id().starts_with("minilm-dir/some-pack/model@"), "{}", a.model_id());
        assert_eq!(a.model_id(), MiniLmDirEmbedder::new(&model).expect("valid").model_id());
        let mut weights = vec![1u8; 200_000];
        weights[100_000] = 2;
        std::fs::write(model.join("model.safetensors"), weights).expect("write");
        let b = MiniLmDirEmbedder::new(&model).expect("valid");
        assert_ne!(a.model_id(), b.model_id());
    }
}
