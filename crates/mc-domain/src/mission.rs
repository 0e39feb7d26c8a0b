//! Missions (bounded objectives) and klusters (workstreams inside one mission).

use serde::{Deserialize, Serialize};

use crate::{Error, KlusterId, MissionId, limits};

/// Lifecycle of a mission or kluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ScopeStatus {
    Active,
    Archived,
}

impl ScopeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "archived" => Some(Self::Archived),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Mission {
    pub id: MissionId,
    pub name: String,
    pub description: String,
    pub status: ScopeStatus,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Kluster {
    pub id: KlusterId,
    pub mission_id: MissionId,
    pub name: String,
    pub description: String,
    pub status: ScopeStatus,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl Kluster {
    /// The text of a kluster that gets embedded and indexed: its name, then its description.
    pub fn embedding_text(&self) -> String {
        crate::task::embedding_text(&self.name, &self.description)
    }
}

/// Checks a name or title: trimmed, not empty, at most `MAX_TITLE_CHARS` characters, no control
/// characters. Returns the trimmed value.
pub fn check_title(field: &str, value: &str) -> Result<String, Error> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Error::validation(field, "must not be empty"));
    }
    if v.chars().count() > limits::MAX_TITLE_CHARS {
        return Err(Error::validation(field, format!("must be at most {} characters", limits::MAX_TITLE_CHARS)));
    }
    if v.chars().any(char::is_control) {
        return Err(Error::validation(field, "must not contain control characters"));
    }
    Ok(v.to_owned())
}

/// Checks a free-text description (may be empty, at most `MAX_DESCRIPTION_BYTES`).
pub fn check_description(field: &str, value: &str) -> Result<String, Error> {
    if value.len() > limits::MAX_DESCRIPTION_BYTES {
        return Err(Error::validation(field, format!("must be at most {} bytes", limits::MAX_DESCRIPTION_BYTES)));
    }
    Ok(value.to_owned())
}

/// Refuses changes to an archived mission or kluster.
pub fn ensure_active(entity: &'static str, id: &str, status: ScopeStatus) -> Result<(), Error> {
    if status == ScopeStatus::Archived {
        return Err(Error::conflict(
            "archived",
            format!("{entity} {id} is archived and cannot be changed"),
            serde_json::json!({ "entity": entity, "id": id }),
        ));
    }
    Ok(())
}
