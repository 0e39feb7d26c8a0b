//! The zero-setup default: paraphrase-MiniLM-L3-v2 (4-bit weights, 384 dimensions) as bundled in `pocket-encoder`.
//!
//! The weights, tokenizer and configuration are the files `pocket-encoder` publishes (found by `build.rs`, compiled
//! in); they run through this crate's own forward pass ([`crate::bert`]), which packs every weight matrix once at
//! load instead of on every call as candle does inside `pocket-encoder`: a short query embeds about twice as fast.
//! With f32 products ([`PocketEmbedder::exact`]) the vectors are those of `pocket-encoder` to about 1e-6 (a test
//! compares them); the default multiplies in integers and then centres the vectors (see [`CENTRE_REVISION`]).
//!
//! The model is loaded once per process on first use (well under 0.1 s), on a blocking thread, as is every
//! inference call. Texts are right-truncated to 128 WordPiece tokens, as `pocket-encoder` does; a text is cut to
//! 64 KiB at a character boundary before tokenising (far beyond the 128 tokens that count).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use safetensors::SafeTensors;
use tokenizers::{Tokenizer, TruncationParams};

use crate::bert::{Arithmetic, Bert, BertShape, Int4, Table, Weights, embed_texts, int4_at};
use crate::{EmbedError, Embedder, check_texts, join_error, on_model_threads};

/// Model id of the bundled encoder as [`PocketEmbedder::new`] runs it: 4-bit weights times activations quantised to
/// 8 bits per token, multiplied in integers (see `int8.rs`), and the vectors centred (see [`CENTRE_REVISION`]).
/// `pocket-encoder` is pinned to `=0.1.2` in the workspace; a different version (or different bundled weights, see
/// the test on the revision), or another centre, must get a new id.
pub const POCKET_MODEL_ID: &str = "pocket-encoder/paraphrase-MiniLM-L3-v2-q4a8-centred1@0.1.2";
/// Model id of the integer products without the centring ([`PocketEmbedder::uncentred`]): what the centre is the
/// mean of.
pub const POCKET_UNCENTRED_MODEL_ID: &str = "pocket-encoder/paraphrase-MiniLM-L3-v2-q4a8@0.1.2";
/// Model id of the same weights multiplied in f32 ([`PocketEmbedder::exact`]): `pocket-encoder`'s own vectors.
pub const POCKET_EXACT_MODEL_ID: &str = "pocket-encoder/paraphrase-MiniLM-L3-v2-q4@0.1.2";

/// The centre: the mean of the uncentred vectors of the calibration texts of the overlap evaluation set (written by
/// `overlap-eval --write-centre`). Every vector of this model shares a large component in one direction, so any two
/// texts of the same field already score 0.3–0.4; subtracting the mean before normalising spreads unrelated texts
/// apart and leaves paraphrases close (cross-validated on the calibration pairs: duplicate recall 0.75 → 0.84).
const CENTRE: &str = include_str!("../assets/pocket-centre.json");
/// SHA-256 of [`CENTRE`]: a test pins it, so that a new centre cannot ship under the old model id.
pub const CENTRE_REVISION: &str = "sha256:06892a121a99152e431a2c4189f1721de7c315430b16673f79c790cfff7630f6";

/// Texts per forward pass: their tokens are stacked, so a chunk is at most 32 × 128 rows.
const CHUNK: usize = 32;
const MAX_TEXT_BYTES: usize = 64 * 1024;
/// WordPiece tokens per text, special tokens included, as in `pocket-encoder`.
const MAX_TOKENS: usize = 128;

macro_rules! asset {
    ($file:literal) => {
        include_bytes!(concat!(env!("MC_POCKET_ASSETS"), "/", $file))
    };
}

/// The bundled model. Cheap to clone; clones share the loaded model.
#[derive(Clone)]
pub struct PocketEmbedder {
    arithmetic: Arithmetic,
    centred: bool,
    loaded: Arc<OnceLock<Result<Loaded, String>>>,
}

impl Default for PocketEmbedder {
    fn default() -> Self {
        Self { arithmetic: Arithmetic::Int8, centred: true, loaded: Arc::default() }
    }
}

struct Loaded {
    bert: Bert,
    tokenizer: Tokenizer,
    centre: Vec<f32>,
}

