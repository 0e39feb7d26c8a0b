//! `overlap-eval`: measures the overlap scorer on the labelled pairs in
//! `crates/mc-overlap/eval/pairs.jsonl` and prints precision and recall on the held-out split,
//! next to the bare-cosine baseline. With `--fit FILE` it first fits the scorer on the
//! calibration split and writes the model (this is how `crates/mc-overlap/models/*.json` are made).
//!
//! Run: `cargo run --release -p mc-bench --bin overlap-eval` (bundled model) or with
//! `--model-dir DIR` (an all-MiniLM-L6-v2 directory).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use mc_embed::{EmbedderConfig, cosine};
use mc_overlap::features::{ItemText, PairFeatures, path_relation};
use mc_overlap::glob::Glob;
use mc_overlap::model::{Logistic, Relation, ScorerModel, shipped_for};
use serde::Deserialize;

#[derive(Parser, Debug)]
struct Args {
    /// The labelled pairs.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../mc-overlap/eval/pairs.jsonl"))]
    pairs: PathBuf,
    /// Use an all-MiniLM-L6-v2 directory instead of the bundled model.
    #[arg(long)]
    model_dir: Option<PathBuf>,
    /// Use the feature-hashing embedder (for a quick check of the plumbing only).
    #[arg(long)]
    hashing: bool,
    /// Fit the scorer on the calibration split and write it here.
    #[arg(long)]
    fit: Option<PathBuf>,
    /// Evaluate this model file instead of the shipped one.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Fail (exit 1) if held-out duplicate precision falls below this.
    #[arg(long)]
    min_precision: Option<f32>,
    /// Fail (exit 1) if the share of held-out duplicates surfaced falls below this.
    #[arg(long)]
    min_surfaced: Option<f32>,
    /// Print every misjudged held-out pair.
    #[arg(long)]
    verbose: bool,
}

#[derive(Debug, Deserialize)]
struct Side {
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    paths: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Pair {
    id: String,
    label: String,
    #[serde(default)]
    kind: String,
    split: String,
    a: Side,
    b: Side,
}

struct Scored {
    pair: Pair,
    features: PairFeatures,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let text = std::fs::read_to_string(&args.pairs).with_context(|| format!("cannot read {}", args.pairs.display()))?;
    let pairs: Vec<Pair> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("line {}", i + 1)))
        .collect::<Result<_>>()?;
    let config = if args.hashing {
        EmbedderConfig::Hashing { dim: 384 }
    } else if let Some(dir) = &args.model_dir {
        EmbedderConfig::ModelDir(dir.clone())
    } else {
        EmbedderConfig::Bundled
    };
    let embedder = mc_embed::build(&config)?;
    println!("embedder: {} ({} pairs)", embedder.model_id(), pairs.len());
    let inputs: Vec<String> = pairs
        .iter()
        .flat_map(|p| [&p.a, &p.b].map(|s| ItemText { title: &s.title, description: &s.description }.embedding_input()))
        .collect();
    let t = std::time::Instant::now();
    let vectors = embedder.embed(&inputs).await?;
    println!("embedded {} texts in {:.1} s", inputs.len(), t.elapsed().as_secs_f64());
    let mut scored = Vec::new();
    for (i, pair) in pairs.into_iter().enumerate() {
        let cos = cosine(&vectors[2 * i], &vectors[2 * i + 1]);
        let ga = globs(&pair.a.paths)?;
        let gb = globs(&pair.b.paths)?;
        let features = PairFeatures::new(
            ItemText { title: &pair.a.title, description: &pair.a.description },
            ItemText { title: &pair.b.title, description: &pair.b.description },
            cos,
            path_relation(&ga, &gb),
        );
        scored.push(Scored { pair, features });
    }
    let model = match &args.fit {
        Some(out) => {
            let m = fit(&scored, embedder.model_id());
            std::fs::write(out, serde_json::to_string_pretty(&m)? + "\n")?;
            println!("fitted on the calibration split; model written to {}", out.display());
            m
        }
        None => match &args.model {
            Some(path) => serde_json::from_str(&std::fs::read_to_string(path)?)?,
            None => shipped_for(embedder.model_id()),
        },
    };
    report(&scored, &model, "calibration", false);
    let held = report(&scored, &model, "holdout", args.verbose);
    if args.min_precision.is_some_and(|m| held.precision < m) || args.min_surfaced.is_some_and(|m| held.surfaced < m) {
        anyhow::bail!(
            "held-out quality regressed: precision {:.3}, duplicates surfaced {:.3}",
            held.precision,
            held.surfaced
        );
    }
    Ok(())
}

