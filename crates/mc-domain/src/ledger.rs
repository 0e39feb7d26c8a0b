//! The ledger: an append-only, hash-chained record of every mutation. Each event carries the hash
//! of the one before it, so changing or removing any event breaks every link after it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{EventId, Timestamp};

/// The hash that the first event points back to.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An event as the caller describes it; the store assigns sequence, time and chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLedgerEvent {
    pub actor: String,
    pub action: String,
    pub entity_kind: &'static str,
    pub entity_id: String,
    pub request_id: Option<String>,
    /// SHA-256 (hex) of the entity's new state, as JSON.
    pub state_digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerEvent {
    pub seq: i64,
    pub id: EventId,
    pub at: chrono::DateTime<chrono::Utc>,
    pub actor: String,
    pub action: String,
    pub entity_kind: String,
    pub entity_id: String,
    pub request_id: Option<String>,
    pub state_digest: String,
    pub prev_hash: String,
    pub hash: String,
}

impl LedgerEvent {
    /// The hash this event must carry, computed from its fields and its predecessor's hash.
    pub fn compute_hash(&self) -> String {
        chain_hash(
            &self.prev_hash,
            self.seq,
            &self.id,
            self.at,
            &self.actor,
            &self.action,
            &self.entity_kind,
            &self.entity_id,
            self.request_id.as_deref(),
            &self.state_digest,
        )
    }
}

/// The chain hash over an event's canonical form: one field per line, in a fixed order.
#[allow(clippy::too_many_arguments)]
pub fn chain_hash(
    prev_hash: &str,
    seq: i64,
    id: &EventId,
    at: Timestamp,
    actor: &str,
    action: &str,
    entity_kind: &str,
    entity_id: &str,
    request_id: Option<&str>,
    state_digest: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        prev_hash,
        &seq.to_string(),
        &id.to_string(),
        &at.timestamp_millis().to_string(),
        actor,
        action,
        entity_kind,
        entity_id,
        request_id.unwrap_or(""),
        state_digest,
    ] {
        h.update(part.len().to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// SHA-256 (hex) of a serialisable state.
pub fn digest_of<T: Serialize>(state: &T) -> String {
    let bytes = serde_json::to_vec(state).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

/// SHA-256 (hex) of raw bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The outcome of walking the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerVerification {
    pub ok: bool,
    /// Events checked before stopping (all of them when `ok`).
    pub checked: u64,
    /// Hash of the last good event.
    pub head_hash: String,
    /// The first bad link, when not `ok`.
    pub first_bad_seq: Option<i64>,
    pub problem: Option<String>,
}

/// Incremental chain checker: feed events in sequence order.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_prev: String,
    expected_seq: Option<i64>,
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self { expected_prev: GENESIS_HASH.to_owned(), expected_seq: None, checked: 0 }
    }
}

impl ChainVerifier {
    /// Checks the next event; on a bad link returns the verification that reports it.
    pub fn push(&mut self, e: &LedgerEvent) -> Result<(), LedgerVerification> {
        let problem = if self.expected_seq.is_some_and(|s| s != e.seq) {
            Some(format!("sequence gap: expected event {}, found {}", self.expected_seq.unwrap_or_default(), e.seq))
        } else if e.prev_hash != self.expected_prev {
            Some(format!(
                "event {} points back to {} but the previous event hashes to {}",
                e.seq, e.prev_hash, self.expected_prev
            ))
        } else if e.compute_hash() != e.hash {
            Some(format!("event {} was altered: its content no longer matches its hash", e.seq))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(LedgerVerification {
                ok: false,
                checked: self.checked,
                head_hash: self.expected_prev.clone(),
                first_bad_seq: Some(e.seq),
                problem: Some(problem),
            });
        }
        self.expected_prev = e.hash.clone();
        self.expected_seq = Some(e.seq + 1);
        self.checked += 1;
        Ok(())
    }

    pub fn finish(self) -> LedgerVerification {
        LedgerVerification {
            ok: true,
            checked: self.checked,
            head_hash: self.expected_prev,
            first_bad_seq: None,
            problem: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::from_millis;

    fn chain(n: i64) -> Vec<LedgerEvent> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let mut e = LedgerEvent {
                    seq,
                    id: EventId::new(),
                    at: from_millis(seq * 1000),
                    actor: "admin".into(),
                    action: "task.create".into(),
                    entity_kind: "task".into(),
                    entity_id: format!("t{seq}"),
                    request_id: Some(format!("r{seq}")),
                    state_digest: sha256_hex(seq.to_string().as_bytes()),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                e.hash = e.compute_hash();
                prev = e.hash.clone();
                e
            })
            .collect()
    }

    fn verify(events: &[LedgerEvent]) -> LedgerVerification {
        let mut v = ChainVerifier::default();
        for e in events {
            if let Err(bad) = v.push(e) {
                return bad;
            }
        }
        v.finish()
    }

    #[test]
    fn intact_chain_verifies() {
        let r = verify(&chain(5));
        assert!(r.ok);
        assert_eq!(r.checked, 5);
    }

    #[test]
    fn tampering_is_found_at_the_first_bad_link() {
        let mut events = chain(5);
        events[2].actor = "mallory".into();
        let r = verify(&events);
        assert!(!r.ok);
        assert_eq!(r.first_bad_seq, Some(3));
        assert_eq!(r.checked, 2);

        let mut events = chain(5);
        events.remove(1);
        assert_eq!(verify(&events).first_bad_seq, Some(3));
    }
}
