//! Signals of one pair of work items: embedding cosines (passed in), rarity-weighted lexical
//! overlap, what differs between the two texts, and whether their declared paths can touch the
//! same file.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::glob::{Glob, first_overlap};
use crate::text::{Token, acronym, is_generic, slot, tokens, weight};

/// The text of a work item as overlap detection sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ItemText<'a> {
    pub title: &'a str,
    pub description: &'a str,
}

/// How many words of a doc's body the text signals of its whole text read (see
/// [`PairFeatures::of_docs`]): over a whole body, shared common words made unrelated docs look
/// related; and a bound on their cost, since they compare every word of one text with every word
/// of the other (two 64 KiB bodies took seconds a pair).
pub const COMPARED_WORDS: usize = 30;

impl ItemText<'_> {
    /// What gets embedded: the title, then the description.
    pub fn embedding_input(&self) -> String {
        mc_domain::task::embedding_text(self.title, self.description)
    }

    /// What the text signals of a doc's whole text read: the title, then the first
    /// [`COMPARED_WORDS`] words of the body.
    pub fn compared_text(&self) -> String {
        let mut text = self.title.to_owned();
        for word in self.description.split_whitespace().take(COMPARED_WORDS) {
            text.push(' ');
            text.push_str(word);
        }
        text
    }
}

/// What a doc's title says the doc is about: the part after a leading label of at most five
/// words and a colon ("Runbook: Redis memory alert", "ADR 7: Kafka as the event bus", "Load test
/// report: search API"), else the whole title. Docs written from one template share the label,
/// so it says nothing about whether they are the same doc.
pub fn doc_subject(title: &str) -> &str {
    match title.split_once(": ") {
        Some((label, rest)) if !rest.trim().is_empty() && label.split_whitespace().count() <= 5 => rest.trim(),
        _ => title,
    }
}

/// The signals of two docs' titles, as [`crate::ScorerModel::judge_doc`] reads them: the
/// [subjects](doc_subject) alone, with the cosine of their vectors (`None`: the lexical overlap
/// stands in for it).
pub fn doc_titles(a: &str, b: &str, cosine: Option<f32>, paths: PathRelation) -> PairFeatures {
    let item = |title| ItemText { title: doc_subject(title), description: "" };
    let mut f = PairFeatures::new(item(a), item(b), 0.0, paths);
    f.cosine = cosine.unwrap_or(f.lexical);
    f
}

/// How two lists of path globs relate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathRelation {
    /// One side declared no paths.
    Unknown,
    /// No file can match a glob of each side.
    Disjoint,
    /// `a` and `b` can both match `example`.
    Intersect { a: String, b: String, example: String },
}

/// Compares two lists of parsed globs exactly.
pub fn path_relation(a: &[Glob], b: &[Glob]) -> PathRelation {
    if a.is_empty() || b.is_empty() {
        return PathRelation::Unknown;
    }
    match first_overlap(a, b) {
        Some((ga, gb, example)) => {
            PathRelation::Intersect { a: ga.pattern().to_owned(), b: gb.pattern().to_owned(), example }
        }
        None => PathRelation::Disjoint,
    }
}

/// Vectors of single words made by a sentence embedder (each word embedded alone), looked up by
/// the keys [`content_words`] lists. They let a word meet its synonym ("broken" and "dead").
pub trait WordVectors {
    fn word_vector(&self, word: &str) -> Option<&[f32]>;
}

impl<S: std::hash::BuildHasher> WordVectors for HashMap<String, Vec<f32>, S> {
    fn word_vector(&self, word: &str) -> Option<&[f32]> {
        self.get(word).map(Vec::as_slice)
    }
}

impl<S: std::hash::BuildHasher> WordVectors for HashMap<String, Arc<[f32]>, S> {
    fn word_vector(&self, word: &str) -> Option<&[f32]> {
        self.get(word).map(|v| &**v)
    }
}

/// What the scorer knows of a pair beyond its texts and paths.
#[derive(Clone, Copy, Default)]
pub struct Signals<'a> {
    /// Cosine of the two full texts by the configured embedder.
    pub cosine: f32,
    /// Cosine of the two full texts by the bundled embedder, when the configured one is another
    /// model (the combined scorer reads both).
    pub cosine_bundled: Option<f32>,
    /// Single-word vectors for the soft word alignment.
    pub words: Option<&'a dyn WordVectors>,
}

impl std::fmt::Debug for Signals<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signals")
            .field("cosine", &self.cosine)
            .field("cosine_bundled", &self.cosine_bundled)
            .field("words", &self.words.is_some())
            .finish()
    }
}

/// The keys of the word vectors the soft alignment looks up for one task: the content words of
/// its title, lower-cased, each once. A server embeds those it has not cached yet.
pub fn content_words(item: ItemText<'_>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    tokens(item.title).iter().map(word_key).filter(|k| seen.insert(k.clone())).collect()
}

