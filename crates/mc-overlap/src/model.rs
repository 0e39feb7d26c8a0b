//! The calibrated scorer: two classifiers over [`PairFeatures`] inputs — one tells duplicates
//! from everything else, one tells duplicates from unrelated pairs and decides what is worth
//! surfacing (related pairs, which share most of their words, pass it easily) — with
//! thresholds chosen on out-of-fold predictions over the calibration split of the labelled pairs
//! (see [`crate::fit`]). A model holds one variant per set of available signals (word vectors, a
//! second cosine), richest first; a pair is judged by the first variant whose inputs it has.
//! Models are plain JSON, fitted by `overlap-eval --fit` and shipped in `models/`.

use serde::{Deserialize, Serialize};

use crate::features::{Feature, PairFeatures, PathRelation};

/// One logistic model: `p = σ(bias + Σ wᵢ·xᵢ)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    pub bias: f32,
    pub weights: Vec<f32>,
}

impl Logistic {
    pub fn logit(&self, x: &[f32]) -> f32 {
        self.bias + self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f32>()
    }

    pub fn probability(&self, x: &[f32]) -> f32 {
        sigmoid(self.logit(x))
    }
}

/// A node of a regression tree: a leaf value, or `[feature, threshold, left, right]` (go left
/// when `x[feature] < threshold`; children are indices into the tree's nodes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Node {
    Leaf(f32),
    Split(usize, f32, usize, usize),
}

/// Gradient-boosted shallow trees on the log-odds scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trees {
    pub base: f32,
    /// Each tree's nodes, root first.
    pub trees: Vec<Vec<Node>>,
}

impl Trees {
    pub fn logit(&self, x: &[f32]) -> f32 {
        let mut z = self.base;
        for tree in &self.trees {
            let mut i = 0;
            loop {
                match tree.get(i) {
                    Some(Node::Leaf(v)) => {
                        z += v;
                        break;
                    }
                    Some(Node::Split(f, t, l, r)) => i = if x.get(*f).copied().unwrap_or(0.0) < *t { *l } else { *r },
                    None => break,
                }
            }
        }
        z
    }
}

/// A binary classifier: a logistic model, boosted trees, or the mean of both log-odds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classifier {
    Logistic(Logistic),
    Trees(Trees),
    Blend(Logistic, Trees),
}

impl Classifier {
    pub fn probability(&self, x: &[f32]) -> f32 {
        sigmoid(match self {
            Self::Logistic(m) => m.logit(x),
            Self::Trees(t) => t.logit(x),
            Self::Blend(m, t) => 0.5 * (m.logit(x) + t.logit(x)),
        })
    }
}

pub(crate) fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

/// The classifiers and thresholds for one set of inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// The inputs, in the order the classifiers read them.
    pub features: Vec<Feature>,
    pub duplicate: Classifier,
    /// `p_duplicate` at or above which the relation is `duplicate`.
    pub duplicate_threshold: f32,
    /// `p_duplicate` at or above which creation is refused without `acknowledge_overlap`; texts
    /// that differ in nothing but wording are refused whatever it is, unless it is infinite
    /// (a scorer that refuses nothing).
    pub block_threshold: f32,
    pub surface: Classifier,
    /// `p_surface` at or above which an item is surfaced as `related`.
    pub surface_threshold: f32,
    /// `p_duplicate` at or above which a pair below `surface_threshold` is still a duplicate
    /// (none: `duplicate_threshold`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lone_duplicate_threshold: Option<f32>,
}

/// A fitted scorer for one embedding model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScorerModel {
    /// Prefix of the embedder model ids it was fitted for.
    pub embedder: String,
    /// Richest first; the last needs only one cosine.
    pub variants: Vec<Variant>,
    /// Texts were made canonical ([`crate::thesaurus::canonical`]) before embedding when this
    /// model was fitted, so the server embeds them that way too.
    #[serde(default)]
    pub canonical_input: bool,
    /// The weights it was fitted with, by the fingerprint that ends the embedder id
    /// (`minilm-dir/…@0efa918f`); empty when the prefix alone names the model (the bundled one,
    /// whose id carries its version). Another model in a directory of the same format is not the
    /// model these thresholds were fitted for: the server calibrates a scorer for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fingerprints: Vec<String>,
    /// The least similarity a search hit found by meaning alone (no word of the query in it)
    /// needs to be shown: the cosine that 19 in 20 unrelated calibration pairs stay below
    /// ([`crate::calibrate::search_floor`]). Below it a semantic match says nothing, and search
    /// leaves it out instead of filling the list with noise. `None`: every hit is shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_floor: Option<f32>,
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

