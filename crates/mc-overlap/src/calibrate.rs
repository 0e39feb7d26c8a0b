//! Calibrating the scorer for an embedder it was not fitted for. The labelled pairs of
//! `eval/pairs.jsonl` ship inside the binary; given the cosines an embedder gives each pair, the
//! scorer is fitted on the calibration split, exactly as the shipped models are, and measured on
//! the held-out split. Another model's cosines have another scale (0.8 may be a rewrite for one
//! model and a stranger for the next), so thresholds fitted for one embedder are wrong for any
//! other; this is how a server configured with an embeddings endpoint gets thresholds of its own.

use serde::{Deserialize, Serialize};

use crate::features::{Feature, ItemText, PairFeatures, PathRelation, path_relation};
use crate::fit::{self, Example, Options};
use crate::glob::Glob;
use crate::model::{Relation, ScorerModel, Verdict};

/// The labelled pairs, as in the repository.
pub const PAIRS_JSONL: &str = include_str!("../eval/pairs.jsonl");

/// One side of a labelled pair.
#[derive(Debug, Clone, Deserialize)]
pub struct Side {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub paths: Vec<String>,
}

impl Side {
    pub fn item(&self) -> ItemText<'_> {
        ItemText { title: &self.title, description: &self.description }
    }
}

/// Two task texts and what they are to each other: `duplicate`, `related` or `unrelated`.
#[derive(Debug, Clone, Deserialize)]
pub struct LabelledPair {
    pub id: String,
    pub label: String,
    /// How the pair was made (`paraphrase`, `service_swap`…): folds are stratified by it.
    #[serde(default)]
    pub kind: String,
    /// `calibration` or `holdout`.
    pub split: String,
    pub a: Side,
    pub b: Side,
}

/// Reads labelled pairs, one JSON object per line.
pub fn parse_pairs(text: &str) -> Result<Vec<LabelledPair>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// The pairs shipped in the binary.
pub fn shipped_pairs() -> Vec<LabelledPair> {
    // a test parses the file, so this cannot fail in a build that passed its tests
    parse_pairs(PAIRS_JSONL).unwrap_or_default()
}

/// The texts of `pairs`, two per pair (`a` then `b`), each its title then its description as a
/// task's text is. Embed them as the server embeds task texts (for an embedder without a shipped
/// scorer: acronyms expanded, see [`ScorerModel::embedding_input`]).
pub fn texts_to_embed(pairs: &[LabelledPair]) -> Vec<String> {
    pairs.iter().flat_map(|p| [&p.a, &p.b]).map(|s| s.item().embedding_input()).collect()
}

/// A labelled pair with the features the scorer reads.
#[derive(Debug)]
pub struct Scored {
    pub pair: LabelledPair,
    pub features: PairFeatures,
}

impl Scored {
    pub fn is(&self, label: &str) -> bool {
        self.pair.label == label
    }
}

/// Features of each pair, given the embedder's cosine of each.
pub fn score(pairs: Vec<LabelledPair>, cosines: &[f32]) -> Result<Vec<Scored>, String> {
    if pairs.len() != cosines.len() {
        return Err(format!("{} pairs but {} cosines", pairs.len(), cosines.len()));
    }
    let globs = |paths: &[String]| -> Result<Vec<Glob>, String> {
        paths.iter().map(|p| Glob::parse(p).map_err(|e| format!("path {p:?}: {e}"))).collect()
    };
    pairs
        .into_iter()
        .zip(cosines)
        .map(|(pair, cos)| {
            let paths = path_relation(&globs(&pair.a.paths)?, &globs(&pair.b.paths)?);
            let features = PairFeatures::new(pair.a.item(), pair.b.item(), *cos, paths);
            Ok(Scored { pair, features })
        })
        .collect()
}

/// Training examples of `set` for a variant reading `features`.
pub fn examples(set: &[&Scored], features: &[Feature]) -> Vec<Example> {
    set.iter()
        .map(|s| Example {
            x: s.features.values(features).unwrap_or_default(),
            duplicate: s.is("duplicate"),
            surface: !s.is("unrelated"),
            forced_duplicate: s.features.same_work(),
            stratum: format!("{}/{}", s.pair.label, s.pair.kind),
        })
        .collect()
}