/// The word a token's vector is looked up by: its spelling (stems such as `cach` embed badly).
fn word_key(t: &Token) -> String {
    t.original.to_lowercase()
}

/// How well the words of each side find a counterpart on the other, using word vectors: a
/// BERTScore-style alignment over object words (an exact match counts 1).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Alignment {
    /// The lower of the two sides' weighted mean best similarity, 0..1.
    pub low: f32,
    /// The higher of the two.
    pub high: f32,
    /// The most similar pair among the unmatched object words of the two sides (a swap of
    /// near neighbours, or a synonym), 0 when one side has none.
    pub swap: f32,
    /// The least covered object word of either side, 0..1.
    pub weakest: f32,
}

/// Everything the scorer looks at for one pair.
#[derive(Debug, Clone)]
pub struct PairFeatures {
    /// Cosine of the embeddings of the two full texts.
    pub cosine: f32,
    /// The bundled embedder's cosine, when the configured embedder is another one.
    pub cosine_bundled: Option<f32>,
    /// Rarity-weighted Jaccard overlap of content tokens, 0..1.
    pub lexical: f32,
    /// Object words (not generic) found on one side only, per side.
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
    /// Words of the same slot category swapped between the sides (`staging` ↔ `production`).
    pub slot_swap: Option<(String, String, &'static str)>,
    /// Share of the object-word weight that is unmatched, 0..1.
    pub unmatched: f32,
    /// Object words found on both sides.
    pub shared_objects: usize,
    /// Content tokens of the shorter text over those of the longer, 0..1.
    pub length_ratio: f32,
    /// Slot words (environment, vendor, version...) on one side only with no word of their
    /// category on the other: the other text does not say which one.
    pub slot_one_sided: usize,
    /// The soft word alignment, when word vectors were given.
    pub alignment: Option<Alignment>,
    /// Read in order, the texts are one sentence with one short stretch replaced: the words of
    /// that stretch on each side ("finance" and "support").
    pub one_swap: Option<(String, String)>,
    /// The two texts begin with the same word (mostly the verb: "Cache…", "Refactor…") and share
    /// no other word that names an object, and each names at least two objects the other lacks:
    /// the same kind of work on other things.
    pub lead_only: bool,
    pub paths: PathRelation,
}

/// Texts longer than this many words are not read in order.
const ALIGN_MAX: usize = 48;

/// Whether, read in order, the two texts are the same words but for one stretch of one to three
/// words on each side ("Grant the finance team read access" against "Grant the support team read
/// access"; generic words count here too), with at least half of the longer text in common; and
/// the words of that stretch. That is the shape of "the same sentence about another object"; a
/// rewrite differs in several places, an unrelated text shares little.
fn one_swap(a: &Side, b: &Side) -> Option<(String, String)> {
    let (n, m) = (a.tokens.len(), b.tokens.len());
    if n == 0 || m == 0 || n > ALIGN_MAX || m > ALIGN_MAX {
        return None;
    }
    // synonyms by the thesaurus are the same word (heads looked up once per token)
    let heads = |side: &Side| -> Vec<Option<&'static str>> {
        side.tokens.iter().map(|t| crate::thesaurus::head(&t.original)).collect()
    };
    let (ha, hb) = (heads(a), heads(b));
    let same =
        |i: usize, j: usize| similar(&a.tokens[i].norm, &b.tokens[j].norm) || (ha[i].is_some() && ha[i] == hb[j]);
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..]
    let mut lcs = vec![vec![0u8; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if same(i, j) { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let common = usize::from(lcs[0][0]);
    if 2 * common < n.max(m) {
        return None;
    }
    // walk the alignment; collect the stretches between common words
    let (mut i, mut j) = (0, 0);
    let (mut from_a, mut from_b) = (0, 0);
    let mut stretches: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = Vec::new();
    while i < n || j < m {
        if i < n && j < m && same(i, j) && lcs[i][j] == lcs[i + 1][j + 1] + 1 {
            if i > from_a || j > from_b {
                stretches.push((from_a..i, from_b..j));
            }
            i += 1;
            j += 1;
            (from_a, from_b) = (i, j);
        } else if j >= m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1]) {
            i += 1;
        } else {
            j += 1;
        }
    }
    if n > from_a || m > from_b {
        stretches.push((from_a..n, from_b..m));
    }
    let [(ra, rb)] = stretches.as_slice() else { return None };
    let short = |r: &std::ops::Range<usize>| (1..=3).contains(&r.len());
    if !(short(ra) && short(rb)) {
        return None;
    }
    // the words as written, each once
    let words = |side: &Side, r: &std::ops::Range<usize>| {
        let mut out: Vec<&str> = Vec::new();
        for t in &side.tokens[r.clone()] {
            if out.last() != Some(&t.original.as_str()) {
                out.push(&t.original);
            }
        }
        out.join(" ")
    };
    Some((words(a, ra), words(b, rb)))
}