impl Variant {
    /// The verdict of this variant, `None` if the pair lacks one of its inputs.
    pub fn judge(&self, f: &PairFeatures) -> Option<Verdict> {
        let x = f.values(&self.features)?;
        let mut p_dup = self.duplicate.probability(&x);
        // Nothing differs between the two texts but wording: that is the same work, and it
        // blocks whatever the block threshold (an agent filing the same task again).
        let same_work = f.same_work();
        if same_work {
            p_dup = p_dup.max(0.99);
        }
        let p_surface = self.surface.probability(&x);
        let surfaced = p_surface >= self.surface_threshold;
        let lone = self.lone_duplicate_threshold.unwrap_or(self.duplicate_threshold);
        let relation = if p_dup >= self.duplicate_threshold && (surfaced || p_dup >= lone) {
            Some(Relation::Duplicate)
        } else if surfaced || matches!(f.paths, PathRelation::Intersect { .. }) {
            Some(Relation::Related)
        } else {
            None
        };
        let score = match relation {
            Some(Relation::Duplicate) => 0.5 + 0.5 * p_dup,
            _ => 0.5 * p_surface.max(p_dup),
        };
        Some(Verdict {
            relation,
            score,
            p_duplicate: p_dup,
            p_surface,
            // an infinite threshold (a scorer that must not refuse anything) blocks nothing
            blocks: relation == Some(Relation::Duplicate)
                && self.block_threshold.is_finite()
                && (same_work || p_dup >= self.block_threshold),
            reasons: reasons(f, relation),
        })
    }

    /// Whether a pair has every input this variant reads.
    pub fn applies_to(&self, f: &PairFeatures) -> bool {
        self.features.iter().all(|x| f.value(*x).is_some())
    }
}

impl ScorerModel {
    /// What the embedder is given for `text` (a title, then its description): known acronyms
    /// followed by their expansion, and synonyms replaced by the word of their group when the
    /// model was fitted on canonical texts.
    pub fn embedding_input(&self, text: &str) -> String {
        crate::text::embedding_input(text, self.canonical_input)
    }

    /// The id stored with vectors that `embedder_id` made of [`Self::embedding_input`] texts: they
    /// carry the revision of the acronym table, and canonical texts that of the thesaurus too (a
    /// new revision re-embeds them).
    pub fn vector_model_id(&self, embedder_id: &str) -> String {
        let acronyms = crate::text::ACRONYM_REVISION;
        if self.canonical_input {
            format!("{embedder_id}+{}+{acronyms}", crate::thesaurus::REVISION)
        } else {
            format!("{embedder_id}+{acronyms}")
        }
    }

    /// Judges a pair with the richest variant whose inputs it has.
    pub fn judge(&self, f: &PairFeatures) -> Verdict {
        self.variants.iter().find_map(|v| v.judge(f)).unwrap_or_else(|| {
            // no variant applies (a model without a one-cosine variant): judge on cosine alone
            let p = f.cosine.clamp(0.0, 1.0);
            Verdict { relation: None, score: 0.5 * p, p_duplicate: 0.0, p_surface: p, blocks: false, reasons: vec![] }
        })
    }

    /// Judges two docs (or artifacts). The scorer was calibrated on short task texts, and a
    /// doc's title is one: it names what the doc is about, so the titles (their
    /// [subjects](crate::doc_subject)) are judged as tasks are. The whole texts (title and the
    /// start of the body) say whether the contents agree.
    /// Docs written from one template share most of their words while their titles name other
    /// subjects ("Load test report: checkout API" and "… search API"), and two meetings'
    /// notes can share a title: a doc is a duplicate only when both judgements say so, and
    /// blocks only when both would. Anything either judgement surfaces is related. Contents that
    /// are [nearly the same](PairFeatures::near_copy) agree whatever the scorer makes of the few
    /// words that differ (a revised number reads as another object in a short sentence).
    pub fn judge_doc(&self, titles: &PairFeatures, whole: &PairFeatures) -> Verdict {
        let (t, mut w) = (self.judge(titles), self.judge(whole));
        if whole.near_copy() {
            w.relation = Some(Relation::Duplicate);
            w.blocks = true;
        }
        let relation = match (t.relation, w.relation) {
            (Some(Relation::Duplicate), Some(Relation::Duplicate)) => Some(Relation::Duplicate),
            (None, None) => None,
            _ => Some(Relation::Related),
        };
        let (p_duplicate, p_surface) = (t.p_duplicate.min(w.p_duplicate), t.p_surface.max(w.p_surface));
        let score = match relation {
            Some(Relation::Duplicate) => t.score.min(w.score),
            _ => 0.5 * p_surface.max(t.p_duplicate).max(w.p_duplicate).min(0.99),
        };
        let mut reasons: Vec<String> = t.reasons.iter().map(|r| format!("titles: {r}")).collect();
        reasons.push(format!(
            "contents: semantic similarity {:.2}, shared wording {:.0}%",
            whole.cosine,
            whole.lexical * 100.0
        ));
        match (t.relation, w.relation) {
            (Some(Relation::Related), Some(Relation::Duplicate)) => {
                reasons.push("contents alike, titles about different things (one template?)".into());
            }
            (Some(Relation::Duplicate), Some(Relation::Related) | None) => {
                reasons.push("titles alike, contents differ".into());
            }
            _ => {}
        }
        Verdict { relation, score, p_duplicate, p_surface, blocks: t.blocks && w.blocks, reasons }
    }

