//! Choosing an embedder: [`EmbedderConfig`] from the environment, and [`build`] to construct it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{EmbedError, Embedder, HashingEmbedder, OpenAiEmbedder};

/// Environment variable: base URL of an OpenAI-compatible API (e.g. `http://127.0.0.1:11434/v1`). Wins over the rest.
pub const ENV_URL: &str = "MC_EMBEDDINGS_URL";
/// Environment variable: model name for [`ENV_URL`]; default [`DEFAULT_OPENAI_MODEL`].
pub const ENV_MODEL: &str = "MC_EMBEDDINGS_MODEL";
/// Environment variable: bearer key for [`ENV_URL`] (optional; Ollama needs none).
pub const ENV_KEY: &str = "MC_EMBEDDINGS_KEY";
/// Environment variable: expected vector dimension for [`ENV_URL`] (optional; otherwise known or learned).
pub const ENV_DIM: &str = "MC_EMBEDDINGS_DIM";
/// Environment variable: an all-MiniLM-L6-v2 style model directory, used when [`ENV_URL`] is unset.
pub const ENV_MODEL_DIR: &str = "MC_EMBEDDINGS_MODEL_DIR";
/// Model used with [`ENV_URL`] when [`ENV_MODEL`] is unset.
pub const DEFAULT_OPENAI_MODEL: &str = "text-embedding-3-small";

/// Which embedder to use.
#[derive(Clone, PartialEq, Eq)]
pub enum EmbedderConfig {
    /// The model compiled into the binary ([`crate::PocketEmbedder`]); needs feature `local-models`.
    Bundled,
    /// A local model directory ([`crate::MiniLmDirEmbedder`]); needs feature `local-models`.
    ModelDir(PathBuf),
    /// An OpenAI-compatible endpoint ([`OpenAiEmbedder`]).
    OpenAi { base_url: String, model: String, api_key: Option<String>, dim: Option<usize> },
    /// Deterministic hashing ([`HashingEmbedder`]); for tests.
    Hashing { dim: usize },
}

impl std::fmt::Debug for EmbedderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Bundled => f.write_str("Bundled"),
            Self::ModelDir(dir) => f.debug_tuple("ModelDir").field(dir).finish(),
            Self::OpenAi { base_url, model, api_key, dim } => f
                .debug_struct("OpenAi")
                .field("base_url", base_url)
                .field("model", model)
                .field("api_key", &api_key.as_ref().map(|_| "<redacted>"))
                .field("dim", dim)
                .finish(),
            Self::Hashing { dim } => f.debug_struct("Hashing").field("dim", dim).finish(),
        }
    }
}

impl EmbedderConfig {
    /// `MC_EMBEDDINGS_URL` (+ `MC_EMBEDDINGS_MODEL`, default "text-embedding-3-small"; `MC_EMBEDDINGS_KEY`;
    /// `MC_EMBEDDINGS_DIM`) wins, else `MC_EMBEDDINGS_MODEL_DIR`, else [`EmbedderConfig::Bundled`].
    /// Empty values count as unset. Only a malformed `MC_EMBEDDINGS_DIM` is an error here; everything else is
    /// checked by [`build`].
    pub fn from_env() -> Result<Self, EmbedError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] with a custom variable lookup (tests, or configuration files mapped to the same names).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, EmbedError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        if let Some(base_url) = get(ENV_URL) {
            let dim = match get(ENV_DIM) {
                None => None,
                Some(raw) => match raw.parse::<usize>() {
                    Ok(d) if d > 0 => Some(d),
                    _ => return Err(EmbedError::Invalid(format!("{ENV_DIM}={raw:?} is not a positive integer"))),
                },
            };
            return Ok(Self::OpenAi {
                base_url,
                model: get(ENV_MODEL).unwrap_or_else(|| DEFAULT_OPENAI_MODEL.to_owned()),
                api_key: get(ENV_KEY),
                dim,
            });
        }
        if let Some(dir) = get(ENV_MODEL_DIR) {
            return Ok(Self::ModelDir(PathBuf::from(dir)));
        }
        Ok(Self::Bundled)
    }
}

/// Constructs the configured embedder. Cheap: local models load on first use (or via their `load` methods), the
/// HTTP client connects on first request. Fails with [`EmbedError::Invalid`] on bad configuration, a model directory
/// without its files, or a local model in a build without feature `local-models`.
pub fn build(config: &EmbedderConfig) -> Result<Arc<dyn Embedder>, EmbedError> {
    match config {
        EmbedderConfig::Bundled => bundled(),
        EmbedderConfig::ModelDir(dir) => model_dir(dir),
        EmbedderConfig::OpenAi { base_url, model, api_key, dim } => {
            Ok(Arc::new(OpenAiEmbedder::new(base_url, model, api_key.clone(), *dim)?))
        }
        EmbedderConfig::Hashing { dim } => Ok(Arc::new(HashingEmbedder::new(*dim)?)),
    }
}