/// Held-out figures checked against floors.
struct Figures {
    precision: f32,
    surfaced: f32,
}

fn globs(paths: &[String]) -> Result<Vec<Glob>> {
    paths.iter().map(|p| Glob::parse(p).map_err(|e| anyhow::anyhow!("{e}"))).collect()
}

fn is(label: &str, s: &Scored) -> bool {
    s.pair.label == label
}

/// Fits both logistic models on the calibration split and picks thresholds there.
fn fit(scored: &[Scored], embedder_id: &str) -> ScorerModel {
    let cal: Vec<&Scored> = scored.iter().filter(|s| s.pair.split == "calibration").collect();
    let xs: Vec<Vec<f32>> = cal.iter().map(|s| s.features.vector()).collect();
    let y_dup: Vec<f32> = cal.iter().map(|s| f32::from(u8::from(is("duplicate", s)))).collect();
    let y_sur: Vec<f32> = cal.iter().map(|s| f32::from(u8::from(!is("unrelated", s)))).collect();
    let duplicate = Logistic::fit(&xs, &y_dup, 1e-4, 40_000);
    let surface = Logistic::fit(&xs, &y_sur, 1e-4, 40_000);
    let p_dup: Vec<f32> = xs.iter().map(|x| duplicate.probability(x)).collect();
    let p_sur: Vec<f32> = xs.iter().map(|x| surface.probability(x)).collect();
    // duplicate threshold: the lowest that keeps calibration precision ≥ 0.93 (a margin over the
    // 0.9 goal), i.e. the most recall at that precision
    let mut cands: Vec<f32> = p_dup.clone();
    cands.sort_by(f32::total_cmp);
    let mut duplicate_threshold = 0.99;
    for &t in &cands {
        let tp = cal.iter().zip(&p_dup).filter(|(s, p)| **p >= t && is("duplicate", s)).count();
        let fp = cal.iter().zip(&p_dup).filter(|(s, p)| **p >= t && !is("duplicate", s)).count();
        if tp + fp > 0 && tp as f32 / (tp + fp) as f32 >= 0.93 {
            duplicate_threshold = t;
            break;
        }
    }
    // block: precision ≥ 0.99 on calibration (a refusal must almost never be wrong)
    let mut block_threshold = 0.999;
    for &t in &cands {
        if t < duplicate_threshold {
            continue;
        }
        let tp = cal.iter().zip(&p_dup).filter(|(s, p)| **p >= t && is("duplicate", s)).count();
        let fp = cal.iter().zip(&p_dup).filter(|(s, p)| **p >= t && !is("duplicate", s)).count();
        if tp + fp > 0 && fp == 0 {
            block_threshold = t;
            break;
        }
    }
    // surface: just above the most confident unrelated pair (none surfaced), as a margin
    let max_unrelated =
        cal.iter().zip(&p_sur).filter(|(s, _)| is("unrelated", s)).map(|(_, p)| *p).fold(0.0f32, f32::max);
    let surface_threshold = (max_unrelated + 0.02).min(0.99);
    ScorerModel {
        embedder: embedder_id.split('/').next().unwrap_or(embedder_id).to_owned(),
        duplicate,
        duplicate_threshold,
        block_threshold,
        surface,
        surface_threshold,
    }
}