    /// Whether some variant reads word vectors (a server then computes them).
    pub fn wants_words(&self) -> bool {
        self.variants.iter().any(|v| v.features.iter().any(|f| Feature::WORDS.contains(f)))
    }

    /// Whether some variant reads the bundled embedder's cosine.
    pub fn wants_bundled_cosine(&self) -> bool {
        self.variants.iter().any(|v| v.features.iter().any(|f| Feature::BUNDLED.contains(f)))
    }
}

fn reasons(f: &PairFeatures, relation: Option<Relation>) -> Vec<String> {
    let mut out = vec![format!("semantic similarity {:.2}", f.cosine)];
    if f.lexical > 0.0 {
        out.push(format!("shared wording {:.0}%", f.lexical * 100.0));
    }
    if let Some((a, b, cat)) = &f.slot_swap {
        out.push(format!("different {cat}: {a} vs {b}"));
    } else if relation != Some(Relation::Duplicate) {
        if let Some((a, b)) = &f.one_swap {
            out.push(format!("same sentence, another object: {a} vs {b}"));
        } else if f.substitution() {
            out.push(format!("differs in: {} vs {}", f.only_a.join(" "), f.only_b.join(" ")));
        }
    }
    if let PathRelation::Intersect { a, b, example } = &f.paths {
        out.push(format!("paths overlap: {a} and {b} both match {example}"));
    }
    out
}

/// Models shipped with the binary, fitted on the calibration split of `eval/pairs.jsonl`.
const SHIPPED: &[&str] = &[include_str!("../models/pocket-encoder.json"), include_str!("../models/minilm.json")];

/// The shipped models, parsed once (a test checks that every one parses).
fn shipped() -> &'static [ScorerModel] {
    static MODELS: std::sync::OnceLock<Vec<ScorerModel>> = std::sync::OnceLock::new();
    MODELS.get_or_init(|| SHIPPED.iter().filter_map(|s| serde_json::from_str(s).ok()).collect())
}

/// The shipped model for an embedder id (by prefix), else the bundled embedder's model.
pub fn shipped_for(embedder_id: &str) -> ScorerModel {
    fitted_for(embedder_id).or_else(|| shipped().first().cloned()).unwrap_or_else(fallback)
}

/// The shipped model fitted for this embedder (by id prefix), if there is one: any other
/// embedder needs a scorer [calibrated](crate::calibrate) for it.
pub fn fitted_for(embedder_id: &str) -> Option<ScorerModel> {
    // the fingerprint ends the embedder's own id; a prepared id goes on with `+revision`s
    let fingerprint = embedder_id.rsplit_once('@').and_then(|(_, f)| f.split('+').next());
    shipped()
        .iter()
        .find(|m| {
            !m.embedder.is_empty()
                && embedder_id.starts_with(&m.embedder)
                && (m.fingerprints.is_empty() || m.fingerprints.iter().any(|f| Some(f.as_str()) == fingerprint))
        })
        .cloned()
}

/// The shipped model fitted for the embedder named `embedder` (its id prefix), whatever weights
/// another embedder of that kind has.
pub fn shipped_named(embedder: &str) -> Option<ScorerModel> {
    shipped().iter().find(|m| m.embedder == embedder).cloned()
}

