//! The zero-setup default: paraphrase-MiniLM-L3-v2 (4-bit weights, 384 dimensions) compiled into `pocket-encoder`.
//!
//! The model is loaded once per process on first use (about 0.1 s), on a blocking thread, as is every inference
//! call. `pocket-encoder` right-truncates each text to 128 WordPiece tokens and encodes texts one after another;
//! it refuses more than 4096 texts, 64 KiB per text or 4 MiB per call, so this wrapper sends chunks of
//! [`CHUNK`] texts and cuts each text to 64 KiB at a character boundary (far beyond the 128 tokens that count).

use std::sync::{Arc, OnceLock};

use crate::{EmbedError, Embedder, check_texts, join_error};

/// Model id of the bundled encoder. `pocket-encoder` is pinned to `=0.1.2` in the workspace; a different version
/// (or different bundled weights, see the test on the revision) must get a new id.
pub const POCKET_MODEL_ID: &str = "pocket-encoder/paraphrase-MiniLM-L3-v2-q4@0.1.2";

/// Texts per call into the encoder: 64 texts × 64 KiB stays within its 4 MiB per-call limit.
const CHUNK: usize = 64;
const MAX_TEXT_BYTES: usize = 64 * 1024;

/// The bundled `pocket-encoder` model. Cheap to clone; clones share the loaded model.
#[derive(Clone, Default)]
pub struct PocketEmbedder {
    encoder: Arc<OnceLock<pocket_encoder::Encoder>>,
}

impl std::fmt::Debug for PocketEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PocketEmbedder")
            .field("model_id", &POCKET_MODEL_ID)
            .field("loaded", &self.encoder.get().is_some())
            .finish()
    }
}

impl PocketEmbedder {
    /// Creates the embedder without loading the model (that happens on first use or with [`Self::load`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads the bundled weights now, on a blocking thread, instead of on the first `embed`.
    pub async fn load(&self) -> Result<(), EmbedError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.encoder().map(|_| ())).await.map_err(join_error)?
    }

    fn encoder(&self) -> Result<&pocket_encoder::Encoder, EmbedError> {
        if let Some(encoder) = self.encoder.get() {
            return Ok(encoder);
        }
        let start = std::time::Instant::now();
        let encoder = pocket_encoder::Encoder::new().map_err(|e| EmbedError::Invalid(format!("bundled model: {e}")))?;
        tracing::info!(
            model_id = POCKET_MODEL_ID,
            elapsed_ms = start.elapsed().as_millis() as u64,
            "embedding model loaded"
        );
        Ok(self.encoder.get_or_init(|| encoder))
    }

    fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encoder = self.encoder()?;
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(CHUNK) {
            // Leading whitespace does not change the tokens; dropping it keeps a cut text from turning blank.
            let chunk: Vec<&str> = chunk.iter().map(|t| truncate_bytes(t.trim_start(), MAX_TEXT_BYTES)).collect();
            let vectors = encoder.embed(&chunk).map_err(|e| EmbedError::Invalid(format!("bundled model: {e}")))?;
            out.extend(vectors);
        }
        Ok(out)
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[async_trait::async_trait]
impl Embedder for PocketEmbedder {
    fn model_id(&self) -> &str {
        POCKET_MODEL_ID
    }

    fn dim(&self) -> usize {
        // From the bundled metadata (parsed once); does not load weights.
        static DIM: OnceLock<usize> = OnceLock::new();
        *DIM.get_or_init(|| pocket_encoder::model_info().dimensions)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        check_texts(texts)?;
        let this = self.clone();
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || this.embed_blocking(&texts)).await.map_err(join_error)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of the bundled quantised weights of `pocket-encoder` 0.1.2, as reported by `model_info`.
    const POCKET_REVISION: &str = "sha256:dabb40d5d98a22372c8921acf048cb54bb8bf6d781b1233b2a360d5125789c7e";

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_bytes("abc", 10), "abc");
        assert_eq!(truncate_bytes("abcdef", 3), "abc");
        // 'é' is two bytes: cutting at 2 would split it.
        assert_eq!(truncate_bytes("aé", 2), "a");
    }

    #[test]
    fn bundled_metadata_matches_the_pinned_id() {
        let info = pocket_encoder::model_info();
        assert_eq!(info.revision, POCKET_REVISION, "bundled weights changed: give POCKET_MODEL_ID a new version");
        assert_eq!(info.upstream_model, "sentence-transformers/paraphrase-MiniLM-L3-v2");
        assert_eq!(info.dimensions, 384);
    }

    #[test]
    fn embedder_is_send_sync_and_debug_without_loading() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<PocketEmbedder>();
        let e = PocketEmbedder::new();
        assert!(format!("{e:?}").contains("loaded: false"));
    }
}
