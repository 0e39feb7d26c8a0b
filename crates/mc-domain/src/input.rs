//! Validated inputs for creating and changing entities. The wire layer parses raw requests into
//! these; the store accepts nothing else.

use crate::mission::{check_description, check_title};
use crate::task::{check_labels, check_paths};
use crate::{Error, KlusterId, MissionId, Priority, TaskId, limits};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMission {
    pub name: String,
    pub description: String,
}

impl NewMission {
    pub fn parse(name: &str, description: Option<&str>) -> Result<Self, Error> {
        Ok(Self {
            name: check_title("name", name)?,
            description: check_description("description", description.unwrap_or(""))?,
        })
    }
}

/// Changes to a mission or kluster; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopePatch {
    pub name: Option<String>,
    pub description: Option<String>,
}

impl ScopePatch {
    pub fn parse(name: Option<&str>, description: Option<&str>) -> Result<Self, Error> {
        Ok(Self {
            name: name.map(|n| check_title("name", n)).transpose()?,
            description: description.map(|d| check_description("description", d)).transpose()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.description.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKluster {
    pub mission_id: MissionId,
    pub name: String,
    pub description: String,
}

impl NewKluster {
    pub fn parse(mission_id: MissionId, name: &str, description: Option<&str>) -> Result<Self, Error> {
        Ok(Self {
            mission_id,
            name: check_title("name", name)?,
            description: check_description("description", description.unwrap_or(""))?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub kluster_id: KlusterId,
    pub title: String,
    pub description: String,
    pub priority: Priority,
    pub labels: Vec<String>,
    pub paths: Vec<String>,
    pub depends_on: Vec<TaskId>,
}

/// Raw task fields as they arrive, before checking.
#[derive(Debug, Clone, Default)]
pub struct RawTaskFields<'a> {
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub priority: Option<i64>,
    pub labels: Option<&'a [String]>,
    pub paths: Option<&'a [String]>,
    pub depends_on: Option<&'a [TaskId]>,
}

fn check_deps(deps: &[TaskId]) -> Result<Vec<TaskId>, Error> {
    if deps.len() > limits::MAX_DEPENDENCIES {
        return Err(Error::validation("depends_on", format!("at most {} dependencies", limits::MAX_DEPENDENCIES)));
    }
    let mut out = deps.to_vec();
    out.sort();
    out.dedup();
    Ok(out)
}

impl NewTask {
    pub fn parse(kluster_id: KlusterId, raw: RawTaskFields<'_>) -> Result<Self, Error> {
        Ok(Self {
            kluster_id,
            title: check_title("title", raw.title.unwrap_or(""))?,
            description: check_description("description", raw.description.unwrap_or(""))?,
            priority: raw.priority.map(Priority::new).transpose()?.unwrap_or_default(),
            labels: check_labels(raw.labels.unwrap_or(&[]))?,
            paths: check_paths(raw.paths.unwrap_or(&[]))?,
            depends_on: check_deps(raw.depends_on.unwrap_or(&[]))?,
        })
    }
}

/// Changes to a task; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    pub labels: Option<Vec<String>>,
    pub paths: Option<Vec<String>>,
    pub depends_on: Option<Vec<TaskId>>,
}

impl TaskPatch {
    pub fn parse(raw: RawTaskFields<'_>) -> Result<Self, Error> {
        Ok(Self {
            title: raw.title.map(|t| check_title("title", t)).transpose()?,
            description: raw.description.map(|d| check_description("description", d)).transpose()?,
            priority: raw.priority.map(Priority::new).transpose()?,
            labels: raw.labels.map(check_labels).transpose()?,
            paths: raw.paths.map(check_paths).transpose()?,
            depends_on: raw.depends_on.map(check_deps).transpose()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_title_is_refused_with_field() {
        let e = NewTask::parse(KlusterId::new(), RawTaskFields { title: Some("  "), ..Default::default() })
            .expect_err("empty");
        assert_eq!(e.to_string(), "title: must not be empty");
        let e = TaskPatch::parse(RawTaskFields { priority: Some(9), ..Default::default() }).expect_err("bad priority");
        assert!(e.to_string().starts_with("priority:"));
        assert!(TaskPatch::parse(RawTaskFields::default()).expect("empty ok").is_empty());
    }
}
