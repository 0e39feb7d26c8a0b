//! Entity ids: UUIDv7 (time ordered) wrapped in one newtype per entity so ids of different kinds
//! cannot be mixed up.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
pub use uuid::Uuid;

use crate::Error;

macro_rules! entity_id {
    ($(#[$meta:meta])* $name:ident, $entity:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// The entity name used in messages ("task", "mission"...).
            pub const ENTITY: &'static str = $entity;

            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses an id, naming `field` in the error.
            pub fn parse_field(s: &str, field: &str) -> Result<Self, Error> {
                Uuid::parse_str(s.trim()).map(Self).map_err(|_| {
                    Error::validation(field, format!("`{s}` is not a valid {} id (a UUID)", $entity))
                })
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::parse_field(s, "id")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

entity_id!(
    /// Id of a mission.
    MissionId, "mission"
);
entity_id!(
    /// Id of a kluster.
    KlusterId, "kluster"
);
entity_id!(
    /// Id of a task.
    TaskId, "task"
);
entity_id!(
    /// Id of a doc or artifact.
    DocId, "doc"
);
entity_id!(
    /// Id of a ledger event.
    EventId, "ledger event"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = TaskId::new();
        let parsed: TaskId = id.to_string().parse().expect("own id parses");
        assert_eq!(id, parsed);
        let err = TaskId::parse_field("nope", "depends_on[0]").expect_err("garbage refused");
        assert_eq!(err.to_string(), "depends_on[0]: `nope` is not a valid task id (a UUID)");
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = MissionId::new();
        let b = MissionId::new();
        assert!(a < b);
    }
}