fn report(scored: &[Scored], model: &ScorerModel, split: &str, verbose: bool) -> Figures {
    let set: Vec<&Scored> = scored.iter().filter(|s| s.pair.split == split).collect();
    let judged: Vec<(&Scored, mc_overlap::Verdict)> = set.iter().map(|s| (*s, model.judge(&s.features))).collect();
    let dups = set.iter().filter(|s| is("duplicate", s)).count();
    let unrel = set.iter().filter(|s| is("unrelated", s)).count();
    let rel = set.len() - dups - unrel;
    let said_dup = judged.iter().filter(|(_, v)| v.relation == Some(Relation::Duplicate)).count();
    let tp = judged.iter().filter(|(s, v)| v.relation == Some(Relation::Duplicate) && is("duplicate", s)).count();
    let surfaced_dups = judged.iter().filter(|(s, v)| v.relation.is_some() && is("duplicate", s)).count();
    let surfaced_unrel = judged.iter().filter(|(s, v)| v.relation.is_some() && is("unrelated", s)).count();
    let related_as_dup =
        judged.iter().filter(|(s, v)| v.relation == Some(Relation::Duplicate) && is("related", s)).count();
    let blocked_wrong = judged.iter().filter(|(s, v)| v.blocks && !is("duplicate", s)).count();
    let blocked = judged.iter().filter(|(_, v)| v.blocks).count();
    let precision = if said_dup > 0 { tp as f32 / said_dup as f32 } else { 0.0 };
    let recall = if dups > 0 { tp as f32 / dups as f32 } else { 0.0 };
    println!("\n== {split}: {} pairs ({dups} duplicate, {rel} related, {unrel} unrelated)", set.len());
    println!(
        "duplicate label: precision {precision:.3}  recall {recall:.3}  ({tp} of {said_dup} labelled duplicate are duplicates)"
    );
    println!(
        "duplicates surfaced at any relation: {:.3} ({surfaced_dups}/{dups})",
        surfaced_dups as f32 / dups.max(1) as f32
    );
    println!("unrelated pairs surfaced: {surfaced_unrel}/{unrel}");
    println!("related pairs labelled duplicate: {related_as_dup}/{rel}");
    println!("would block creation: {blocked} pairs, {blocked_wrong} of them not duplicates");
    // the baseline the scorer must beat: a bare cosine threshold at 85% duplicate recall
    let mut dup_cos: Vec<f32> = set.iter().filter(|s| is("duplicate", s)).map(|s| s.features.cosine).collect();
    dup_cos.sort_by(f32::total_cmp);
    if let Some(&t) = dup_cos.get(((dup_cos.len() as f32) * 0.15).floor() as usize) {
        let flagged_rel = set.iter().filter(|s| is("related", s) && s.features.cosine >= t).count();
        let flagged = set.iter().filter(|s| s.features.cosine >= t).count();
        let hits = set.iter().filter(|s| is("duplicate", s) && s.features.cosine >= t).count();
        println!(
            "baseline (bare cosine ≥ {t:.3}, 85% recall): precision {:.3}, flags {:.0}% of related pairs",
            hits as f32 / flagged.max(1) as f32,
            100.0 * flagged_rel as f32 / rel.max(1) as f32
        );
    }
    if verbose {
        for (s, v) in &judged {
            let want = s.pair.label.as_str();
            let got = match v.relation {
                Some(Relation::Duplicate) => "duplicate",
                Some(Relation::Related) => "related",
                None => "unrelated",
            };
            if want != got && !(want == "related" && got == "unrelated") {
                println!(
                    "  {} [{}/{}] got {got} (p_dup {:.2}, p_surf {:.2}, cos {:.2}, lex {:.2}): {} || {}",
                    s.pair.id,
                    want,
                    s.pair.kind,
                    v.p_duplicate,
                    v.p_surface,
                    s.features.cosine,
                    s.features.lexical,
                    s.pair.a.title,
                    s.pair.b.title
                );
            }
        }
    }
    Figures { precision, surfaced: surfaced_dups as f32 / dups.max(1) as f32 }
}
