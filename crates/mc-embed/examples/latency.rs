//! Measures load time, single-text latency and per-text latency in batches for the local embedders.
//!
//! `cargo run --release -p mc-embed --example latency [MODEL_DIR]`: the bundled model always; the MiniLM directory
//! given as argument or in `MC_TEST_MINILM_DIR`, when there is one. `MC_EMBEDDINGS_SIMD=avx2` (or `portable`)
//! measures a narrower vector unit than the CPU's widest.

use std::time::{Duration, Instant};

use mc_embed::{EmbedError, Embedder, MiniLmDirEmbedder, PocketEmbedder};

const SENTENCES: [&str; 8] = [
    "Fix the flaky login test",
    "Stabilise the intermittently failing login e2e test",
    "Translate the billing docs to French",
    "Add retries with exponential backoff to the webhook sender",
    "Migrate the ledger table to the new schema and backfill the hash chain",
    "Remove the deprecated v1 mission endpoints",
    "Speed up the overlap detector on large klusters",
    "Write the release notes for 0.3",
];

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs.get(xs.len() / 2).copied().unwrap_or_default()
}

async fn measure(name: &str, e: &dyn Embedder, load: Duration) -> Result<(), EmbedError> {
    let texts: Vec<String> = SENTENCES.iter().map(|s| s.to_string()).collect();
    // Warm-up: first call pays for lazy loading (already done) and allocator/thread-pool start-up.
    e.embed(&texts[..1]).await?;
    let mut singles = Vec::new();
    for i in 0..40 {
        let text = [texts[i % texts.len()].clone()];
        let start = Instant::now();
        e.embed(&text).await?;
        singles.push(start.elapsed());
    }
    let (id, dim, unit) = (e.model_id(), e.dim(), mc_embed::simd_unit());
    println!("{name}: model id {id}, dim {dim}, load {:.1} ms, vector unit {unit}", load.as_secs_f64() * 1e3);
    println!("  single text: median {:.2} ms over 40", median(singles).as_secs_f64() * 1e3);
    for size in [8usize, 64] {
        let batch: Vec<String> = (0..size).map(|i| format!("{} (#{i})", texts[i % texts.len()])).collect();
        let mut per_text = Vec::new();
        for _ in 0..5 {
            let start = Instant::now();
            e.embed(&batch).await?;
            per_text.push(start.elapsed() / size as u32);
        }
        println!("  batch of {size}: median {:.2} ms per text over 5 runs", median(per_text).as_secs_f64() * 1e3);
    }
    Ok(())
}

fn main() -> Result<(), EmbedError> {
    // As `mc server` does.
    // SAFETY: no other thread exists yet; the runtime is built on the next line.
    #[allow(unsafe_code)]
    unsafe {
        mc_embed::pin_model_threads()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build();
    runtime.map_err(|e| EmbedError::Invalid(format!("async runtime: {e}")))?.block_on(run())
}

async fn run() -> Result<(), EmbedError> {
    let pocket = PocketEmbedder::new();
    let start = Instant::now();
    pocket.load().await?;
    measure("pocket-encoder", &pocket, start.elapsed()).await?;

    let dir = std::env::args().nth(1).or_else(|| std::env::var("MC_TEST_MINILM_DIR").ok()).filter(|d| !d.is_empty());
    match dir {
        Some(dir) => {
            let minilm = MiniLmDirEmbedder::new(&dir)?;
            let start = Instant::now();
            minilm.load().await?;
            measure("minilm-dir", &minilm, start.elapsed()).await?;
        }
        None => println!("minilm-dir: skipped (pass a model directory or set MC_TEST_MINILM_DIR)"),
    }
    Ok(())
}
