//! A scorer for an embedder that no shipped scorer was fitted for (an OpenAI-compatible endpoint,
//! a model directory of another model): the labelled pairs shipped in the binary are embedded
//! with it and the scorer is fitted on them ([`mc_overlap::calibrate`]). The server does this in
//! the background at start and keeps the result in its state directory, so the next start reads
//! it; `mc calibrate` does the same in the foreground and prints the figures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mc_embed::{Embedder, cosine};
use mc_overlap::ScorerModel;
use mc_overlap::calibrate::{self, Calibration, Figures};
use serde::{Deserialize, Serialize};

/// Texts per request to the embedder while calibrating.
const BATCH: usize = 64;

/// A calibrated scorer as kept on disk: what it was fitted with, so a new set of pairs or a new
/// version of the scorer fits it again.
#[derive(Debug, Serialize, Deserialize)]
struct Kept {
    pairs: String,
    scorer_version: String,
    model: ScorerModel,
    holdout: Figures,
}

/// FNV-1a of `text`, in hex: stable across builds and platforms.
fn fnv(text: &str) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A hash of the shipped pairs: a kept scorer fitted on other pairs is fitted again.
fn pairs_revision() -> String {
    fnv(calibrate::PAIRS_JSONL)
}

/// Where the scorer calibrated for `embedder_id` is kept under `dir`: one file per embedder id,
/// named by a hash of it (ids hold `/`, `:` and `@`).
pub fn kept_path(dir: &Path, embedder_id: &str) -> PathBuf {
    dir.join("scorers").join(format!("{}.json", fnv(embedder_id)))
}

/// The scorer kept for `embedder_id`, if one was calibrated for exactly this embedder, on these
/// pairs, by this version.
pub fn load_kept(dir: &Path, embedder_id: &str) -> Option<ScorerModel> {
    let text = std::fs::read_to_string(kept_path(dir, embedder_id)).ok()?;
    let kept: Kept = serde_json::from_str(&text).ok()?;
    (kept.model.embedder == embedder_id
        && kept.pairs == pairs_revision()
        && kept.scorer_version == env!("CARGO_PKG_VERSION")
        && !kept.model.canonical_input)
        .then_some(kept.model)
}

/// Keeps a calibrated scorer (written to a temporary file, then renamed into place).
pub fn keep(dir: &Path, c: &Calibration) -> std::io::Result<PathBuf> {
    let path = kept_path(dir, &c.model.embedder);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let kept = Kept {
        pairs: pairs_revision(),
        scorer_version: env!("CARGO_PKG_VERSION").to_owned(),
        model: c.model.clone(),
        holdout: c.holdout.clone(),
    };
    let text = serde_json::to_string_pretty(&kept).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n")?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The cosine of each shipped pair by `embedder` (given the texts the way the server gives task
/// texts: pass the [prepared](crate::overlap::prepared) embedder).
pub async fn pair_cosines(
    embedder: &dyn Embedder,
    pairs: &[calibrate::LabelledPair],
) -> Result<Vec<f32>, mc_embed::EmbedError> {
    let texts = calibrate::texts_to_embed(pairs);
    let mut vectors = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(BATCH) {
        vectors.extend(embedder.embed(chunk).await?);
    }
    if vectors.len() != texts.len() {
        return Err(mc_embed::EmbedError::Invalid(format!(
            "the embedder returned {} vectors for {} texts",
            vectors.len(),
            texts.len()
        )));
    }
    Ok(vectors.chunks(2).map(|v| cosine(&v[0], &v[1])).collect())
}

/// Embeds the shipped pairs with `embedder` (prepared) and fits a scorer for it.
pub async fn run(embedder: &dyn Embedder) -> anyhow::Result<Calibration> {
    let pairs = calibrate::shipped_pairs();
    let cosines = pair_cosines(embedder, &pairs).await?;
    let id = embedder.model_id().to_owned();
    // fitting runs cross-validation: a second or so of CPU, off the async threads
    tokio::task::spawn_blocking(move || calibrate::calibrate(&id, pairs, &cosines))
        .await?
        .map_err(|e| anyhow::anyhow!("cannot calibrate: {e}"))
}

/// The figures of `model` (a shipped scorer, say) with `embedder` (prepared) on the calibration and
/// the held-out pairs.
pub async fn measure(embedder: &dyn Embedder, model: &ScorerModel) -> anyhow::Result<(Figures, Figures)> {
    let pairs = calibrate::shipped_pairs();
    let cosines = pair_cosines(embedder, &pairs).await?;
    calibrate::measure(model, pairs, &cosines).map_err(|e| anyhow::anyhow!("cannot measure the scorer: {e}"))
}

/// Calibrates in the background until it succeeds (an endpoint may be down at start), then
/// installs the scorer in `semantic` and keeps it in `dir`.
pub async fn in_background(
    semantic: crate::overlap::Semantic,
    dir: Option<PathBuf>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut wait = Duration::from_secs(5);
    loop {
        let id = semantic.embedder.model_id().to_owned();
        tracing::info!(model = %id, "calibrating the overlap scorer for this embedder");
        let attempt = tokio::select! {
            r = run(semantic.embedder.as_ref()) => r,
            _ = shutdown.changed() => return,
        };
        match attempt {
            Ok(c) => {
                let h = &c.holdout;
                tracing::info!(
                    model = %id,
                    precision = h.precision(),
                    recall = h.recall(),
                    surfaced = h.surfaced(),
                    unrelated_surfaced = h.surfaced_unrelated,
                    "overlap scorer calibrated (figures on the held-out pairs)"
                );
                // in use first: whoever sees the kept file finds the scorer installed
                semantic.install(Arc::new(c.model.clone()));
                if let Some(dir) = &dir {
                    match keep(dir, &c) {
                        Ok(path) => tracing::info!(path = %path.display(), "calibrated scorer kept for the next start"),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot keep the calibrated scorer; the next start calibrates again")
                        }
                    }
                }
                return;
            }
            Err(e) => {
                tracing::warn!(model = %id, error = %e, retry_in_s = wait.as_secs(), "cannot calibrate the overlap scorer yet");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
                wait = (wait * 2).min(Duration::from_secs(300));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_scorers_are_found_by_exact_embedder_id_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pairs = calibrate::shipped_pairs();
        let cosines: Vec<f32> = (0..pairs.len()).map(|i| if i % 3 == 0 { 0.9 } else { 0.2 }).collect();
        let c = calibrate::calibrate("openai/m@127.0.0.1:9", pairs, &cosines).expect("calibrated");
        let path = keep(dir.path(), &c).expect("kept");
        assert!(path.starts_with(dir.path().join("scorers")));
        assert_eq!(load_kept(dir.path(), "openai/m@127.0.0.1:9"), Some(c.model.clone()));
        assert_eq!(load_kept(dir.path(), "openai/m@127.0.0.1:10"), None);
        // a scorer fitted on other pairs is not used
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replace(&pairs_revision(), "0000000000000000")).expect("write");
        assert_eq!(load_kept(dir.path(), "openai/m@127.0.0.1:9"), None);
        std::fs::write(&path, "{not json").expect("write");
        assert_eq!(load_kept(dir.path(), "openai/m@127.0.0.1:9"), None);
    }
}
