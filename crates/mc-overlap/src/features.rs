//! Signals of one pair of work items: embedding cosines (passed in), rarity-weighted lexical
//! overlap, what differs between the two texts, and whether their declared paths can touch the
//! same file.

use std::collections::BTreeSet;

use crate::glob::{Glob, first_overlap};
use crate::text::{Token, is_generic, slot, tokens, weight};

/// The text of a work item as overlap detection sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ItemText<'a> {
    pub title: &'a str,
    pub description: &'a str,
}

impl ItemText<'_> {
    /// What gets embedded: the title, then the description.
    pub fn embedding_input(&self) -> String {
        mc_domain::task::embedding_text(self.title, self.description)
    }
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

/// Everything the scorer looks at for one pair.
#[derive(Debug, Clone)]
pub struct PairFeatures {
    /// Cosine of the embeddings of the two full texts.
    pub cosine: f32,
    /// Rarity-weighted Jaccard overlap of content tokens, 0..1.
    pub lexical: f32,
    /// Object words (not generic) found on one side only, per side.
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
    /// Words of the same slot category swapped between the sides (`staging` ↔ `production`).
    pub slot_swap: Option<(String, String, &'static str)>,
    /// Share of the object-word weight that is unmatched, 0..1.
    pub unmatched: f32,
    pub paths: PathRelation,
}

fn similar(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (la, lb) = (a.chars().count(), b.chars().count());
    if la.min(lb) >= 5 && (a.starts_with(b) || b.starts_with(a)) {
        return true;
    }
    la.min(lb) >= 6 && la.abs_diff(lb) <= 1 && edit_distance_at_most_one(a, b)
}

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
                i += 1;
                j += 1;
            }
        }
    }
    edits + (a.len() - i) + (b.len() - j) <= 1
}

fn unique(tokens: Vec<Token>) -> Vec<Token> {
    let mut seen = BTreeSet::new();
    tokens.into_iter().filter(|t| seen.insert(t.norm.clone())).collect()
}

impl PairFeatures {
    /// Computes the lexical and structural signals; `cosine` comes from an embedder.
    pub fn new(a: ItemText<'_>, b: ItemText<'_>, cosine: f32, paths: PathRelation) -> Self {
        let ta = unique(tokens(&format!("{} {}", a.title, a.description)));
        let tb = unique(tokens(&format!("{} {}", b.title, b.description)));
        let matched = |t: &Token, other: &[Token]| other.iter().any(|o| similar(&t.norm, &o.norm));
        let (mut inter, mut union) = (0.0f32, 0.0f32);
        let (mut spec_total, mut spec_unmatched) = (0.0f32, 0.0f32);
        let mut only_a = Vec::new();
        let mut only_b = Vec::new();
        let mut loose_a = Vec::new();
        let mut loose_b = Vec::new();
        for t in &ta {
            let w = weight(&t.norm);
            let hit = matched(t, &tb);
            union += w;
            if hit {
                inter += w;
            } else {
                loose_a.push(t.norm.clone());
                if !is_generic(&t.norm) {
                    only_a.push(t.norm.clone());
                    spec_unmatched += w;
                }
            }
            if !is_generic(&t.norm) {
                spec_total += w;
            }
        }
        for t in &tb {
            let w = weight(&t.norm);
            if !matched(t, &ta) {
                union += w;
                loose_b.push(t.norm.clone());
                if !is_generic(&t.norm) {
                    only_b.push(t.norm.clone());
                    spec_unmatched += w;
                }
            }
            if !is_generic(&t.norm) {
                spec_total += w;
            }
        }
        let slot_swap = loose_a.iter().find_map(|x| {
            let cat = slot(x)?;
            loose_b.iter().find(|y| slot(y) == Some(cat)).map(|y| (x.clone(), y.clone(), cat))
        });
        Self {
            cosine,
            lexical: if union > 0.0 { inter / union } else { 0.0 },
            only_a,
            only_b,
            slot_swap,
            unmatched: if spec_total > 0.0 { spec_unmatched / spec_total } else { 0.0 },
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

    /// The numeric vector the calibrated models read (see `model::FEATURES`).
    pub fn vector(&self) -> Vec<f32> {
        let c = self.cosine.clamp(-1.0, 1.0);
        let (inter, disjoint) = match self.paths {
            PathRelation::Intersect { .. } => (1.0, 0.0),
            PathRelation::Disjoint => (0.0, 1.0),
            PathRelation::Unknown => (0.0, 0.0),
        };
        let swapped = (self.only_a.len().min(self.only_b.len()) as f32).min(3.0) / 3.0;
        vec![
            c,
            c * c,
            self.lexical,
            self.lexical * c,
            swapped,
            f32::from(u8::from(self.substitution())),
            f32::from(u8::from(self.slot_swap.is_some())),
            self.unmatched,
            self.unmatched * c,
            inter,
            disjoint,
        ]
    }
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
}