fn similar(a: &str, b: &str) -> bool {
    if a == b || a.strip_suffix('e') == Some(b) || b.strip_suffix('e') == Some(a) {
        return true;
    }
    let (la, lb) = (a.chars().count(), b.chars().count());
    if la.min(lb) >= 5 && (a.starts_with(b) || b.starts_with(a)) {
        return true;
    }
    la.min(lb) >= 6 && la.abs_diff(lb) <= 1 && edit_distance_at_most_one(a, b)
}

/// At most one insertion, deletion, substitution or swap of two neighbouring letters.
fn edit_distance_at_most_one(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let (mut i, mut j, mut edits) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            i += 1;
            j += 1;
            continue;
        }
        edits += 1;
        if edits > 1 {
            return false;
        }
        match a.len().cmp(&b.len()) {
            std::cmp::Ordering::Greater => i += 1,
            std::cmp::Ordering::Less => j += 1,
            std::cmp::Ordering::Equal => {
                let swapped = i + 1 < a.len() && a[i] == b[j + 1] && a[i + 1] == b[j];
                let step = if swapped { 2 } else { 1 };
                i += step;
                j += step;
            }
        }
    }
    edits + (a.len() - i) + (b.len() - j) <= 1
}

/// The words of a lower-cased text, punctuation and hyphens dropped.
fn plain_words(lower: &str) -> Vec<&str> {
    lower
        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '\''))
        .flat_map(|w| w.split('-'))
        .filter(|w| !w.is_empty())
        .collect()
}

/// Whether `target` is `words[start..]`, two or three of them, written together (and the run
/// covers index `include`, when given).
fn written_together(target: &str, words: &[&str], start: usize, include: Option<usize>) -> bool {
    let mut rest = target;
    for (k, w) in words.iter().enumerate().skip(start).take(3) {
        let Some(r) = rest.strip_prefix(w) else { return false };
        rest = r;
        if rest.is_empty() {
            return k > start && include.is_none_or(|i| (start..=k).contains(&i));
        }
    }
    false
}

/// Whether `word` is two or three neighbouring words of `words` written together ("sidebar" and
/// "side bar", "login" and "log-in").
fn joined_in(word: &str, words: &[&str]) -> bool {
    word.len() >= 5 && (0..words.len()).any(|start| written_together(word, words, start, None))
}