/// What a scorer did on a set of labelled pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    pub duplicates: usize,
    pub related: usize,
    pub unrelated: usize,
    /// Pairs labelled duplicate, and how many of them are.
    pub said_duplicate: usize,
    pub true_duplicate: usize,
    /// Duplicates surfaced at any relation.
    pub surfaced_duplicates: usize,
    pub surfaced_unrelated: usize,
    /// Unrelated pairs surfaced by each route: the duplicate label, the surface classifier,
    /// intersecting paths.
    pub unrelated_routes: [usize; 3],
    pub related_as_duplicate: usize,
    pub surfaced_related: usize,
    /// Pairs whose creation would be refused, and how many of them are not duplicates.
    pub blocked: usize,
    pub blocked_wrong: usize,
}

impl Figures {
    /// Judges every pair of `set` and counts.
    pub fn of(set: &[&Scored], judge: impl Fn(&Scored) -> Verdict) -> Self {
        let mut f = Figures::default();
        for s in set {
            f.count(s, &judge(s));
        }
        f
    }

    /// Counts one verdict.
    pub fn count(&mut self, s: &Scored, v: &Verdict) {
        let dup = v.relation == Some(Relation::Duplicate);
        let surfaced = usize::from(v.relation.is_some());
        match s.pair.label.as_str() {
            "duplicate" => {
                self.duplicates += 1;
                self.true_duplicate += usize::from(dup);
                self.surfaced_duplicates += surfaced;
            }
            "related" => {
                self.related += 1;
                self.related_as_duplicate += usize::from(dup);
                self.surfaced_related += surfaced;
            }
            _ => {
                self.unrelated += 1;
                self.surfaced_unrelated += surfaced;
                let paths = matches!(s.features.paths, PathRelation::Intersect { .. });
                match v.relation {
                    Some(Relation::Duplicate) => self.unrelated_routes[0] += 1,
                    Some(Relation::Related) if paths => self.unrelated_routes[2] += 1,
                    Some(Relation::Related) => self.unrelated_routes[1] += 1,
                    None => {}
                }
            }
        }
        self.said_duplicate += usize::from(dup);
        self.blocked += usize::from(v.blocks);
        self.blocked_wrong += usize::from(v.blocks && !s.is("duplicate"));
    }

    pub fn add(&mut self, o: &Figures) {
        self.duplicates += o.duplicates;
        self.related += o.related;
        self.unrelated += o.unrelated;
        self.said_duplicate += o.said_duplicate;
        self.true_duplicate += o.true_duplicate;
        self.surfaced_duplicates += o.surfaced_duplicates;
        self.surfaced_unrelated += o.surfaced_unrelated;
        for (mine, theirs) in self.unrelated_routes.iter_mut().zip(o.unrelated_routes) {
            *mine += theirs;
        }
        self.related_as_duplicate += o.related_as_duplicate;
        self.surfaced_related += o.surfaced_related;
        self.blocked += o.blocked;
        self.blocked_wrong += o.blocked_wrong;
    }

    /// Precision of the duplicate label (0 when nothing was labelled duplicate).
    pub fn precision(&self) -> f32 {
        if self.said_duplicate > 0 { self.true_duplicate as f32 / self.said_duplicate as f32 } else { 0.0 }
    }

    /// Recall of the duplicate label.
    pub fn recall(&self) -> f32 {
        self.true_duplicate as f32 / self.duplicates.max(1) as f32
    }

    /// Share of duplicates surfaced at any relation.
    pub fn surfaced(&self) -> f32 {
        self.surfaced_duplicates as f32 / self.duplicates.max(1) as f32
    }

    /// 95% intervals of precision, recall and duplicates surfaced, as a line of text: how far a figure measured on a
    /// few dozen pairs can be from the rate a larger set would show. Only for one pass over distinct pairs (such as
    /// the held-out split); the sums of repeated cross-validation count each pair many times.
    pub fn intervals(&self) -> String {
        let show = |(low, high): (f64, f64)| format!("{low:.3}-{high:.3}");
        format!(
            "95% Wilson intervals: precision {}  recall {}  duplicates surfaced {}  unrelated surfaced {}",
            show(wilson(self.true_duplicate, self.said_duplicate)),
            show(wilson(self.true_duplicate, self.duplicates)),
            show(wilson(self.surfaced_duplicates, self.duplicates)),
            show(wilson(self.surfaced_unrelated, self.unrelated)),
        )
    }

