//! Sentence embeddings behind one trait, so that overlap detection and search do not care where vectors come from.
//!
//! Implementations:
//! - [`PocketEmbedder`] (feature `local-models`, the zero-setup default): the quantised paraphrase-MiniLM-L3-v2
//!   that the `pocket-encoder` crate publishes, compiled in and run by this crate's own BERT forward pass (weights
//!   packed once, run-time SIMD dispatch). No files, no network.
//! - [`MiniLmDirEmbedder`] (feature `local-models`): an all-MiniLM-L6-v2 style directory (`config.json`,
//!   `tokenizer.json`, `model.safetensors`), run by the same forward pass.
//! - [`OpenAiEmbedder`]: any OpenAI-compatible `POST {base_url}/embeddings` endpoint (OpenAI, Ollama, vLLM, ...).
//! - [`HashingEmbedder`]: deterministic feature hashing, for unit tests only (no semantics beyond shared words).
//!
//! Every vector is stored with [`Embedder::model_id`]; vectors of different ids are never compared.
//! Pick an implementation from configuration with [`EmbedderConfig::from_env`] and [`build`].
//!
//! The workspace dependency is declared with `default-features = false`; a crate that needs the local models
//! enables `features = ["local-models"]`, one that only needs the trait, hashing or the HTTP client does not.

#[cfg(feature = "local-models")]
mod bert;
mod config;
mod hashing;
#[cfg(feature = "local-models")]
mod int8;
#[cfg(feature = "local-models")]
mod minilm;
mod openai;
#[cfg(feature = "local-models")]
mod pocket;
#[cfg(feature = "local-models")]
mod simd;

pub use config::{DEFAULT_OPENAI_MODEL, ENV_DIM, ENV_KEY, ENV_MODEL, ENV_MODEL_DIR, ENV_URL, EmbedderConfig, build};
pub use hashing::{DEFAULT_HASH_DIM, HashingEmbedder};
#[cfg(feature = "local-models")]
pub use minilm::MiniLmDirEmbedder;
pub use openai::OpenAiEmbedder;
#[cfg(feature = "local-models")]
pub use pocket::{CENTRE_REVISION, POCKET_EXACT_MODEL_ID, POCKET_MODEL_ID, POCKET_UNCENTRED_MODEL_ID, PocketEmbedder};
#[cfg(feature = "local-models")]
pub use simd::{ENV_SIMD, unit as simd_unit};

/// The variable that sets how many threads the in-process models use (rayon's pool, over which the forward pass
/// splits its matrix products).
pub const ENV_THREADS: &str = "RAYON_NUM_THREADS";

/// Pins the thread count of the in-process models to the physical cores, unless [`ENV_THREADS`] already sets one.
///
/// Rayon's default is the logical CPUs; two hyperthreads of one core share its vector units, so threads beyond the
/// physical cores only add hand-offs to each matrix product.
///
/// # Safety
/// Sets a process environment variable: call it before the process starts any other thread (first
/// thing in `main`, before an async runtime is built), when nothing can read the environment meanwhile.
#[cfg(feature = "local-models")]
#[allow(unsafe_code)]
pub unsafe fn pin_model_threads() {
    if std::env::var_os(ENV_THREADS).is_none_or(|v| v.is_empty()) {
        let n = num_cpus::get_physical().max(1);
        // SAFETY: the caller guarantees that no other thread exists.
        unsafe { std::env::set_var(ENV_THREADS, n.to_string()) };
    }
}

/// A sentence embedding model.
///
/// Contract shared by all implementations: `embed` returns exactly one L2-normalised vector of length `dim()` per
/// input text, in input order; empty input gives empty output; a blank (empty or whitespace-only) text is rejected
/// with [`EmbedError::Invalid`] naming its index, the same way for every backend.
#[async_trait::async_trait]
pub trait Embedder: Send + Sync + std::fmt::Debug + 'static {
    /// Stable id of the model and its configuration, stored with every vector; vectors of different ids are never
    /// compared. E.g. "pocket-encoder/paraphrase-MiniLM-L3-v2-q4a8-centred1@0.1.2", "minilm-dir/all-MiniLM-L6-v2@<fingerprint>",
    /// "openai/<model>@<host>", "hash/v1-384".
    fn model_id(&self) -> &str;
    /// Length of every vector. An [`OpenAiEmbedder`] without a configured or known dimension returns 0 until its
    /// first successful response.
    fn dim(&self) -> usize;
    /// One L2-normalised vector per text, in order. Empty input → empty output.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Why embedding failed. Callers degrade on `Unavailable` (fall back to lexical signals, retry later) and surface