fn unique(tokens: Vec<Token>) -> Vec<Token> {
    let mut seen = BTreeSet::new();
    tokens.into_iter().filter(|t| seen.insert(t.norm.clone())).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// One side's tokens, which of them have an exact (or near-spelling) match on the other side.
struct Side {
    tokens: Vec<Token>,
    matched: Vec<bool>,
}

fn alignment(a: &Side, b: &Side, words: &dyn WordVectors) -> Alignment {
    let va: Vec<Option<&[f32]>> = a.tokens.iter().map(|t| words.word_vector(&word_key(t))).collect();
    let vb: Vec<Option<&[f32]>> = b.tokens.iter().map(|t| words.word_vector(&word_key(t))).collect();
    let best = |i: usize, from: &Side, vf: &[Option<&[f32]>], to: &[Option<&[f32]>]| -> f32 {
        if from.matched[i] {
            return 1.0;
        }
        let Some(x) = vf[i] else { return 0.0 };
        to.iter().flatten().map(|y| dot(x, y)).fold(0.0f32, f32::max)
    };
    let mut weakest = 1.0f32;
    let mut cover = |from: &Side, vf: &[Option<&[f32]>], to: &[Option<&[f32]>]| -> f32 {
        let (mut sum, mut total) = (0.0f32, 0.0f32);
        for (i, t) in from.tokens.iter().enumerate() {
            if is_generic(&t.norm) {
                continue;
            }
            let s = best(i, from, vf, to);
            weakest = weakest.min(s);
            let w = weight(&t.norm);
            sum += w * s;
            total += w;
        }
        if total > 0.0 { sum / total } else { 1.0 }
    };
    let ra = cover(a, &va, &vb);
    let rb = cover(b, &vb, &va);
    let mut swap = 0.0f32;
    for (i, x) in a.tokens.iter().enumerate() {
        if a.matched[i] || is_generic(&x.norm) {
            continue;
        }
        for (j, y) in b.tokens.iter().enumerate() {
            if b.matched[j] || is_generic(&y.norm) {
                continue;
            }
            if let (Some(u), Some(v)) = (va[i], vb[j]) {
                swap = swap.max(dot(u, v));
            }
        }
    }
    Alignment { low: ra.min(rb), high: ra.max(rb), swap, weakest }
}

impl PairFeatures {
    /// The signals of two tasks: the lexical and structural ones read the titles, the
    /// descriptions count through `cosine` (of the embedded title and description, from an
    /// embedder). A title says what the work is; read together with a description, a pair of
    /// titles that are the same sentence about another object ("Return 429 from /export" against
    /// "… from /bulk-import") no longer reads as one, and a task with a description looks like the
    /// terse-and-verbose rewrite of any task without one. In cross-validation on the labelled
    /// pairs, reading the titles alone raised duplicate recall 0.823 → 0.846 and cut the unrelated
    /// pairs surfaced from 20 to 13 of 1110 and the wrong refusals from 10 to 0.
    pub fn new(a: ItemText<'_>, b: ItemText<'_>, cosine: f32, paths: PathRelation) -> Self {
        Self::with_signals(a, b, Signals { cosine, ..Signals::default() }, paths)
    }

    /// [`Self::new`] with every signal the scorer can use: a second cosine and word vectors.
    pub fn with_signals(a: ItemText<'_>, b: ItemText<'_>, signals: Signals<'_>, paths: PathRelation) -> Self {
        Self::read(a.title, b.title, signals, paths)
    }

    /// The signals of two docs' whole texts, as [`crate::ScorerModel::judge_doc`] reads them beside
    /// their [titles](doc_titles): the text signals read the title and the body's first
    /// [`COMPARED_WORDS`] words, since a doc's title alone often does not say what it holds.
    pub fn of_docs(a: ItemText<'_>, b: ItemText<'_>, cosine: f32, paths: PathRelation) -> Self {
        Self::read(&a.compared_text(), &b.compared_text(), Signals { cosine, ..Signals::default() }, paths)
    }

    fn read(text_a: &str, text_b: &str, signals: Signals<'_>, paths: PathRelation) -> Self {
        let ta = unique(tokens(text_a));
        let tb = unique(tokens(text_b));
        let sa = Side { matched: matches(&ta, text_a, &tb, text_b), tokens: ta };
        let sb = Side { matched: matches(&tb, text_b, &sa.tokens, text_a), tokens: tb };
        // per token, once: (weight, generic, slot category), and the unmatched ones of each side
        let info = |side: &Side| -> Vec<(f32, bool, Option<&'static str>)> {
            side.tokens.iter().map(|t| (weight(&t.norm), is_generic(&t.norm), slot(&t.norm))).collect()
        };
        let (ia, ib) = (info(&sa), info(&sb));
        let loose = |side: &Side| -> Vec<usize> { (0..side.tokens.len()).filter(|&i| !side.matched[i]).collect() };
        let (loose_a, loose_b) = (loose(&sa), loose(&sb));
        let (mut inter, mut union) = (0.0f32, 0.0f32);
        let (mut spec_total, mut spec_unmatched) = (0.0f32, 0.0f32);
        let mut shared_objects = 0;
        for (&hit, &(w, generic, _)) in sa.matched.iter().zip(&ia) {
            union += w;
            if hit {
                inter += w;
                shared_objects += usize::from(!generic);
            } else if !generic {
                spec_unmatched += w;
            }
            if !generic {
                spec_total += w;
            }
        }
        for (&hit, &(w, generic, _)) in sb.matched.iter().zip(&ib) {
            if !hit {
                union += w;
                if !generic {
                    spec_unmatched += w;
                }
            }
            if !generic {
                spec_total += w;
            }
        }
        let objects = |side: &Side, info: &[(f32, bool, Option<&'static str>)], loose: &[usize]| -> Vec<String> {
            loose.iter().filter(|&&i| !info[i].1).map(|&i| side.tokens[i].norm.clone()).collect()
        };
        let slot_swap = loose_a.iter().find_map(|&i| {
            let cat = ia[i].2?;
            loose_b
                .iter()
                .find(|&&j| ib[j].2 == Some(cat))
                .map(|&j| (sa.tokens[i].norm.clone(), sb.tokens[j].norm.clone(), cat))
        });
        let one_sided = |mine: &[usize],
                         my_info: &[(f32, bool, Option<&'static str>)],
                         theirs: &[usize],
                         their_info: &[(f32, bool, Option<&'static str>)]| {
            mine.iter()
                .filter_map(|&i| my_info[i].2)
                .filter(|cat| !theirs.iter().any(|&j| their_info[j].2 == Some(cat)))
                .count()
        };
        let slot_one_sided = one_sided(&loose_a, &ia, &loose_b, &ib) + one_sided(&loose_b, &ib, &loose_a, &ia);
        let (na, nb) = (sa.tokens.len(), sb.tokens.len());
        let length_ratio = if na.max(nb) > 0 { na.min(nb) as f32 / na.max(nb) as f32 } else { 1.0 };
        let alignment = signals.words.map(|w| alignment(&sa, &sb, w));
        let one_swap = one_swap(&sa, &sb);
        let only_a = objects(&sa, &ia, &loose_a);
        let only_b = objects(&sb, &ib, &loose_b);
        let lead_only = match (sa.tokens.first(), sb.tokens.first()) {
            (Some(x), Some(y)) => {
                similar(&x.norm, &y.norm)
                    && (1..sa.tokens.len()).all(|i| !sa.matched[i] || ia[i].1)
                    && (1..sb.tokens.len()).all(|j| !sb.matched[j] || ib[j].1)
                    && only_a.len() >= 2
                    && only_b.len() >= 2
            }
            _ => false,
        };
        Self {
            cosine: signals.cosine,
            cosine_bundled: signals.cosine_bundled,
            lexical: if union > 0.0 { inter / union } else { 0.0 },
            only_a,
            only_b,
            slot_swap,
            unmatched: if spec_total > 0.0 { spec_unmatched / spec_total } else { 0.0 },
            shared_objects,
            length_ratio,
            slot_one_sided,
            alignment,
            one_swap,
            lead_only,
            paths,
        }
    }

    /// The clean-substitution shape of "the same sentence about another object": most words
    /// shared, one to three object words differing on each side.
    pub fn substitution(&self) -> bool {
        let (a, b) = (self.only_a.len(), self.only_b.len());
        (1..=3).contains(&a) && (1..=3).contains(&b) && self.lexical >= 0.35
    }

    /// No object word on either side lacks a match, nothing was swapped, and most wording is
    /// shared: the texts say the same thing.
    pub fn nothing_differs(&self) -> bool {
        self.only_a.is_empty() && self.only_b.is_empty() && self.slot_swap.is_none() && self.lexical >= 0.75
    }

    /// Nothing differs and the embedder agrees (a typo can lower the cosine of near-identical
    /// texts, so nearly all shared wording asks for less): the same work, whatever the
    /// classifiers say.
    pub fn same_work(&self) -> bool {
        self.nothing_differs() && (self.cosine >= 0.8 || (self.lexical >= 0.9 && self.cosine >= 0.5))
    }

    /// At most a tenth of the wording (weighted by rarity) differs and the embedder agrees: one
    /// text is a light revision of the other, however long they are.
    pub fn near_copy(&self) -> bool {
        self.lexical >= 0.9 && self.cosine >= 0.9
    }

    /// The value of one model input, `None` when the signal it needs was not given.
    pub fn value(&self, feature: Feature) -> Option<f32> {
        let c = self.cosine.clamp(-1.0, 1.0);
        let flag = |b: bool| f32::from(u8::from(b));
        let (a, b) = (self.only_a.len(), self.only_b.len());
        Some(match feature {
            Feature::Cosine => c,
            Feature::CosineSquared => c * c,
            Feature::Lexical => self.lexical,
            Feature::LexicalTimesCosine => self.lexical * c,
            Feature::SwappedWords => (a.min(b) as f32).min(3.0) / 3.0,
            Feature::Substitution => flag(self.substitution()),
            Feature::SlotSwap => flag(self.slot_swap.is_some()),
            Feature::Unmatched => self.unmatched,
            Feature::UnmatchedTimesCosine => self.unmatched * c,
            Feature::PathsIntersect => flag(matches!(self.paths, PathRelation::Intersect { .. })),
            Feature::PathsDisjoint => flag(self.paths == PathRelation::Disjoint),
            Feature::OnlyMost => (a.max(b) as f32).min(6.0) / 6.0,
            Feature::OneSided => flag((a == 0) != (b == 0)),
            Feature::SharedObjects => (self.shared_objects as f32).min(5.0) / 5.0,
            Feature::LengthRatio => self.length_ratio,
            Feature::SlotOneSided => flag(self.slot_one_sided > 0),
            Feature::CosineBundled => self.cosine_bundled?.clamp(-1.0, 1.0),
            Feature::CosineMean => (c + self.cosine_bundled?.clamp(-1.0, 1.0)) / 2.0,
            Feature::AlignLow => self.alignment?.low,
            Feature::AlignHigh => self.alignment?.high,
            Feature::AlignSwap => self.alignment?.swap,
            Feature::AlignWeakest => self.alignment?.weakest,
            Feature::OneSwap => flag(self.one_swap.is_some()),
            Feature::LeadOnly => flag(self.lead_only),
        })
    }

    /// The values of `features`, `None` if one of them lacks its signal.
    pub fn values(&self, features: &[Feature]) -> Option<Vec<f32>> {
        features.iter().map(|f| self.value(*f)).collect()
    }

    /// The numeric vector of the base inputs (those that need only one cosine), in
    /// [`Feature::BASE`] order.
    pub fn vector(&self) -> Vec<f32> {
        Feature::BASE.iter().filter_map(|f| self.value(*f)).collect()
    }
}

/// Whether `word` is one of two or three neighbouring words of `words` that, written together,
/// are a word of `theirs` ("log" of "log-in" against "login").
fn part_of_joined(word: &str, words: &[&str], theirs: &[&str]) -> bool {
    words.iter().enumerate().filter(|(_, w)| **w == word).any(|(i, _)| {
        theirs
            .iter()
            .filter(|t| t.len() >= 5)
            .any(|t| (i.saturating_sub(2)..=i).any(|start| written_together(t, words, start, Some(i))))
    })
}

/// Whether `t` is a known acronym whose expansion is all said on the other side ("WAL" against
/// "write-ahead log"). The acronym is one token, whatever the length of its expansion: expansion
/// words as tokens made every text with an acronym look longer and, where the other side did not
/// spell it out, like several words only one side has (cross-validated on the labelled pairs with
/// 212 acronyms: duplicate recall 0.808 that way, 0.878 this way).
fn spelled_out(t: &Token, theirs: &[Token]) -> bool {
    acronym(&t.norm)
        .is_some_and(|expansion| tokens(expansion).iter().all(|w| theirs.iter().any(|o| similar(&w.norm, &o.norm))))
}

/// The expansion words of the acronyms among `theirs` that are spelled out in full among `mine`
/// ("high" and "availability" when `theirs` says "HA" and `mine` "high availability"): those words
/// of `mine` are matched by the acronym.
fn spelled_out_words(theirs: &[Token], mine: &[Token]) -> Vec<Token> {
    theirs.iter().filter(|o| spelled_out(o, mine)).filter_map(|o| acronym(&o.norm)).flat_map(tokens).collect()
}

/// Which of `mine` have a match among `theirs`: by spelling, as a spelled-out acronym, or written
/// as separate words (the plain words of both texts are split only when a token finds no match
/// otherwise).
fn matches(mine: &[Token], my_text: &str, theirs: &[Token], their_text: &str) -> Vec<bool> {
    let lower = std::cell::OnceCell::new();
    let acronym_words = spelled_out_words(theirs, mine);
    mine.iter()
        .map(|t| {
            theirs.iter().any(|o| similar(&t.norm, &o.norm))
                || spelled_out(t, theirs)
                || acronym_words.iter().any(|w| similar(&w.norm, &t.norm))
                || {
                    let (my_lower, their_lower) =
                        lower.get_or_init(|| (my_text.to_lowercase(), their_text.to_lowercase()));
                    let (my_words, their_words) = (plain_words(my_lower), plain_words(their_lower));
                    let word = t.original.to_lowercase();
                    joined_in(&word, &their_words) || part_of_joined(&word, &my_words, &their_words)
                }
        })
        .collect()
}

/// One input of the calibrated models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    Cosine,
    CosineSquared,
    Lexical,
    LexicalTimesCosine,
    /// Object words unmatched on both sides (a swap), up to 3.
    SwappedWords,
    Substitution,
    SlotSwap,
    Unmatched,
    UnmatchedTimesCosine,
    PathsIntersect,
    PathsDisjoint,
    /// The larger count of unmatched object words of a side, up to 6.
    OnlyMost,
    /// Only one side has unmatched object words (an addition, not a swap).
    OneSided,
    SharedObjects,
    LengthRatio,
    SlotOneSided,
    /// Needs `Signals::cosine_bundled`.
    CosineBundled,
    /// Needs `Signals::cosine_bundled`.
    CosineMean,
    /// Needs `Signals::words`.
    AlignLow,
    /// Needs `Signals::words`.
    AlignHigh,
    /// Needs `Signals::words`.
    AlignSwap,
    /// Needs `Signals::words`.
    AlignWeakest,
    /// See [`PairFeatures::one_swap`].
    OneSwap,
    /// See [`PairFeatures::lead_only`].
    LeadOnly,
}

impl Feature {
    /// The inputs computed from the texts, the paths and one cosine.
    pub const BASE: &[Feature] = &[
        Feature::Cosine,
        Feature::CosineSquared,
        Feature::Lexical,
        Feature::LexicalTimesCosine,
        Feature::SwappedWords,
        Feature::Substitution,
        Feature::SlotSwap,
        Feature::Unmatched,
        Feature::UnmatchedTimesCosine,
        Feature::PathsIntersect,
        Feature::PathsDisjoint,
        Feature::OnlyMost,
        Feature::OneSided,
        Feature::SharedObjects,
        Feature::LengthRatio,
        Feature::SlotOneSided,
        Feature::OneSwap,
        Feature::LeadOnly,
    ];
    /// Inputs that need the bundled embedder's cosine as well.
    pub const BUNDLED: &[Feature] = &[Feature::CosineBundled, Feature::CosineMean];
    /// Inputs that need word vectors.
    pub const WORDS: &[Feature] = &[Feature::AlignLow, Feature::AlignHigh, Feature::AlignSwap, Feature::AlignWeakest];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(a: &str, b: &str) -> PairFeatures {
        PairFeatures::new(
            ItemText { title: a, description: "" },
            ItemText { title: b, description: "" },
            0.8,
            PathRelation::Unknown,
        )
    }

    #[test]
    fn a_doc_subject_leaves_out_a_short_label() {
        assert_eq!(doc_subject("Runbook: Redis memory alert"), "Redis memory alert");
        assert_eq!(doc_subject("ADR 7: PostgreSQL as the primary database"), "PostgreSQL as the primary database");
        assert_eq!(doc_subject("What to do when Redis runs out of memory"), "What to do when Redis runs out of memory");
        // not a label: too long before the colon, nothing after it, or no space after it
        let long = "When the nightly export to the warehouse fails: retry it";
        assert_eq!(doc_subject(long), long);
        assert_eq!(doc_subject("Notes: "), "Notes: ");
        assert_eq!(doc_subject("See https://example.com/x"), "See https://example.com/x");
    }

    #[test]
    fn words_past_the_compared_ones_do_not_change_the_signals() {
        let start: Vec<String> = (0..COMPARED_WORDS).map(|i| format!("word{i}")).collect();
        let start = start.join(" ");
        let long_a = format!("{start} {}", "alpha beta gamma ".repeat(5000));
        let long_b = format!("{start} {}", "delta epsilon zeta ".repeat(5000));
        let pair = |da: &str, db: &str| {
            let a = ItemText { title: "Design notes", description: da };
            let b = ItemText { title: "Design notes", description: db };
            PairFeatures::of_docs(a, b, 0.8, PathRelation::Unknown)
        };
        let long = pair(&long_a, &long_b);
        let short = pair(&start, &start);
        assert_eq!(long.vector(), short.vector());
        assert!(long.only_a.is_empty() && long.only_b.is_empty(), "{long:?}");
        // within the compared words, a difference counts
        let differs = pair(&start, &format!("{} other", &start[..start.rfind(' ').unwrap_or(0)]));
        assert_ne!(differs.vector(), short.vector());
    }

    #[test]
    fn an_acronym_is_one_word_that_meets_its_expansion() {
        let f = |a: &str, b: &str| {
            let (a, b) = (ItemText { title: a, description: "" }, ItemText { title: b, description: "" });
            PairFeatures::new(a, b, 0.5, PathRelation::Unknown)
        };
        // spelled out on the other side: nothing differs, both ways
        for (a, b) in [
            ("Add a WAF in front of the API", "Add a web application firewall in front of the API"),
            ("Add a web application firewall in front of the API", "Add a WAF in front of the API"),
        ] {
            let x = f(a, b);
            assert!(x.only_a.is_empty() && x.only_b.is_empty(), "{a} / {b}: {:?} {:?}", x.only_a, x.only_b);
        }
        // not spelled out: the acronym is one word only one side has, not its three
        let x = f("Add a WAF in front of the API", "Add caching in front of the API");
        assert_eq!(x.only_a, vec!["waf"]);
        // half an expansion is not the acronym
        let x = f("Run Vault in HA mode", "Make Vault available");
        assert!(x.only_a.contains(&"ha".to_owned()), "{:?}", x.only_a);
    }

    #[test]
    fn a_task_is_compared_by_its_title_and_a_description_does_not_hide_a_swap() {
        let export = ItemText {
            title: "Return 429 with Retry-After from /export",
            description: "Clients currently get a bare 503 when the export workers are saturated.",
        };
        let import = ItemText { title: "Return 429 with Retry-After from /bulk-import", description: "" };
        let tasks = PairFeatures::new(export, import, 0.6, PathRelation::Unknown);
        let titles =
            PairFeatures::new(ItemText { title: export.title, description: "" }, import, 0.6, PathRelation::Unknown);
        assert_eq!(tasks.vector(), titles.vector(), "the description counts through the cosine only");
        assert!(tasks.one_swap.is_some(), "one sentence, another endpoint: {tasks:?}");
        // read as docs, the body's words count: the titles' swap is one difference among many
        let docs = PairFeatures::of_docs(export, import, 0.6, PathRelation::Unknown);
        assert!(docs.one_swap.is_none() && docs.only_a.len() > tasks.only_a.len(), "{docs:?}");
    }

    #[test]
    fn a_swapped_object_is_seen() {
        let p = f("Create Helm chart for staging", "Create Helm chart for production");
        assert!(p.substitution(), "{p:?}");
        let (x, y, cat) = p.slot_swap.clone().expect("slot swap");
        assert_eq!((x.as_str(), y.as_str(), cat), ("staging", "production", "environment"));
        let p = f("Grafana dashboard for Redis", "Grafana dashboard for Kafka");
        assert_eq!(p.slot_swap.expect("swap").2, "technology");
        let p = f(
            "Set resource limits for the auth-service deployment",
            "Set resource limits for the cart-service deployment",
        );
        assert!(p.substitution(), "{p:?}");
    }

    #[test]
    fn one_swap_is_the_same_sentence_about_another_object() {
        // generic words count: `support` is a generic word but here it names another team
        let team = f(
            "Grant the finance team read access to the billing warehouse",
            "Grant the support team read access to the billing warehouse",
        );
        assert_eq!(team.one_swap, Some(("finance".to_owned(), "support".to_owned())));
        let env = f("Create Helm chart for staging", "Create Helm chart for production").one_swap;
        assert_eq!(env, Some(("staging".to_owned(), "production".to_owned())));
        let aspect = f("Add response caching to the reporting API", "Add rate limiting to the reporting API").one_swap;
        assert_eq!(aspect, Some(("response caching".to_owned(), "rate limiting".to_owned())));
        // a rewrite differs in more than one place, or shares too little
        assert!(
            f("Fix broken links in the documentation", "Repair dead hyperlinks throughout the docs site")
                .one_swap
                .is_none()
        );
        assert!(f("Retrain the churn model", "Serve the image classifier behind a batching server").one_swap.is_none());
        // nothing swapped: the same words, a typo, a synonym of the thesaurus, an added word
        assert!(f("Add caching to the admin API", "Add caching to the admin API").one_swap.is_none());
        assert!(f("Remove the deprecated search endpoint", "Remove the deprecated search endpiont").one_swap.is_none());
        assert!(f("Purge inactive accounts", "Purge dormant accounts").one_swap.is_none());
        assert!(f("Add caching to the admin API", "Add caching to the internal admin API").one_swap.is_none());
    }

    #[test]
    fn lead_only_is_the_same_verb_on_other_things() {
        assert!(f("Cache exchange rates in Redis", "Cache thumbnails of uploaded videos").lead_only);
        assert!(f("Refactor the invoice renderer", "Refactor the retry queue of the mailer").lead_only);
        // another shared object, one object each (a swap), no shared first word, the same text
        assert!(!f("Refactor the invoice renderer", "Refactor the invoice exporter into two crates").lead_only);
        assert!(!f("Cache exchange rates", "Cache thumbnails").lead_only);
        assert!(!f("Purge dormant profiles", "Delete inactive user accounts after two years").lead_only);
        assert!(!f("Cache exchange rates in Redis", "Cache exchange rates in Redis").lead_only);
    }

    #[test]
    fn a_paraphrase_is_not_a_substitution() {
        let p = f("Fix broken links in the documentation", "Repair dead hyperlinks throughout the docs site");
        assert!(p.slot_swap.is_none(), "{p:?}");
        assert!(p.lexical > 0.2, "link and documentation are shared after folding: {p:?}");
        let same = f("Add caching to the admin API", "Add caching to the admin API");
        assert!((same.lexical - 1.0).abs() < 1e-6);
        assert!(same.only_a.is_empty() && same.only_b.is_empty());
        assert!(same.nothing_differs());
        assert!(f("Add caching to the admin API.", "add caching to admin APIs").nothing_differs());
        assert!(!f("Add caching to the admin API", "Add rate limits to the admin API").nothing_differs());
        assert!(!f("Create Helm chart for staging", "Create Helm chart for production").nothing_differs());
    }

    #[test]
    fn typos_and_split_compounds_still_match() {
        assert!(f("Remove the deprecated search endpoint", "Remove the deprecated search endpiont").nothing_differs());
        assert!(f("Add retry logic to the webhook handler", "Add retry logic to the webhok handler").nothing_differs());
        assert!(f("Make the sidebar collapsible", "Make the side bar collapsible").nothing_differs());
        assert!(f("Show the last login time", "Show the last log-in time.").nothing_differs());
        assert!(f("Fix the page's title", "Fix the page title").nothing_differs());
        // a short word is not a typo of another, nor are two words that merely share letters
        assert!(!f("Tune the pool size", "Tune the poll size").nothing_differs());
        assert!(!f("Add a side panel", "Add a sidebar").nothing_differs());
    }

    #[test]
    fn same_work_needs_the_embedder_to_agree_unless_the_wording_is_all_shared() {
        let with = |cosine| {
            PairFeatures::new(
                ItemText { title: "Remove the deprecated search endpoint", description: "" },
                ItemText { title: "Remove the deprecated search endpiont", description: "" },
                cosine,
                PathRelation::Unknown,
            )
        };
        assert!(with(0.7).same_work());
        assert!(!with(0.3).same_work());
        assert!(!f("Create Helm chart for staging", "Create Helm chart for production").same_work());
    }

    #[test]
    fn inputs_without_their_signal_are_missing() {
        let p = f("Add caching to the admin API", "Add rate limits to the admin API");
        assert!(p.values(Feature::BASE).is_some());
        assert_eq!(p.value(Feature::CosineBundled), None);
        assert_eq!(p.value(Feature::AlignLow), None);
        let words: HashMap<String, Vec<f32>> = [("caching", [1.0, 0.0]), ("rate", [0.6, 0.8]), ("limits", [0.0, 1.0])]
            .into_iter()
            .map(|(w, v)| (w.to_owned(), v.to_vec()))
            .collect();
        let signals = Signals { cosine: 0.7, cosine_bundled: Some(0.6), words: Some(&words) };
        let a = ItemText { title: "Add caching to the admin API", description: "" };
        let b = ItemText { title: "Add rate limits to the admin API", description: "" };
        let p = PairFeatures::with_signals(a, b, signals, PathRelation::Unknown);
        assert_eq!(p.value(Feature::CosineMean), Some(0.65));
        let al = p.alignment.expect("alignment with word vectors");
        assert!((al.swap - 0.6).abs() < 1e-6, "{al:?}");
        assert!(al.low < al.high && al.high < 1.0, "{al:?}");
        assert_eq!(content_words(a), vec!["add", "caching", "admin", "api"]);
    }
}
