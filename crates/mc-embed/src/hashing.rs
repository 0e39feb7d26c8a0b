//! Deterministic feature-hashing embedder for unit tests: no model, no I/O, identical output on every machine.
//!
//! Features are lower-cased word unigrams (weight 1) and the character trigrams of each word padded with `<` and
//! `>` (weight 0.5). Each feature is hashed with 64-bit FNV-1a (fixed offset basis, so fixed seed); the hash picks a
//! bucket (`hash % dim`) and a sign (top bit). The sum is L2-normalised. Texts that share words or word pieces get
//! a positive cosine; it knows nothing about synonyms.

use crate::{EmbedError, Embedder, check_texts, l2_normalize};

/// Default number of buckets, the same as the MiniLM models so tests exercise realistic vector sizes.
pub const DEFAULT_HASH_DIM: usize = 384;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Feature-hashing embedder; model id `hash/v1-<dim>`.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dim: usize,
    model_id: String,
}

impl Default for HashingEmbedder {
    fn default() -> Self {
        Self { dim: DEFAULT_HASH_DIM, model_id: format!("hash/v1-{DEFAULT_HASH_DIM}") }
    }
}

impl HashingEmbedder {
    /// A hashing embedder with `dim` buckets (`dim` ≥ 1).
    pub fn new(dim: usize) -> Result<Self, EmbedError> {
        if dim == 0 {
            return Err(EmbedError::Invalid("hashing embedder dimension must be at least 1".to_owned()));
        }
        Ok(Self { dim, model_id: format!("hash/v1-{dim}") })
    }

    /// Embeds one text synchronously. A text without any letter or digit is hashed as a whole, so only the empty
    /// string gives a zero vector.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dim];
        let lower = text.to_lowercase();
        let mut any = false;
        for word in lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            any = true;
            self.add(&mut v, b'w', word.as_bytes(), 1.0);
            let padded: Vec<char> = std::iter::once('<').chain(word.chars()).chain(std::iter::once('>')).collect();
            for tri in padded.windows(3) {
                let tri: String = tri.iter().collect();
                self.add(&mut v, b't', tri.as_bytes(), 0.5);
            }
        }
        if !any {
            self.add(&mut v, b'r', lower.trim().as_bytes(), 1.0);
        }
        l2_normalize(&mut v);
        v
    }

    fn add(&self, v: &mut [f32], kind: u8, feature: &[u8], weight: f32) {
        let h = fnv1a(&[&[kind, 0x1f], feature]);
        let bucket = (h % self.dim as u64) as usize;
        let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
        v[bucket] += sign * weight;
    }
}

/// 64-bit FNV-1a over the concatenation of `parts` (here: a feature kind byte, a separator, the feature).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h = FNV_OFFSET;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

#[async_trait::async_trait]
impl Embedder for HashingEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dim(&self) -> usize {
        self.dim
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        check_texts(texts)?;
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosine;

    fn norm(v: &[f32]) -> f32 {
        v.iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    #[test]
    fn fnv1a_matches_published_test_vectors() {
        // Test vectors from the FNV reference (64-bit FNV-1a): "", "a", "foobar".
        assert_eq!(fnv1a(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&[b"foo", b"bar"]), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn deterministic_normalised_and_sized() {
        let e = HashingEmbedder::default();
        let a = e.embed_one("Fix the flaky login test");
        let b = HashingEmbedder::new(384).expect("valid dim").embed_one("Fix the flaky login test");
        assert_eq!(a, b);
        assert_eq!(a.len(), 384);
        assert!((norm(&a) - 1.0).abs() < 1e-5);
        assert_eq!(e.model_id(), "hash/v1-384");
        let small = HashingEmbedder::new(16).expect("valid dim");
        assert_eq!(small.model_id(), "hash/v1-16");
        assert_eq!(small.embed_one("hello world").len(), 16);
    }

    #[test]
    fn case_and_punctuation_do_not_matter_but_words_do() {
        let e = HashingEmbedder::default();
        assert_eq!(e.embed_one("Fix the LOGIN test!"), e.embed_one("fix the login test"));
        assert_ne!(e.embed_one("fix the login test"), e.embed_one("fix the logout test"));
    }

    #[test]
    fn paraphrase_is_closer_than_unrelated_text() {
        let e = HashingEmbedder::default();
        let a = e.embed_one("Fix the flaky login test");
        let para = e.embed_one("fixing flaky login tests");
        let other = e.embed_one("Translate the billing docs to French");
        let (p, o) = (cosine(&a, &para), cosine(&a, &other));
        assert!(p > o + 0.2, "paraphrase {p} vs unrelated {o}");
        assert!(p > 0.5, "paraphrase {p}");
    }

    #[test]
    fn punctuation_only_text_still_gives_a_unit_vector() {
        let v = HashingEmbedder::default().embed_one("?!");
        assert!((norm(&v) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn zero_dimension_is_rejected() {
        assert!(matches!(HashingEmbedder::new(0), Err(EmbedError::Invalid(_))));
    }

    #[tokio::test]
    async fn trait_embed_keeps_order_and_handles_empty_and_blank_input() {
        let e = HashingEmbedder::default();
        assert!(e.embed(&[]).await.expect("empty ok").is_empty());
        let texts = vec!["alpha beta".to_owned(), "gamma".to_owned()];
        let out = e.embed(&texts).await.expect("embed");
        assert_eq!(out, vec![e.embed_one("alpha beta"), e.embed_one("gamma")]);
        let blank = e.embed(&["x".to_owned(), "  ".to_owned()]).await;
        assert!(matches!(blank, Err(EmbedError::Invalid(_))));
    }
}
