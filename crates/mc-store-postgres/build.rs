//! Compiles the PostgreSQL tests only when `MC_PG_BIN` names the server binaries (the test
//! script sets it; see `testing::bin_dir`). Without it a single test reports the skip, or fails
//! when `MC_REQUIRE_POSTGRES=1`.

fn main() {
    println!("cargo::rerun-if-env-changed=MC_PG_BIN");
    println!("cargo::rustc-check-cfg=cfg(mc_pg_bin)");
    if std::env::var_os("MC_PG_BIN").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=mc_pg_bin");
    }
}