/// `Invalid` as a configuration or input problem.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The embedding service cannot be reached right now: connection refused, timeout, 5xx, rate limited.
    #[error("embeddings unavailable: {0}")]
    Unavailable(String),
    /// Bad configuration, bad model directory, bad input or a response that breaks the contract.
    #[error("embeddings invalid: {0}")]
    Invalid(String),
}

impl EmbedError {
    /// True for transient failures that a caller should degrade around rather than report as misconfiguration.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, EmbedError::Unavailable(_))
    }
}

/// Cosine similarity. For L2-normalised vectors this is their dot product; unnormalised input is divided by the
/// norms. Vectors of different lengths, empty vectors and zero vectors give 0. The result is clamped to [-1, 1].
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na <= 0.0 || nb <= 0.0 || !dot.is_finite() {
        return 0.0;
    }
    ((dot / (na.sqrt() * nb.sqrt())) as f32).clamp(-1.0, 1.0)
}

/// Scales `v` to unit L2 norm in place. Returns false (leaving `v` unchanged) when the norm is zero or not finite.
pub fn l2_normalize(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
    if !norm.is_finite() || norm <= 0.0 {
        return false;
    }
    for x in v.iter_mut() {
        *x = (f64::from(*x) / norm) as f32;
    }
    true
}

/// Rejects blank texts so that every backend treats them alike (the bundled model refuses them, hashing would give
/// a zero vector, OpenAI returns 400).
pub(crate) fn check_texts(texts: &[String]) -> Result<(), EmbedError> {
    match texts.iter().position(|t| t.trim().is_empty()) {
        Some(i) => Err(EmbedError::Invalid(format!("text {i} is blank; blank texts cannot be embedded"))),
        None => Ok(()),
    }
}

/// Runs `f` on the model threads (the pool the forward pass splits its products over) and awaits its result: one
/// hand-off, where a blocking thread that then handed the work to the pool took two (each a thread wake-up, which
/// is what a loaded machine delays). A panic comes back as an error.
#[cfg(feature = "local-models")]
pub(crate) async fn on_model_threads<T, F>(f: F) -> Result<T, EmbedError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, EmbedError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        // the receiver may be gone (its request timed out); the result is then dropped
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.await {
        Ok(Ok(out)) => out,
        Ok(Err(panic)) => {
            let what =
                panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned());
            Err(EmbedError::Invalid(format!("embedding task panicked: {}", what.unwrap_or_default())))
        }
        Err(_) => Err(EmbedError::Unavailable("embedding task ended without an answer".to_owned())),
    }
}

/// Maps a failed `spawn_blocking` join to an error.
#[cfg(feature = "local-models")]
pub(crate) fn join_error(e: tokio::task::JoinError) -> EmbedError {
    if e.is_cancelled() {
        EmbedError::Unavailable("embedding task cancelled".to_owned())
    } else {
        EmbedError::Invalid(format!("embedding task panicked: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "local-models")]
    #[tokio::test]
    async fn model_threads_answer_and_a_panic_is_an_error() {
        assert!(
            on_model_threads(|| Ok(rayon::current_thread_index().is_some())).await.expect("ran"),
            "on a pool thread"
        );
        let err = on_model_threads::<(), _>(|| panic!("bad tensor")).await.expect_err("panicked");
        assert!(matches!(&err, EmbedError::Invalid(m) if m.contains("bad tensor")), "{err:?}");
        assert_eq!(on_model_threads(|| Ok(7)).await.expect("still serving"), 7);
    }

    #[test]
    fn cosine_of_parallel_orthogonal_and_opposite_vectors() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
        assert!((cosine(&[1.0, 0.0], &[-1.0, 0.0]) + 1.0).abs() < 1e-6);
    }

    #[test]
    fn cosine_tolerates_unnormalised_and_degenerate_input() {
        assert!((cosine(&[3.0, 4.0], &[6.0, 8.0]) - 1.0).abs() < 1e-6);
        assert!((cosine(&[1.0, 1.0], &[2.0, 0.0]) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[], &[]), 0.0);
    }

    #[test]
    fn l2_normalize_scales_to_unit_length_and_refuses_zero() {
        let mut v = vec![3.0, 4.0];
        assert!(l2_normalize(&mut v));
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut zero = vec![0.0, 0.0];
        assert!(!l2_normalize(&mut zero));
        assert_eq!(zero, vec![0.0, 0.0]);
    }

    #[test]
    fn blank_texts_are_rejected_with_their_index() {
        assert!(check_texts(&["a".to_owned(), "b".to_owned()]).is_ok());
        let err = check_texts(&["a".to_owned(), " \n\t".to_owned()]).expect_err("blank must be rejected");
        assert!(matches!(&err, EmbedError::Invalid(m) if m.contains("text 1")), "{err}");
    }
}