/// A conservative hand-set model used only if no shipped model parses.
fn fallback() -> ScorerModel {
    let features = vec![Feature::Cosine, Feature::SlotSwap, Feature::Lexical];
    ScorerModel {
        embedder: String::new(),
        variants: vec![Variant {
            features,
            duplicate: Classifier::Logistic(Logistic { bias: -10.0, weights: vec![12.0, -8.0, 0.0] }),
            duplicate_threshold: 0.5,
            block_threshold: 0.9,
            surface: Classifier::Logistic(Logistic { bias: -6.0, weights: vec![10.0, 0.0, 4.0] }),
            surface_threshold: 0.5,
            lone_duplicate_threshold: None,
        }],
        canonical_input: false,
        fingerprints: vec![],
        search_floor: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_related_pair_says_what_was_swapped() {
        let model = shipped_for("pocket-encoder/");
        let a =
            crate::ItemText { title: "Grant the finance team read access to the billing warehouse", description: "" };
        let b =
            crate::ItemText { title: "Grant the support team read access to the billing warehouse", description: "" };
        let v = model.judge(&PairFeatures::new(a, b, 0.8, PathRelation::Unknown));
        assert_eq!(v.relation, Some(Relation::Related), "{v:?}");
        assert!(v.reasons.iter().any(|r| r == "same sentence, another object: finance vs support"), "{v:?}");
    }

    #[test]
    fn a_doc_is_a_duplicate_only_when_its_title_and_its_contents_agree() {
        let model = shipped_for("pocket-encoder/");
        let judge = |(ta, ba): (&str, &str), (tb, bb): (&str, &str), title_cos: f32, cos: f32| {
            let t = |title| crate::ItemText { title, description: "" };
            let titles = PairFeatures::new(t(ta), t(tb), title_cos, PathRelation::Unknown);
            let (a, b) =
                (crate::ItemText { title: ta, description: ba }, crate::ItemText { title: tb, description: bb });
            model.judge_doc(&titles, &PairFeatures::new(a, b, cos, PathRelation::Unknown))
        };
        let body = "We ran a load test against the API with k6 for 30 minutes at 500 requests per second. \
                    p50 latency was 42 ms and p99 was 310 ms; the error rate stayed below 0.1%. The tail comes \
                    from the payment provider call, which has no timeout. Repeat after the fix lands.";
        // the same doc filed again with one figure changed: a duplicate that blocks
        let again = body.replace("310", "320");
        let v = judge(("Load test report", body), ("Load test report", &again), 1.0, 0.99);
        assert_eq!((v.relation, v.blocks), (Some(Relation::Duplicate), true), "{v:?}");
        // one title, other contents: related, and it says why
        let notes = "Attendees: mobile and design. The onboarding screens are ready; release 4.2 slips a week.";
        let v = judge(("Weekly sync notes", body), ("Weekly sync notes", notes), 1.0, 0.2);
        assert_eq!((v.relation, v.blocks), (Some(Relation::Related), false), "{v:?}");
        assert!(v.reasons.iter().any(|r| r == "titles alike, contents differ"), "{v:?}");
        // one template, another subject named in the title: related however alike the contents
        let other = body.replace("310", "95");
        let v = judge(("Load test report: checkout API", body), ("Load test report: search API", &other), 0.8, 0.97);
        assert_eq!(v.relation, Some(Relation::Related), "{v:?}");
        assert!(v.reasons.iter().any(|r| r.starts_with("titles: same sentence, another object")), "{v:?}");
    }

    #[test]
    fn shipped_models_parse_and_have_the_right_shape() {
        for s in SHIPPED {
            let m: ScorerModel = serde_json::from_str(s).expect("shipped model parses");
            let last = m.variants.last().expect("a variant");
            assert!(last.features.iter().all(|f| Feature::BASE.contains(f)), "the last variant needs one cosine");
            for v in &m.variants {
                assert!(v.block_threshold >= v.duplicate_threshold);
                if let Classifier::Logistic(l) | Classifier::Blend(l, _) = &v.duplicate {
                    assert_eq!(l.weights.len(), v.features.len());
                }
            }
        }
    }

    #[test]
    fn a_shipped_scorer_serves_only_the_weights_it_was_fitted_with() {
        assert!(
            fitted_for("pocket-encoder/paraphrase-MiniLM-L3-v2-q4a8-centred1@0.1.2+thesaurus4+acronyms2").is_some()
        );
        let minilm = shipped_named("minilm-dir").expect("the all-MiniLM-L6-v2 scorer is shipped");
        let fingerprint = minilm.fingerprints.first().expect("it names its weights");
        assert_eq!(fitted_for(&format!("minilm-dir/some/model@{fingerprint}")), Some(minilm.clone()));
        // and under the id its prepared vectors are stored with
        let prepared = minilm.vector_model_id(&format!("minilm-dir/some/model@{fingerprint}"));
        assert!(prepared.ends_with(crate::text::ACRONYM_REVISION), "{prepared}");
        assert_eq!(fitted_for(&prepared), Some(minilm.clone()));
        // another model of the same format in a directory: no shipped scorer
        assert_eq!(fitted_for("minilm-dir/bge-small-en/model@12345678"), None);
        assert_eq!(fitted_for("openai/text-embedding-3-small@api.openai.com:443"), None);
        assert_eq!(fitted_for(""), None);
    }

    #[test]
    fn trees_walk_to_a_leaf() {
        let t = Trees {
            base: 0.5,
            trees: vec![vec![Node::Split(0, 0.5, 1, 2), Node::Leaf(-1.0), Node::Leaf(1.0)], vec![Node::Leaf(0.25)]],
        };
        assert!((t.logit(&[0.2]) - (0.5 - 1.0 + 0.25)).abs() < 1e-6);
        assert!((t.logit(&[0.7]) - (0.5 + 1.0 + 0.25)).abs() < 1e-6);
    }

    fn variant(features: Vec<Feature>, bias: f32) -> Variant {
        let n = features.len();
        let model = Classifier::Logistic(Logistic { bias, weights: vec![0.0; n] });
        Variant {
            features,
            duplicate: model.clone(),
            duplicate_threshold: 0.5,
            block_threshold: 0.9,
            surface: model,
            surface_threshold: 0.5,
            lone_duplicate_threshold: None,
        }
    }

    #[test]
    fn the_richest_applicable_variant_judges() {
        let model = ScorerModel {
            fingerprints: vec![],
            embedder: "x".into(),
            variants: vec![
                variant(vec![Feature::Cosine, Feature::CosineBundled], 3.0),
                variant(vec![Feature::Cosine], -3.0),
            ],
            canonical_input: false,
            search_floor: None,
        };
        let a = crate::ItemText { title: "Add caching to the admin API", description: "" };
        let b = crate::ItemText { title: "Add rate limits to the admin API", description: "" };
        let one = PairFeatures::new(a, b, 0.5, PathRelation::Unknown);
        assert_eq!(model.judge(&one).relation, None, "only the one-cosine variant applies");
        let signals = crate::Signals { cosine: 0.5, cosine_bundled: Some(0.5), words: None };
        let both = PairFeatures::with_signals(a, b, signals, PathRelation::Unknown);
        assert_eq!(model.judge(&both).relation, Some(Relation::Duplicate));
        assert!(model.wants_bundled_cosine() && !model.wants_words());
    }

    #[test]
    fn a_duplicate_the_surface_classifier_would_not_surface_needs_the_lone_threshold() {
        let features = vec![Feature::Cosine];
        let with = |p_dup: f32, p_surface: f32| Variant {
            features: features.clone(),
            duplicate: Classifier::Logistic(Logistic { bias: (p_dup / (1.0 - p_dup)).ln(), weights: vec![0.0] }),
            duplicate_threshold: 0.6,
            block_threshold: 0.95,
            surface: Classifier::Logistic(Logistic { bias: (p_surface / (1.0 - p_surface)).ln(), weights: vec![0.0] }),
            surface_threshold: 0.6,
            lone_duplicate_threshold: Some(0.7),
        };
        let a = crate::ItemText { title: "Cache user permissions in the session", description: "" };
        let b = crate::ItemText { title: "Cache rendered Markdown for wiki pages", description: "" };
        let f = PairFeatures::new(a, b, 0.3, PathRelation::Unknown);
        let relation = |p_dup, p_surface| with(p_dup, p_surface).judge(&f).map(|v| v.relation);
        assert_eq!(relation(0.65, 0.5), Some(None), "over the duplicate threshold, under the lone one: not surfaced");
        assert_eq!(relation(0.75, 0.5), Some(Some(Relation::Duplicate)), "over the lone threshold");
        assert_eq!(relation(0.65, 0.65), Some(Some(Relation::Duplicate)), "surfaced: the duplicate threshold holds");
        assert_eq!(relation(0.5, 0.65), Some(Some(Relation::Related)));
        let mut old = with(0.65, 0.5);
        old.lone_duplicate_threshold = None;
        assert_eq!(old.judge(&f).map(|v| v.relation), Some(Some(Relation::Duplicate)), "models without one");
    }
}