    /// The figures as lines of text, under a heading naming the set.
    pub fn report(&self, what: &str) -> String {
        let [by_label, by_classifier, by_paths] = self.unrelated_routes;
        format!(
            "== {what}: {} pairs ({} duplicate, {} related, {} unrelated)\n\
             duplicate label: precision {:.3}  recall {:.3}  ({} of {} labelled duplicate are duplicates)\n\
             duplicates surfaced at any relation: {:.3} ({}/{})\n\
             unrelated pairs surfaced: {}/{} (labelled duplicate {by_label}, related by the surface classifier {by_classifier}, related by intersecting paths {by_paths})\n\
             related pairs labelled duplicate: {}/{} (surfaced at any relation: {})\n\
             would block creation: {} pairs, {} of them not duplicates",
            self.duplicates + self.related + self.unrelated,
            self.duplicates,
            self.related,
            self.unrelated,
            self.precision(),
            self.recall(),
            self.true_duplicate,
            self.said_duplicate,
            self.surfaced(),
            self.surfaced_duplicates,
            self.duplicates,
            self.surfaced_unrelated,
            self.unrelated,
            self.related_as_duplicate,
            self.related,
            self.surfaced_related,
            self.blocked,
            self.blocked_wrong,
        )
    }
}

/// The similarity a search hit found by meaning alone must reach to be shown
/// ([`ScorerModel::search_floor`]): the cosine 95% of the unrelated calibration pairs stay below.
/// Measured with the bundled model: short queries found their target by meaning alone at 0.39 to
/// 0.64 ("throttle requests" → "Add rate limiting to the public API", "night theme" → "Support
/// dark mode…") and the best hit of an off-topic query ("weather in Paris", "banana bread recipe")
/// reached 0.20 to 0.25. Over the 111 unrelated calibration pairs the cosines have a median of
/// 0.05, a 90th percentile of 0.25 (which let "weather in Paris" through) and a 95th of 0.34; over
/// the first 83 of them the 90th percentile had been 0.30: it moves with the mix of unrelated pairs,
/// the 95th stays clear of off-topic text. `None` without unrelated pairs.
pub fn search_floor(calibration: &[&Scored]) -> Option<f32> {
    let mut cosines: Vec<f32> =
        calibration.iter().filter(|s| s.is("unrelated")).map(|s| s.features.cosine).filter(|c| c.is_finite()).collect();
    if cosines.is_empty() {
        return None;
    }
    cosines.sort_by(f32::total_cmp);
    // nearest rank
    let rank = (cosines.len() * 19).div_ceil(20).clamp(1, cosines.len());
    Some(cosines[rank - 1])
}

/// The Wilson score interval (95%) of a rate of `hits` in `n` trials; `(0, 1)` when there are none.
pub fn wilson(hits: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    const Z: f64 = 1.959_963_984_540_054;
    let (k, n) = (hits.min(n) as f64, n as f64);
    let p = k / n;
    let denominator = 1.0 + Z * Z / n;
    let centre = (p + Z * Z / (2.0 * n)) / denominator;
    let half = Z * (p * (1.0 - p) / n + Z * Z / (4.0 * n * n)).sqrt() / denominator;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// A scorer fitted for one embedder, with its figures.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub model: ScorerModel,
    /// On the pairs it was fitted on (in-sample).
    pub calibration: Figures,
    /// On the held-out pairs.
    pub holdout: Figures,
}

/// Fits the scorer for `embedder_id` on the calibration split of `pairs`, whose cosines by that
/// embedder (of [`texts_to_embed`]) are `cosines`, and measures it on both splits.
pub fn calibrate(embedder_id: &str, pairs: Vec<LabelledPair>, cosines: &[f32]) -> Result<Calibration, String> {
    let scored = score(pairs, cosines)?;
    let split = |name: &str| scored.iter().filter(|s| s.pair.split == name).collect::<Vec<_>>();
    let (cal, held) = (split("calibration"), split("holdout"));
    let labels = |label: &str| cal.iter().filter(|s| s.is(label)).count();
    if labels("duplicate") < 10 || labels("related") < 10 || labels("unrelated") < 10 {
        return Err("too few labelled pairs of some kind to calibrate on (10 of each are needed)".into());
    }
    let features = Feature::BASE.to_vec();
    let options = Options::default();
    let variant = fit::fit_variant(features.clone(), &examples(&cal, &features), &options);
    let model = ScorerModel {
        embedder: embedder_id.to_owned(),
        variants: vec![variant],
        canonical_input: false,
        fingerprints: vec![],
        search_floor: search_floor(&cal),
    };
    let (calibration, holdout) = measured(&model, &cal, &held);
    Ok(Calibration { model, calibration, holdout })
}

/// The figures of `model` on the calibration and the held-out split of `pairs`, whose cosines by
/// its embedder are `cosines`.
pub fn measure(model: &ScorerModel, pairs: Vec<LabelledPair>, cosines: &[f32]) -> Result<(Figures, Figures), String> {
    let scored = score(pairs, cosines)?;
    let split = |name: &str| scored.iter().filter(|s| s.pair.split == name).collect::<Vec<_>>();
    Ok(measured(model, &split("calibration"), &split("holdout")))
}

