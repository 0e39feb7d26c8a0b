//! The store conformance story on PostgreSQL: one throwaway cluster per test process (started on
//! first use, stopped when the process ends), a fresh database per test.

#[cfg(mc_pg_bin)]
mod with_postgres {
    use std::sync::Arc;

    use mc_domain::ManualClock;
    use mc_store::conformance::Harness;
    use mc_store_postgres::testing::TempCluster;
    use mc_store_postgres::{PgConfig, PgStore};

    async fn make(clock: Arc<ManualClock>) -> Harness {
        let cluster = TempCluster::shared().expect("PostgreSQL for the tests").expect("MC_PG_BIN is set");
        let url = cluster.create_database().await.expect("a fresh database");
        let store = PgStore::open(PgConfig::new(url, clock.clone())).await.expect("open store");
        Harness { store: Arc::new(store), clock, guard: Box::new(()) }
    }

    mc_store::conformance_tests!(make);
}

/// Without `MC_PG_BIN` at build time the story is not compiled: say so, or fail where
/// PostgreSQL is required.
#[cfg(not(mc_pg_bin))]
#[test]
fn conformance_on_postgres_is_skipped_without_mc_pg_bin() {
    match mc_store_postgres::testing::bin_dir() {
        Err(e) => panic!("{e}"),
        Ok(_) => eprintln!("skipped: PostgreSQL conformance (set MC_PG_BIN, e.g. from scripts/pg.sh, and rebuild)"),
    }
}
