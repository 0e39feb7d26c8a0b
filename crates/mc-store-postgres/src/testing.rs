//! A throwaway PostgreSQL cluster for tests and benchmarks (feature `testing`): `initdb` into a
//! temp dir, a server on a free loopback port with durability off, `CREATE EXTENSION vector` in
//! `template1` so every new database has it, and one fresh database per caller.
//!
//! The binaries come from `MC_PG_BIN` (`scripts/pg.sh` installs PostgreSQL with pgvector and
//! prints the directory). PostgreSQL refuses to run as root, so as root the cluster runs as the
//! `postgres` user. The cluster stops when the `TempCluster` is dropped, and also when the process
//! ends in any way (a watchdog child stops it once the pipe from this process closes), which is
//! what makes the process-wide [`TempCluster::shared`] safe.

use std::io::{self, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::Connection;

/// The environment variable naming the directory of the PostgreSQL binaries.
pub const BIN_ENV: &str = "MC_PG_BIN";
/// Set to `1` (CI does) to make a missing PostgreSQL a failure instead of a skip.
pub const REQUIRE_ENV: &str = "MC_REQUIRE_POSTGRES";

/// The PostgreSQL binaries to test with: `Ok(None)` means skip (none configured and none
/// required); a configured directory without the binaries, or none where one is required, is an
/// error.
pub fn bin_dir() -> Result<Option<PathBuf>, String> {
    let required = std::env::var(REQUIRE_ENV).is_ok_and(|v| v.trim() == "1");
    match std::env::var_os(BIN_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            for tool in ["initdb", "pg_ctl", "postgres"] {
                if !dir.join(tool).is_file() {
                    return Err(format!("{BIN_ENV}={} has no `{tool}`; run scripts/pg.sh", dir.display()));
                }
            }
            Ok(Some(dir))
        }
        None if required => Err(format!(
            "{REQUIRE_ENV}=1 but {BIN_ENV} is not set; run scripts/pg.sh and export {BIN_ENV} to its output"
        )),
        None => Ok(None),
    }
}

/// A running throwaway cluster.
#[derive(Debug)]
pub struct TempCluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
    startup: Duration,
    next_db: AtomicUsize,
    /// Stops the cluster when its stdin closes (this process ended or `stop` ran).
    watchdog: Mutex<Option<Child>>,
    stopped: Mutex<bool>,
    /// Removed last (after the server stopped).
    dir: Option<tempfile::TempDir>,
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|uid| uid.trim() == "0")
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

fn check(status: io::Result<std::process::Output>, what: &str) -> io::Result<()> {
    let out = status?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}

