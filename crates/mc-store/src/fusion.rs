//! Reciprocal-rank fusion of full-text and vector results, shared by every backend so that both
//! rank hybrid search results the same way.

use std::collections::HashMap;

/// Reciprocal-rank-fusion constant (the usual 60).
pub const RRF_K: f32 = 60.0;

/// One result of a fused search.
pub struct Fused<T> {
    pub item: T,
    pub score: f32,
    pub text_rank: Option<usize>,
    pub vector_rank: Option<usize>,
    pub cosine: Option<f32>,
}

impl From<Fused<mc_domain::Kluster>> for crate::KlusterHit {
    fn from(f: Fused<mc_domain::Kluster>) -> Self {
        Self { kluster: f.item, score: f.score, text_rank: f.text_rank, vector_rank: f.vector_rank, cosine: f.cosine }
    }
}

impl From<Fused<mc_domain::Doc>> for crate::DocHit {
    fn from(f: Fused<mc_domain::Doc>) -> Self {
        Self { doc: f.item, score: f.score, text_rank: f.text_rank, vector_rank: f.vector_rank, cosine: f.cosine }
    }
}

/// Reciprocal-rank fusion of full-text results (best first) and vector results (nearest first,
/// with their cosine): the best `limit`, ties broken by key.
pub fn fuse<T, K: std::hash::Hash + Eq + Ord + Copy>(
    text: Vec<T>,
    vector: Vec<(T, f32)>,
    key: impl Fn(&T) -> K,
    limit: usize,
) -> Vec<Fused<T>> {
    let mut hits: HashMap<K, Fused<T>> = HashMap::new();
    for (i, item) in text.into_iter().enumerate() {
        let score = 1.0 / (RRF_K + (i + 1) as f32);
        hits.insert(key(&item), Fused { item, score, text_rank: Some(i + 1), vector_rank: None, cosine: None });
    }
    for (i, (item, cos)) in vector.into_iter().enumerate() {
        let score = 1.0 / (RRF_K + (i + 1) as f32);
        hits.entry(key(&item))
            .and_modify(|h| {
                h.score += score;
                h.vector_rank = Some(i + 1);
                h.cosine = Some(cos);
            })
            .or_insert(Fused { item, score, text_rank: None, vector_rank: Some(i + 1), cosine: Some(cos) });
    }
    let mut out: Vec<(K, Fused<T>)> = hits.into_iter().collect();
    out.sort_by(|a, b| b.1.score.total_cmp(&a.1.score).then(a.0.cmp(&b.0)));
    out.truncate(limit);
    out.into_iter().map(|(_, f)| f).collect()
}
