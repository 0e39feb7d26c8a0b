//! Who acts: the authenticated principal (from the bearer token) and, for ownership calls, the
//! agent identity the caller works as. Together they form the `Actor` recorded in the ledger.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Role of a principal. Per-mission roles arrive with governance; today a token carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Contributor,
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Contributor => "contributor",
            Self::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "contributor" => Some(Self::Contributor),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }
}

/// An authenticated identity (human or agent) behind a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// The identity an agent works under: it holds leases. Letters, digits and `._:@-`, 1 to 128
/// characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

impl AgentId {
    pub fn parse(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::validation("agent_id", "must not be empty"));
        }
        if s.chars().count() > 128 {
            return Err(Error::validation("agent_id", "must be at most 128 characters"));
        }
        if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-'))) {
            return Err(Error::validation(
                "agent_id",
                format!("character `{c}` is not allowed (use letters, digits and ._:@-)"),
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AgentId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::parse(&s)
    }
}

impl From<AgentId> for String {
    fn from(a: AgentId) -> String {
        a.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentId({})", self.0)
    }
}

/// Who performs a mutation: the principal, and the agent identity it acts as (if any). Leases are
/// held by the agent identity when there is one, else by the principal's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub principal: Principal,
    pub agent: Option<AgentId>,
}

impl Actor {
    /// The identity that holds leases and is written to the ledger.
    pub fn holder(&self) -> &str {
        match &self.agent {
            Some(a) => a.as_str(),
            None => &self.principal.name,
        }
    }

    /// The ledger's actor string: `principal` or `principal/agent`.
    pub fn ledger_name(&self) -> String {
        match &self.agent {
            Some(a) if a.as_str() != self.principal.name => format!("{}/{}", self.principal.name, a),
            _ => self.principal.name.clone(),
        }
    }

    /// The actor the server itself uses for background work (lease reaper).
    pub fn system() -> Self {
        Self { principal: Principal { name: "system".into(), role: Role::Admin }, agent: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_are_checked() {
        assert!(AgentId::parse("claude-1@host:a.b_c").is_ok());
        let e = AgentId::parse("bad id").expect_err("space refused");
        assert!(e.to_string().contains("` ` is not allowed"), "{e}");
        assert!(AgentId::parse("").is_err());
        assert!(AgentId::parse(&"a".repeat(129)).is_err());
    }
}