fn measured(model: &ScorerModel, cal: &[&Scored], held: &[&Scored]) -> (Figures, Figures) {
    (Figures::of(cal, |s| model.judge(&s.features)), Figures::of(held, |s| model.judge(&s.features)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_floor_is_the_95th_percentile_of_unrelated_cosines() {
        let pairs = shipped_pairs();
        let unrelated = pairs.iter().filter(|p| p.label == "unrelated").count();
        // cosines 0, 0.01, 0.02, … over the unrelated pairs in order; 1 for every other pair
        let mut k = 0;
        let cosines: Vec<f32> = pairs
            .iter()
            .map(|p| {
                if p.label == "unrelated" {
                    k += 1;
                    (k - 1) as f32 / 100.0
                } else {
                    1.0
                }
            })
            .collect();
        let scored = score(pairs, &cosines).expect("scored");
        let all: Vec<&Scored> = scored.iter().collect();
        let floor = search_floor(&all).expect("a floor");
        let expected = ((unrelated * 19).div_ceil(20) - 1) as f32 / 100.0;
        assert!((floor - expected).abs() < 1e-6, "{floor} vs {expected}");
        let none: Vec<&Scored> = scored.iter().filter(|s| !s.is("unrelated")).collect();
        assert_eq!(search_floor(&none), None);
    }

    #[test]
    fn wilson_intervals_match_known_values() {
        let close = |(a, b): (f64, f64), (x, y): (f64, f64)| (a - x).abs() < 5e-4 && (b - y).abs() < 5e-4;
        // 55 of 59: the held-out duplicates surfaced by the bundled model
        assert!(close(wilson(55, 59), (0.838, 0.973)), "{:?}", wilson(55, 59));
        // none of 36, and all of 36: the interval still has width
        assert!(close(wilson(0, 36), (0.0, 0.096)), "{:?}", wilson(0, 36));
        assert!(close(wilson(36, 36), (0.904, 1.0)), "{:?}", wilson(36, 36));
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        // more trials at the same rate narrow it
        let (narrow, wide) = (wilson(550, 590), wilson(55, 59));
        assert!(narrow.0 > wide.0 && narrow.1 < wide.1);
    }

    #[test]
    fn the_shipped_pairs_parse_and_are_split() {
        let pairs = parse_pairs(PAIRS_JSONL).expect("eval/pairs.jsonl parses");
        assert_eq!(pairs.len(), shipped_pairs().len());
        assert!(pairs.len() >= 300);
        for p in &pairs {
            assert!(["duplicate", "related", "unrelated"].contains(&p.label.as_str()), "{}: {}", p.id, p.label);
            assert!(["calibration", "holdout"].contains(&p.split.as_str()), "{}: {}", p.id, p.split);
        }
        assert_eq!(texts_to_embed(&pairs[..2]).len(), 4);
        assert!(parse_pairs("{\"id\": 1}").is_err());
    }

    #[test]
    fn calibrating_fits_a_plain_text_scorer_for_that_embedder() {
        let pairs = shipped_pairs();
        let held_out = pairs.iter().filter(|p| p.split == "holdout").count();
        // a stand-in for an embedder's cosines: the pairs' shared wording, squeezed into
        // [0.3, 0.6] the way some embedders' cosines are (thresholds must follow the scale)
        let cosines: Vec<f32> = score(pairs.clone(), &vec![0.0; pairs.len()])
            .expect("scored")
            .iter()
            .map(|s| 0.3 + 0.3 * s.features.lexical)
            .collect();
        let c = calibrate("openai/some-model@127.0.0.1:1", pairs, &cosines).expect("calibrated");
        assert_eq!(c.model.embedder, "openai/some-model@127.0.0.1:1");
        assert!(!c.model.canonical_input);
        assert_eq!(c.holdout.duplicates + c.holdout.related + c.holdout.unrelated, held_out);
        assert!(c.calibration.duplicates > c.holdout.duplicates);
        let v = &c.model.variants[0];
        assert!(v.duplicate_threshold > 0.0 && v.duplicate_threshold < 1.0, "{}", v.duplicate_threshold);
        // the held-out figures are measured, and wording alone does tell some duplicates apart
        assert!(c.holdout.true_duplicate > 0 && c.holdout.precision() > 0.5, "{}", c.holdout.report("holdout"));
        assert_eq!(score(vec![], &[0.5]).err(), Some("0 pairs but 1 cosines".to_owned()));
        assert!(calibrate("x", vec![], &[]).is_err());
    }
}