impl TempCluster {
    /// The cluster shared by the whole process, started on first use; `Ok(None)` when PostgreSQL
    /// is not configured and not required (the caller skips).
    pub fn shared() -> Result<Option<&'static TempCluster>, String> {
        static SHARED: OnceLock<Result<Option<TempCluster>, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| match bin_dir()? {
                Some(bin) => TempCluster::start(&bin).map(Some).map_err(|e| format!("cannot start PostgreSQL: {e}")),
                None => Ok(None),
            })
            .as_ref()
            .map(Option::as_ref)
            .map_err(Clone::clone)
    }

    /// Starts a new cluster with the binaries in `bin`.
    pub fn start(bin: &Path) -> io::Result<Self> {
        let t0 = Instant::now();
        let as_postgres = running_as_root();
        let dir = tempfile::Builder::new().prefix("mc-pg-").tempdir()?;
        let data = dir.path().join("data");
        if as_postgres {
            check(Command::new("chown").arg("postgres:").arg(dir.path()).output(), "chown")?;
        }
        let mut cluster = Self {
            bin: bin.to_owned(),
            data,
            port: 0,
            as_postgres,
            startup: Duration::ZERO,
            next_db: AtomicUsize::new(0),
            watchdog: Mutex::new(None),
            stopped: Mutex::new(true),
            dir: Some(dir),
        };
        check(
            cluster
                .tool("initdb")
                .arg("-D")
                .arg(&cluster.data)
                .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"])
                .output(),
            "initdb",
        )?;
        cluster.start_watchdog()?;
        let mut last = None;
        for _ in 0..5 {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start() {
                Ok(()) => {
                    *cluster.stopped.lock().unwrap_or_else(|p| p.into_inner()) = false;
                    last = None;
                    break;
                }
                Err(e) => last = Some(e), // most likely the port was taken meanwhile
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
        cluster.prepare_template()?;
        cluster.startup = t0.elapsed();
        Ok(cluster)
    }

    fn root(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap_or_else(|| Path::new("/nonexistent"))
    }

    /// A command running one of the PostgreSQL binaries (as `postgres` when this process is root).
    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn pg_ctl_start(&self) -> io::Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=400 -c shared_buffers=64MB",
            self.port,
            self.root().display()
        );
        let log = self.root().join("postgres.log");
        let out = self
            .tool("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .stdin(Stdio::null())
            .output();
        check(out, "pg_ctl start").map_err(|e| {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String = tail.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            io::Error::other(format!("{e}; server log: {tail}"))
        })
    }

    /// A child that waits for its stdin to close, then stops the server and removes the files:
    /// the cluster never outlives this process, however it ends. It runs in its own process
    /// group, so a signal to the test's group does not take it down first.
    fn start_watchdog(&self) -> io::Result<()> {
        let mut stop = self.tool("pg_ctl");
        stop.arg("-D").arg(&self.data).args(["-m", "immediate", "-w", "stop"]);
        let mut argv: Vec<std::ffi::OsString> = vec![stop.get_program().to_owned()];
        argv.extend(stop.get_args().map(ToOwned::to_owned));
        let child = Command::new("sh")
            .arg("-c")
            .arg("cat >/dev/null; \"$@\" >/dev/null 2>&1; rm -rf \"$MC_PG_WATCHDOG_ROOT\"")
            .arg("mc-pg-watchdog")
            .args(argv)
            .env("MC_PG_WATCHDOG_ROOT", self.root())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        *self.watchdog.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        Ok(())
    }

    /// Makes `vector` part of every database created from now on.
    fn prepare_template(&self) -> io::Result<()> {
        let url = self.url("template1");
        // its own thread and runtime: this may be called from inside an async test
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                rt.block_on(async {
                    let mut c = sqlx::PgConnection::connect(&url).await.map_err(io::Error::other)?;
                    sqlx::query("CREATE EXTENSION IF NOT EXISTS vector")
                        .execute(&mut c)
                        .await
                        .map_err(io::Error::other)?;
                    c.close().await.map_err(io::Error::other)
                })
            })
            .join()
            .map_err(|_| io::Error::other("preparing the template panicked"))?
        })
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How long `start` took (initdb, server start, template).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The URL of database `db` (as the superuser `postgres`, no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a fresh, empty database (with `vector`) and returns its URL.
    pub async fn create_database(&self) -> Result<String, sqlx::Error> {
        let name = format!("mc_test_{}", self.next_db.fetch_add(1, Ordering::Relaxed));
        let mut c = sqlx::PgConnection::connect(&self.url("postgres")).await?;
        // the name is generated above: a safe identifier
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name} TEMPLATE template1 STRATEGY FILE_COPY")))
            .execute(&mut c)
            .await?;
        c.close().await?;
        Ok(self.url(&name))
    }

    /// Stops the server now (immediate shutdown) and removes its files. Idempotent.
    pub fn stop(&mut self) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        if !*stopped {
            let out = self
                .tool("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .stdin(Stdio::null())
                .output();
            if let Err(e) = check(out, "pg_ctl stop") {
                eprintln!("warning: {e}");
            }
            *stopped = true;
        }
        drop(stopped);
        if let Some(mut w) = self.watchdog.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if let Some(mut stdin) = w.stdin.take() {
                let _ = stdin.flush();
            }
            let _ = w.wait();
        }
        if let Some(dir) = self.dir.take()
            && let Err(e) = dir.close()
            && e.kind() != io::ErrorKind::NotFound
        {
            eprintln!("warning: cannot remove the cluster's files: {e}");
        }
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