#[cfg(feature = "local-models")]
fn bundled() -> Result<Arc<dyn Embedder>, EmbedError> {
    Ok(Arc::new(crate::PocketEmbedder::new()))
}

#[cfg(not(feature = "local-models"))]
fn bundled() -> Result<Arc<dyn Embedder>, EmbedError> {
    Err(EmbedError::Invalid(format!(
        "the bundled model needs mc-embed's `local-models` feature; set {ENV_URL} to use an embeddings endpoint"
    )))
}

#[cfg(feature = "local-models")]
fn model_dir(dir: &std::path::Path) -> Result<Arc<dyn Embedder>, EmbedError> {
    Ok(Arc::new(crate::MiniLmDirEmbedder::new(dir)?))
}

#[cfg(not(feature = "local-models"))]
fn model_dir(dir: &std::path::Path) -> Result<Arc<dyn Embedder>, EmbedError> {
    Err(EmbedError::Invalid(format!("model directory {} needs mc-embed's `local-models` feature", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<EmbedderConfig, EmbedError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        EmbedderConfig::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn nothing_set_means_bundled() {
        assert_eq!(config(&[]).expect("ok"), EmbedderConfig::Bundled);
        assert_eq!(config(&[(ENV_URL, "  "), (ENV_MODEL_DIR, "")]).expect("ok"), EmbedderConfig::Bundled);
    }

    #[test]
    fn model_dir_is_used_without_url() {
        assert_eq!(
            config(&[(ENV_MODEL_DIR, "/models/minilm")]).expect("ok"),
            EmbedderConfig::ModelDir("/models/minilm".into())
        );
    }

    #[test]
    fn url_wins_with_default_model() {
        let c = config(&[(ENV_URL, "http://127.0.0.1:11434/v1"), (ENV_MODEL_DIR, "/models/minilm")]).expect("ok");
        assert_eq!(
            c,
            EmbedderConfig::OpenAi {
                base_url: "http://127.0.0.1:11434/v1".into(),
                model: DEFAULT_OPENAI_MODEL.into(),
                api_key: None,
                dim: None
            }
        );
    }

    #[test]
    fn url_with_model_key_and_dim() {
        let c = config(&[(ENV_URL, "https://api.example/v1"), (ENV_MODEL, "m"), (ENV_KEY, "k"), (ENV_DIM, "768")]);
        assert_eq!(
            c.expect("ok"),
            EmbedderConfig::OpenAi {
                base_url: "https://api.example/v1".into(),
                model: "m".into(),
                api_key: Some("k".into()),
                dim: Some(768)
            }
        );
        assert!(matches!(config(&[(ENV_URL, "http://h/v1"), (ENV_DIM, "lots")]), Err(EmbedError::Invalid(_))));
        assert!(matches!(config(&[(ENV_URL, "http://h/v1"), (ENV_DIM, "0")]), Err(EmbedError::Invalid(_))));
    }

    #[test]
    fn debug_hides_the_key() {
        let c = config(&[(ENV_URL, "http://h/v1"), (ENV_KEY, "sk-secret")]).expect("ok");
        assert!(!format!("{c:?}").contains("sk-secret"));
    }

    #[test]
    fn build_constructs_each_kind() {
        let h = build(&EmbedderConfig::Hashing { dim: 64 }).expect("hashing");
        assert_eq!((h.model_id(), h.dim()), ("hash/v1-64", 64));
        let o = build(&EmbedderConfig::OpenAi {
            base_url: "http://127.0.0.1:9/v1".into(),
            model: "m".into(),
            api_key: None,
            dim: Some(8),
        })
        .expect("openai");
        assert_eq!((o.model_id(), o.dim()), ("openai/m@127.0.0.1:9", 8));
        assert!(matches!(build(&EmbedderConfig::Hashing { dim: 0 }), Err(EmbedError::Invalid(_))));
        let missing = build(&EmbedderConfig::ModelDir("/nonexistent/mc-embed-model".into()));
        assert!(matches!(missing, Err(EmbedError::Invalid(_))));
        let bundled = build(&EmbedderConfig::Bundled);
        if cfg!(feature = "local-models") {
            let bundled = bundled.expect("bundled");
            assert_eq!(bundled.dim(), 384);
            assert!(bundled.model_id().starts_with("pocket-encoder/"));
        } else {
            assert!(matches!(bundled, Err(EmbedError::Invalid(_))));
        }
    }
}