impl std::fmt::Debug for PocketEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PocketEmbedder")
            .field("model_id", &self.model_id())
            .field("loaded", &matches!(self.loaded.get(), Some(Ok(_))))
            .finish()
    }
}

impl PocketEmbedder {
    /// Creates the embedder without loading the model (that happens on first use or with [`Self::load`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The same weights multiplied in f32: `pocket-encoder`'s own vectors ([`POCKET_EXACT_MODEL_ID`]); its matrix
    /// products take about twice as long as [`Self::new`]'s integer ones.
    pub fn exact() -> Self {
        Self { arithmetic: Arithmetic::Exact, centred: false, loaded: Arc::default() }
    }

    /// The integer products without the centring ([`POCKET_UNCENTRED_MODEL_ID`]).
    pub fn uncentred() -> Self {
        Self { arithmetic: Arithmetic::Int8, centred: false, loaded: Arc::default() }
    }

    /// Loads the bundled weights now, on a blocking thread, instead of on the first `embed`.
    pub async fn load(&self) -> Result<(), EmbedError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.loaded().map(|_| ())).await.map_err(join_error)?
    }

    fn loaded(&self) -> Result<&Loaded, EmbedError> {
        self.loaded
            .get_or_init(|| {
                let start = std::time::Instant::now();
                let loaded = load(self.arithmetic);
                match &loaded {
                    Ok(_) => tracing::info!(
                        model_id = self.model_id(),
                        elapsed_ms = start.elapsed().as_millis() as u64,
                        "embedding model loaded"
                    ),
                    Err(e) => tracing::error!(model_id = self.model_id(), error = %e, "bundled model failed to load"),
                }
                loaded
            })
            .as_ref()
            .map_err(|e| EmbedError::Invalid(format!("bundled model: {e}")))
    }

    fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let loaded = self.loaded()?;
        // Leading whitespace does not change the tokens; dropping it keeps a cut text from turning blank.
        let texts = texts.iter().map(|t| truncate_bytes(t.trim_start(), MAX_TEXT_BYTES));
        let mut vectors = embed_texts(&loaded.bert, &loaded.tokenizer, texts, CHUNK)
            .map_err(|e| EmbedError::Invalid(format!("bundled model: {e}")))?;
        if self.centred {
            for (i, v) in vectors.iter_mut().enumerate() {
                v.iter_mut().zip(&loaded.centre).for_each(|(x, c)| *x -= c);
                if !crate::l2_normalize(v) {
                    return Err(EmbedError::Invalid(format!("bundled model: text {i} is the centre itself")));
                }
            }
        }
        Ok(vectors)
    }
}

fn load(arithmetic: Arithmetic) -> Result<Loaded, String> {
    let config: serde_json::Value =
        serde_json::from_slice(asset!("config.json")).map_err(|e| format!("config.json: {e}"))?;
    let shapes: HashMap<String, Vec<usize>> =
        serde_json::from_slice(asset!("shapes.json")).map_err(|e| format!("shapes.json: {e}"))?;
    let file = SafeTensors::deserialize(asset!("model.safetensors")).map_err(|e| format!("model.safetensors: {e}"))?;
    let bert = Bert::load(&Bundled { file, shapes }, BertShape::from_config(&config)?, arithmetic)?;
    let mut tokenizer = Tokenizer::from_bytes(asset!("tokenizer.json")).map_err(|e| format!("tokenizer.json: {e}"))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
        .map_err(|e| format!("tokenizer truncation: {e}"))?;
    let centre: Vec<f32> = serde_json::from_str(CENTRE).map_err(|e| format!("pocket-centre.json: {e}"))?;
    if centre.len() != bert.hidden() || centre.iter().any(|c| !c.is_finite()) {
        return Err(format!("pocket-centre.json: {} values, expected {} finite ones", centre.len(), bert.hidden()));
    }
    Ok(Loaded { bert, tokenizer, centre })
}

/// The bundled file: vectors as little-endian f32; matrices as `NAME.q4` (4-bit values `nibble - 8`, two per
/// byte, low nibble first) and `NAME.scales` (one f16 scale per group of 32 values), shapes in `shapes.json`.
struct Bundled<'a> {
    file: SafeTensors<'a>,
    shapes: HashMap<String, Vec<usize>>,
}

