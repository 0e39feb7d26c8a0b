//! The fencing tokens of the leases this machine's agents hold, remembered between commands in
//! `<config dir>/missioncontrol/leases.json` (`MC_CONFIG_DIR` overrides the directory) as
//! `{"agents": {"<agent>": {"<task id>": <token>}}}`. Updates take a file lock, then replace the
//! file atomically (temp file + rename), so concurrent `mc` processes neither corrupt it nor lose
//! each other's entries.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use mc_api::Task;
use mc_domain::TaskId;
use serde::{Deserialize, Serialize};

/// Environment variable naming the CLI's configuration directory.
pub const CONFIG_DIR_ENV: &str = "MC_CONFIG_DIR";
const FILE_NAME: &str = "leases.json";
const LOCK_NAME: &str = "leases.lock";

#[derive(Debug, Default, Serialize, Deserialize)]
struct LeaseFile {
    #[serde(default)]
    agents: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Handle on the leases file.
#[derive(Debug, Clone)]
pub struct LeaseBook {
    dir: PathBuf,
}

impl LeaseBook {
    /// The book in `MC_CONFIG_DIR`, else in the user's config directory.
    pub fn from_env() -> anyhow::Result<Self> {
        let dir = match std::env::var_os(CONFIG_DIR_ENV).filter(|v| !v.is_empty()) {
            Some(d) => PathBuf::from(d),
            None => dirs::config_dir()
                .map(|d| d.join("missioncontrol"))
                .ok_or_else(|| anyhow!("cannot find a config directory; set {CONFIG_DIR_ENV}"))?,
        };
        Ok(Self::in_dir(dir))
    }

    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The token remembered for `agent` on `task`.
    pub fn get(&self, agent: &str, task: TaskId) -> anyhow::Result<Option<u64>> {
        let file = self.load()?;
        Ok(file.agents.get(agent).and_then(|m| m.get(&task.to_string())).copied())
    }

    /// Brings the entry of `agent` for `task` in line with the server's answer: remembers the
    /// token while the agent holds the lease, forgets it otherwise.
    pub fn record(&self, agent: &str, task: &Task) -> anyhow::Result<()> {
        let held = task.lease.as_ref().filter(|l| l.holder == agent).map(|l| l.fencing_token);
        self.update(|f| {
            let key = task.id.to_string();
            match held {
                Some(token) => f.agents.entry(agent.to_owned()).or_default().insert(key, token) != Some(token),
                None => {
                    let Some(m) = f.agents.get_mut(agent) else {
                        return false;
                    };
                    let removed = m.remove(&key).is_some();
                    if m.is_empty() {
                        f.agents.remove(agent);
                    }
                    removed
                }
            }
        })
    }

    fn load(&self) -> anyhow::Result<LeaseFile> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a valid leases file (delete it to start afresh)", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LeaseFile::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Read-modify-write under an exclusive lock; `change` says whether it changed anything.
    fn update(&self, change: impl FnOnce(&mut LeaseFile) -> bool) -> anyhow::Result<()> {
        fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        let lock_path = self.dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        lock.lock().with_context(|| format!("cannot lock {}", lock_path.display()))?;
        let mut file = self.load()?;
        if change(&mut file) {
            write_atomically(&self.path(), &serde_json::to_vec_pretty(&file)?)?;
        }
        drop(lock);
        Ok(())
    }
}

/// Writes `bytes` to a temp file next to `path`, syncs it, then renames it over `path`.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use mc_domain::{KlusterId, Lease, MissionId, Priority, TaskStatus};

    use super::*;

    fn task(holder: Option<&str>, token: u64) -> Task {
        let now = Utc::now();
        Task {
            id: TaskId::new(),
            mission_id: MissionId::new(),
            kluster_id: KlusterId::new(),
            title: "t".into(),
            description: String::new(),
            status: if holder.is_some() { TaskStatus::Claimed } else { TaskStatus::Open },
            priority: Priority::DEFAULT,
            labels: vec![],
            paths: vec![],
            depends_on: vec![],
            lease: holder.map(|h| Lease { holder: h.into(), claimed_at: now, expires_at: now, fencing_token: token }),
            fencing_token: token,
            created_by: "admin".into(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn tokens_are_remembered_per_agent_and_forgotten_when_the_lease_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let book = LeaseBook::in_dir(dir.path().join("nested"));
        let mut t = task(Some("agent-1"), 3);
        assert_eq!(book.get("agent-1", t.id).expect("read"), None, "no file yet");

        book.record("agent-1", &t).expect("record");
        assert_eq!(book.get("agent-1", t.id).expect("read"), Some(3));
        assert_eq!(book.get("agent-2", t.id).expect("read"), None, "other agents know nothing");

        // Another agent seeing the task held by agent-1 records nothing for itself.
        book.record("agent-2", &t).expect("record");
        assert_eq!(book.get("agent-2", t.id).expect("read"), None);

        // Released: the server's answer has no lease, so the entry goes.
        t.lease = None;
        book.record("agent-1", &t).expect("record");
        assert_eq!(book.get("agent-1", t.id).expect("read"), None);
        let raw = fs::read_to_string(book.path()).expect("file");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&raw).expect("json"), serde_json::json!({"agents": {}}));

        // A newer tenure replaces the token.
        let mut u = task(Some("agent-1"), 7);
        book.record("agent-1", &u).expect("record");
        u.lease.as_mut().expect("lease").fencing_token = 9;
        book.record("agent-1", &u).expect("record");
        assert_eq!(book.get("agent-1", u.id).expect("read"), Some(9));
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("nested"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_corrupt_file_is_reported_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let book = LeaseBook::in_dir(dir.path());
        fs::write(book.path(), "{not json").expect("write");
        let t = task(Some("a"), 1);
        let e = book.get("a", t.id).expect_err("corrupt");
        assert!(format!("{e:#}").contains("is not a valid leases file"), "{e:#}");
        assert!(book.record("a", &t).is_err());
        assert_eq!(fs::read_to_string(book.path()).expect("file"), "{not json");
    }
}
