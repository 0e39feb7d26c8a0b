//! The calibrated scorer: two logistic models over `PairFeatures::vector()` — one tells
//! duplicates from everything else, one tells "worth surfacing" (duplicate or related) from
//! unrelated — with thresholds chosen on the calibration split of the labelled pairs. Models are
//! plain JSON, fitted by `overlap-eval --fit` and shipped in `models/`.

use serde::{Deserialize, Serialize};

use crate::features::{PairFeatures, PathRelation};

/// Names of the entries of the feature vector, in order.
pub const FEATURES: &[&str] = &[
    "cosine",
    "cosine^2",
    "lexical",
    "lexical*cosine",
    "swapped_words",
    "substitution",
    "slot_swap",
    "unmatched",
    "unmatched*cosine",
    "paths_intersect",
    "paths_disjoint",
];

/// One logistic model: `p = σ(bias + Σ wᵢ·xᵢ)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    pub bias: f32,
    pub weights: Vec<f32>,
}

impl Logistic {
    pub fn probability(&self, x: &[f32]) -> f32 {
        let z: f32 = self.bias + self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f32>();
        1.0 / (1.0 + (-z).exp())
    }

    /// Fits by batch gradient descent with L2 regularisation; `y` is 0 or 1.
    pub fn fit(xs: &[Vec<f32>], ys: &[f32], l2: f32, epochs: usize) -> Self {
        let dim = xs.first().map(Vec::len).unwrap_or(0);
        let mut m = Self { bias: 0.0, weights: vec![0.0; dim] };
        let n = xs.len().max(1) as f32;
        // balance the classes so a rare label still matters
        let pos = ys.iter().filter(|y| **y > 0.5).count().max(1) as f32;
        let neg = (ys.len() as f32 - pos).max(1.0);
        let (wp, wn) = (n / (2.0 * pos), n / (2.0 * neg));
        let lr = 0.5;
        for _ in 0..epochs {
            let mut gb = 0.0;
            let mut gw = vec![0.0f32; dim];
            for (x, &y) in xs.iter().zip(ys) {
                let err = (m.probability(x) - y) * if y > 0.5 { wp } else { wn };
                gb += err;
                for (g, v) in gw.iter_mut().zip(x) {
                    *g += err * v;
                }
            }
            m.bias -= lr * gb / n;
            for (w, g) in m.weights.iter_mut().zip(&gw) {
                *w -= lr * (g / n + l2 * *w);
            }
        }
        m
    }
}

/// A fitted scorer for one embedding model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorerModel {
    /// Prefix of the embedder model ids it was fitted for.
    pub embedder: String,
    pub duplicate: Logistic,
    /// `p_duplicate` at or above which the relation is `duplicate`.
    pub duplicate_threshold: f32,
    /// `p_duplicate` at or above which creation is refused without `acknowledge_overlap`.
    pub block_threshold: f32,
    pub surface: Logistic,
    /// `p_surface` at or above which an item is surfaced as `related`.
    pub surface_threshold: f32,
}

/// How a new item relates to an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// The same work, said another way.
    Duplicate,
    /// Same area, different work: worth knowing, not a collision.
    Related,
}

/// The scorer's answer for one pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// `None`: not worth surfacing.
    pub relation: Option<Relation>,
    /// Ranking score in 0..1: duplicates rank above related items.
    pub score: f32,
    pub p_duplicate: f32,
    pub p_surface: f32,
    /// Whether this duplicate is strong enough to refuse creation by default.
    pub blocks: bool,
    pub reasons: Vec<String>,
}

impl ScorerModel {
    pub fn judge(&self, f: &PairFeatures) -> Verdict {
        let x = f.vector();
        let mut p_dup = self.duplicate.probability(&x);
        // Nothing differs between the two texts but wording: that is the same work, whatever the
        // labelled pairs (which hold no near-verbatim duplicates) taught the model.
        if f.nothing_differs() && f.cosine >= 0.8 {
            p_dup = p_dup.max(0.99);
        }
        let p_surface = self.surface.probability(&x);
        let relation = if p_dup >= self.duplicate_threshold {
            Some(Relation::Duplicate)
        } else if p_surface >= self.surface_threshold || matches!(f.paths, PathRelation::Intersect { .. }) {
            Some(Relation::Related)
        } else {
            None
        };
        let score = match relation {
            Some(Relation::Duplicate) => 0.5 + 0.5 * p_dup,
            _ => 0.5 * p_surface.max(p_dup),
        };
        Verdict {
            relation,
            score,
            p_duplicate: p_dup,
            p_surface,
            blocks: relation == Some(Relation::Duplicate) && p_dup >= self.block_threshold,
            reasons: reasons(f, relation),
        }
    }
}

fn reasons(f: &PairFeatures, relation: Option<Relation>) -> Vec<String> {
    let mut out = vec![format!("semantic similarity {:.2}", f.cosine)];
    if f.lexical > 0.0 {
        out.push(format!("shared wording {:.0}%", f.lexical * 100.0));
    }
    if let Some((a, b, cat)) = &f.slot_swap {
        out.push(format!("different {cat}: {a} vs {b}"));
    } else if relation != Some(Relation::Duplicate) && f.substitution() {
        out.push(format!("differs in: {} vs {}", f.only_a.join(" "), f.only_b.join(" ")));
    }
    if let PathRelation::Intersect { a, b, example } = &f.paths {
        out.push(format!("paths overlap: {a} and {b} both match {example}"));
    }
    out
}

/// Models shipped with the binary, fitted on the calibration split of `eval/pairs.jsonl`.
const SHIPPED: &[&str] = &[include_str!("../models/pocket-encoder.json"), include_str!("../models/minilm.json")];

/// The shipped model for an embedder id (by prefix), else the bundled embedder's model.
pub fn shipped_for(embedder_id: &str) -> ScorerModel {
    let models: Vec<ScorerModel> = SHIPPED.iter().filter_map(|s| serde_json::from_str(s).ok()).collect();
    models
        .iter()
        .find(|m| embedder_id.starts_with(&m.embedder))
        .or_else(|| models.first())
        .cloned()
        .unwrap_or_else(fallback)
}

/// A conservative hand-set model used only if no shipped model parses.
fn fallback() -> ScorerModel {
    let mut dup = vec![0.0; FEATURES.len()];
    dup[0] = 12.0;
    dup[6] = -8.0;
    let mut surface = vec![0.0; FEATURES.len()];
    surface[0] = 10.0;
    surface[2] = 4.0;
    ScorerModel {
        embedder: String::new(),
        duplicate: Logistic { bias: -10.0, weights: dup },
        duplicate_threshold: 0.5,
        block_threshold: 0.9,
        surface: Logistic { bias: -6.0, weights: surface },
        surface_threshold: 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_fit_separates_a_separable_set() {
        let xs: Vec<Vec<f32>> = (0..40).map(|i| vec![i as f32 / 40.0]).collect();
        let ys: Vec<f32> = (0..40).map(|i| if i >= 20 { 1.0 } else { 0.0 }).collect();
        let m = Logistic::fit(&xs, &ys, 0.0, 3000);
        assert!(m.probability(&[0.9]) > 0.8);
        assert!(m.probability(&[0.1]) < 0.2);
    }

    #[test]
    fn shipped_models_parse_and_have_the_right_shape() {
        for s in SHIPPED {
            let m: ScorerModel = serde_json::from_str(s).expect("shipped model parses");
            assert_eq!(m.duplicate.weights.len(), FEATURES.len());
            assert_eq!(m.surface.weights.len(), FEATURES.len());
            assert!(m.block_threshold >= m.duplicate_threshold);
        }
    }
}