impl Bundled<'_> {
    fn bytes(&self, name: &str) -> Result<&[u8], String> {
        self.file.tensor(name).map(|t| t.data()).map_err(|e| format!("model.safetensors: {name}: {e}"))
    }

    fn shape(&self, name: &str) -> Result<(Vec<usize>, usize), String> {
        let shape = self.shapes.get(name).ok_or_else(|| format!("shapes.json lacks {name}"))?.clone();
        let count = shape.iter().product();
        Ok((shape, count))
    }

    /// The 4-bit values and their scales, checked to cover `count` values.
    fn q4(&self, name: &str, count: usize) -> Result<(&[u8], Vec<f32>), String> {
        let nibbles = self.bytes(&format!("{name}.q4"))?;
        let scales: Vec<f32> = self
            .bytes(&format!("{name}.scales"))?
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        if nibbles.len() * 2 < count || scales.len() * 32 < count {
            return Err(format!("model.safetensors: {name} holds fewer than {count} values"));
        }
        Ok((nibbles, scales))
    }
}

impl Weights for Bundled<'_> {
    fn tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>), String> {
        let (shape, count) = self.shape(name)?;
        let values: Vec<f32> = if shape.len() < 2 {
            self.bytes(name)?.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
        } else {
            let (nibbles, scales) = self.q4(name, count)?;
            (0..count).map(|i| f32::from(int4_at(nibbles, i)) * scales[i / 32]).collect()
        };
        if values.len() != count {
            return Err(format!("model.safetensors: {name} holds {} values, shapes.json says {count}", values.len()));
        }
        Ok((shape, values))
    }

    fn int4(&self, name: &str) -> Option<Result<Int4, String>> {
        let (shape, count) = match self.shape(name) {
            Ok(found) if found.0.len() == 2 => found,
            Ok(_) => return None,
            Err(e) => return Some(Err(e)),
        };
        Some(self.q4(name, count).map(|(nibbles, scales)| {
            let values = (0..count).map(|i| int4_at(nibbles, i)).collect();
            (shape, values, scales[..count.div_ceil(32)].to_vec())
        }))
    }

    fn table(&self, name: &str) -> Result<Table, String> {
        let (shape, count) = self.shape(name)?;
        let [rows, dim] = shape[..] else {
            return Err(format!("{name} has shape {shape:?}, expected two dimensions"));
        };
        let (nibbles, scales) = self.q4(name, count)?;
        Ok(Table::Q4 { rows, dim, nibbles: nibbles.to_vec(), scales })
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
        match (self.arithmetic, self.centred) {
            (Arithmetic::Int8, true) => POCKET_MODEL_ID,
            (Arithmetic::Int8, false) => POCKET_UNCENTRED_MODEL_ID,
            // not offered: the centre is the mean of the integer vectors
            (Arithmetic::Exact, _) => POCKET_EXACT_MODEL_ID,
        }
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
        on_model_threads(move || this.embed_blocking(&texts)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of the bundled quantised weights of `pocket-encoder` 0.1.2, as reported by `model_info`.
    const POCKET_REVISION: &str = "sha256:dabb40d5d98a22372c8921acf048cb54bb8bf6d781b1233b2a360d5125789c7e";

    fn strings(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    /// `sha256:` and the hex digest of `bytes`.
    fn sha256(bytes: &[u8]) -> String {
        use sha2::Digest;
        let hex: String = sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }

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
    fn compiled_in_weights_are_the_published_ones() {
        assert_eq!(sha256(asset!("model.safetensors")), POCKET_REVISION);
    }

    /// The own forward pass gives `pocket-encoder`'s vectors (candle's forward pass on the same weights), alone and
    /// in a batch, for short texts, long ones cut at 128 tokens, and text with unknown words and accents.
    #[tokio::test]
    async fn vectors_are_those_of_pocket_encoder() {
        let long = "Migrate the ledger table to the new schema and backfill the hash chain. ".repeat(20);
        let texts = strings(&[
            "Fix the flaky login test",
            "a",
            "Traduire la documentation de facturation en français (zxqv-42)",
            long.as_str(),
            "Add retries with exponential backoff to the webhook sender",
        ]);
        let reference = pocket_encoder::Encoder::new().expect("reference model").embed(&texts).expect("reference");
        let ours = PocketEmbedder::exact();
        assert_eq!(ours.model_id(), POCKET_EXACT_MODEL_ID);
        let batch = ours.embed(&texts).await.expect("batch");
        for (i, text) in texts.iter().enumerate() {
            let alone = ours.embed(std::slice::from_ref(text)).await.expect("alone").remove(0);
            for got in [&alone, &batch[i]] {
                assert_eq!(got.len(), 384);
                let max = got.iter().zip(&reference[i]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
                assert!(max < 2e-5, "text {i}: largest difference {max}");
            }
        }
    }

    /// The integer products stay close to the exact ones: each vector, and the similarity of each pair, which is
    /// what search and the overlap scorer look at.
    #[tokio::test]
    async fn integer_products_keep_the_vectors() {
        // the long text's products are large enough to be split between the model threads
        let long = "Migrate the ledger table to the new schema and backfill the hash chain. ".repeat(20);
        let texts = strings(&[
            long.as_str(),
            "Fix the flaky login test",
            "Stabilise the intermittently failing login e2e test",
            "Create Helm chart for staging",
            "Create Helm chart for production",
            "Translate the billing docs to French",
            "Traduire la documentation de facturation en français (zxqv-42)",
            "Add retries with exponential backoff to the webhook sender",
            "a",
            "Migrate the ledger table to the new schema and backfill the hash chain",
        ]);
        let fast = PocketEmbedder::uncentred();
        assert_eq!(fast.model_id(), POCKET_UNCENTRED_MODEL_ID);
        let (exact, int8) =
            (PocketEmbedder::exact().embed(&texts).await.expect("exact"), fast.embed(&texts).await.expect("integer"));
        for i in 0..texts.len() {
            let same = crate::cosine(&exact[i], &int8[i]);
            assert!(same > 0.999, "text {i}: cosine {same} to the exact vector");
            for j in 0..i {
                let shift = (crate::cosine(&exact[i], &exact[j]) - crate::cosine(&int8[i], &int8[j])).abs();
                assert!(shift < 0.01, "texts {i} and {j}: similarity moved by {shift}");
            }
        }
    }

    #[test]
    fn the_centre_is_pinned_to_the_model_id() {
        assert_eq!(
            sha256(CENTRE.as_bytes()),
            CENTRE_REVISION,
            "the centre changed: give POCKET_MODEL_ID a new version"
        );
    }

    /// A centred vector is the uncentred one minus the centre, normalised; centring takes the shared component out,
    /// so texts of different work move apart while a paraphrase stays close.
    #[tokio::test]
    async fn centred_vectors_are_the_uncentred_ones_minus_the_centre() {
        let texts = strings(&[
            "Fix the flaky login test",
            "Stabilise the intermittently failing login e2e test",
            "Translate the billing docs to French",
            "Rotate the database credentials",
        ]);
        let centred = PocketEmbedder::new();
        assert_eq!(centred.model_id(), POCKET_MODEL_ID);
        let (c, u) = (centred.embed(&texts).await.expect("centred"), PocketEmbedder::uncentred().embed(&texts).await);
        let u = u.expect("uncentred");
        let centre: Vec<f32> = serde_json::from_str(CENTRE).expect("centre");
        assert_eq!(centre.len(), 384);
        for (c, u) in c.iter().zip(&u) {
            let mut expected: Vec<f32> = u.iter().zip(&centre).map(|(x, m)| x - m).collect();
            assert!(crate::l2_normalize(&mut expected));
            let max = c.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(max < 1e-6, "largest difference {max}");
        }
        let (para, para_u) = (crate::cosine(&c[0], &c[1]), crate::cosine(&u[0], &u[1]));
        for other in 2..4 {
            let (apart, apart_u) = (crate::cosine(&c[0], &c[other]), crate::cosine(&u[0], &u[other]));
            assert!(apart < apart_u - 0.05, "text {other}: {apart} centred against {apart_u}");
            assert!(
                para - apart > para_u - apart_u,
                "the gap to text {other} must grow: {para}/{apart}, {para_u}/{apart_u}"
            );
        }
    }

    #[test]
    fn embedder_is_send_sync_and_debug_without_loading() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<PocketEmbedder>();
        let e = PocketEmbedder::new();
        assert!(format!("{e:?}").contains("loaded: false"));
    }
}
