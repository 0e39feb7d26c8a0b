//! The store conformance story on SQLite (a fresh database in a temp dir per test).

use std::sync::Arc;

use mc_domain::ManualClock;
use mc_store::conformance::Harness;
use mc_store_sqlite::{SqliteConfig, SqliteStore};

async fn make(clock: Arc<ManualClock>) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(SqliteConfig::new(dir.path().join("mc.db"), clock.clone())).expect("open store");
    Harness { store: Arc::new(store), clock, guard: Box::new(dir) }
}

mc_store::conformance_tests!(make);
