//! Docs and artifacts: the knowledge and work products of a mission (a design note, a runbook, a
//! generated report, a migration script). A doc belongs to a mission and, optionally, to one of its
//! klusters; its text is indexed for search and compared with the mission's other docs before it is
//! written, as a task is compared with live work. Every change makes a new version.

use serde::{Deserialize, Serialize};

use crate::mission::check_title;
use crate::task::check_paths;
use crate::{DocId, Error, KlusterId, MissionId, limits};

/// What a doc is: knowledge (`doc`) or a work product (`artifact`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    Doc,
    Artifact,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Doc => "doc",
            Self::Artifact => "artifact",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "doc" => Some(Self::Doc),
            "artifact" => Some(Self::Artifact),
            _ => None,
        }
    }

    /// Parses a kind, naming `field` in the error.
    pub fn parse_field(field: &str, s: &str) -> Result<Self, Error> {
        Self::parse(s).ok_or_else(|| Error::validation(field, format!("unknown kind `{s}` (one of: doc, artifact)")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Doc {
    pub id: DocId,
    pub mission_id: MissionId,
    /// The workstream it belongs to, if any (a mission-wide doc has none).
    pub kluster_id: Option<KlusterId>,
    pub kind: DocKind,
    pub title: String,
    /// The text (Markdown or plain), at most 256 KiB.
    pub body: String,
    /// Files it is about or produces (globs), compared exactly with other docs' paths.
    pub paths: Vec<String>,
    /// 1 at creation; every update adds one.
    pub version: u64,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl Doc {
    /// The text of a doc that gets embedded and indexed: its title, then its body.
    pub fn embedding_text(&self) -> String {
        crate::task::embedding_text(&self.title, &self.body)
    }
}

/// A checked new doc. The mission is the kluster's when a kluster is named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDoc {
    pub mission_id: Option<MissionId>,
    pub kluster_id: Option<KlusterId>,
    pub kind: DocKind,
    pub title: String,
    pub body: String,
    pub paths: Vec<String>,
}

impl NewDoc {
    /// The doc this makes at version 1, once the store has settled its mission.
    pub fn into_doc(
        self,
        id: DocId,
        mission_id: MissionId,
        created_by: String,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Doc {
        Doc {
            id,
            mission_id,
            kluster_id: self.kluster_id,
            kind: self.kind,
            title: self.title,
            body: self.body,
            paths: self.paths,
            version: 1,
            created_by,
            created_at: now,
            updated_at: now,
        }
    }
}

/// Raw doc fields as they arrive, before checking.
#[derive(Debug, Clone, Default)]
pub struct RawDocFields<'a> {
    pub title: Option<&'a str>,
    pub body: Option<&'a str>,
    pub paths: Option<&'a [String]>,
}

fn check_body(body: &str) -> Result<String, Error> {
    if body.len() > limits::MAX_DOC_BODY_BYTES {
        return Err(Error::validation("body", format!("must be at most {} bytes", limits::MAX_DOC_BODY_BYTES)));
    }
    Ok(body.to_owned())
}

impl NewDoc {
    /// Checks a new doc; it needs a mission or a kluster (or both, which must agree: the store
    /// checks that).
    pub fn parse(
        mission_id: Option<MissionId>,
        kluster_id: Option<KlusterId>,
        kind: DocKind,
        raw: RawDocFields<'_>,
    ) -> Result<Self, Error> {
        if mission_id.is_none() && kluster_id.is_none() {
            return Err(Error::validation("mission_id", "name a mission or a kluster"));
        }
        Ok(Self {
            mission_id,
            kluster_id,
            kind,
            title: check_title("title", raw.title.unwrap_or(""))?,
            body: check_body(raw.body.unwrap_or(""))?,
            paths: check_paths(raw.paths.unwrap_or(&[]))?,
        })
    }
}

/// Changes to a doc; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocPatch {
    pub title: Option<String>,
    pub body: Option<String>,
    pub paths: Option<Vec<String>>,
}

impl DocPatch {
    pub fn parse(raw: RawDocFields<'_>) -> Result<Self, Error> {
        Ok(Self {
            title: raw.title.map(|t| check_title("title", t)).transpose()?,
            body: raw.body.map(check_body).transpose()?,
            paths: raw.paths.map(check_paths).transpose()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Applies the patch to `doc` (the version and times are the store's to set).
    pub fn apply(&self, doc: &mut Doc) {
        if let Some(t) = &self.title {
            doc.title.clone_from(t);
        }
        if let Some(b) = &self.body {
            doc.body.clone_from(b);
        }
        if let Some(p) = &self.paths {
            doc.paths.clone_from(p);
        }
    }
}

/// Applies `patch` to `doc` as its next version at `now`, after checking `if_version`; false
/// (and `doc` unchanged) when the patch is empty, which makes no version.
pub fn next_version(
    doc: &mut Doc,
    patch: &DocPatch,
    if_version: Option<u64>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool, Error> {
    check_version(doc, if_version)?;
    if patch.is_empty() {
        return Ok(false);
    }
    patch.apply(doc);
    doc.version += 1;
    doc.updated_at = now;
    Ok(true)
}

/// Refuses an update made against another version than the current one.
pub fn check_version(doc: &Doc, expected: Option<u64>) -> Result<(), Error> {
    match expected {
        Some(v) if v != doc.version => Err(Error::conflict(
            "version_conflict",
            format!("doc {} is at version {}, not {v}; read it again and reapply the change", doc.id, doc.version),
            serde_json::json!({ "id": doc.id.to_string(), "version": doc.version, "expected": v }),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_doc_needs_a_scope_a_title_and_a_bounded_body() {
        let raw = |title| RawDocFields { title: Some(title), ..Default::default() };
        let e = NewDoc::parse(None, None, DocKind::Doc, raw("Runbook")).expect_err("no scope");
        assert!(e.to_string().starts_with("mission_id:"), "{e}");
        let e = NewDoc::parse(Some(MissionId::new()), None, DocKind::Doc, raw("  ")).expect_err("no title");
        assert!(e.to_string().starts_with("title:"), "{e}");
        let big = "x".repeat(limits::MAX_DOC_BODY_BYTES + 1);
        let e = NewDoc::parse(
            Some(MissionId::new()),
            None,
            DocKind::Artifact,
            RawDocFields { title: Some("Report"), body: Some(&big), paths: None },
        )
        .expect_err("too big");
        assert!(e.to_string().starts_with("body:"), "{e}");
        // a body may be longer than a task's description
        let largest = "x".repeat(limits::MAX_DOC_BODY_BYTES);
        let raw_largest = RawDocFields { title: Some("Report"), body: Some(&largest), paths: None };
        let ok = NewDoc::parse(Some(MissionId::new()), None, DocKind::Artifact, raw_largest).expect("the largest body");
        assert_eq!(ok.body.len(), limits::MAX_DOC_BODY_BYTES);
        let ok = NewDoc::parse(None, Some(KlusterId::new()), DocKind::Artifact, raw(" Report ")).expect("valid");
        assert_eq!((ok.title.as_str(), ok.kind), ("Report", DocKind::Artifact));
        assert_eq!(
            DocKind::parse_field("kind", "memo").expect_err("unknown").to_string(),
            "kind: unknown kind `memo` (one of: doc, artifact)"
        );
    }

    #[test]
    fn a_stale_version_is_a_conflict() {
        let now = chrono::Utc::now();
        let mut doc = Doc {
            id: DocId::new(),
            mission_id: MissionId::new(),
            kluster_id: None,
            kind: DocKind::Doc,
            title: "Runbook".into(),
            body: String::new(),
            paths: vec![],
            version: 2,
            created_by: "admin".into(),
            created_at: now,
            updated_at: now,
        };
        assert!(check_version(&doc, None).is_ok());
        assert!(check_version(&doc, Some(2)).is_ok());
        assert!(matches!(check_version(&doc, Some(1)), Err(Error::Conflict { code: "version_conflict", .. })));
        let later = now + chrono::Duration::seconds(1);
        let patch = DocPatch { body: Some("steps".into()), ..Default::default() };
        assert!(next_version(&mut doc, &patch, Some(1), later).is_err());
        assert!(!next_version(&mut doc, &DocPatch::default(), Some(2), later).expect("empty patch"));
        assert_eq!((doc.version, doc.updated_at), (2, now), "an empty patch makes no version");
        assert!(next_version(&mut doc, &patch, Some(2), later).expect("applied"));
        assert_eq!(
            (doc.title.as_str(), doc.body.as_str(), doc.version, doc.updated_at),
            ("Runbook", "steps", 3, later)
        );
    }
}
