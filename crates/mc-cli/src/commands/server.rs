//! `mc server`: wires the control plane to the embedded SQLite store in a data directory (or to
//! PostgreSQL when `MC_DATABASE_URL` is a `postgres://` URL), then serves until Ctrl-C or SIGTERM
//! (graceful: in-flight requests finish). `mc server migrate` applies pending migrations and
//! exits.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use mc_domain::{Clock, SystemClock};
use mc_server::ServerOptions;
use mc_store::Store;
use mc_store_postgres::{PgConfig, PgStore};
use mc_store_sqlite::{SqliteConfig, SqliteStore, Synchronous};
use tracing_subscriber::EnvFilter;

use super::Ctx;
use crate::cli::{ServerArgs, ServerCmd, SqliteSync};
use crate::output;

/// Name of the database file inside the data directory.
pub const DB_FILE: &str = "mc.db";

pub async fn run(ctx: &Ctx, args: ServerArgs) -> anyhow::Result<()> {
    if let Some(ServerCmd::Calibrate) = args.cmd {
        return calibrate(ctx, &data_dir(args.data_dir.as_deref())?).await;
    }
    if let Some(url) = postgres_url(args.database_url.as_deref())? {
        return match args.cmd {
            Some(ServerCmd::Migrate) => migrate_postgres(ctx, &url).await,
            _ => serve_postgres(ctx, args, url).await,
        };
    }
    let data_dir = data_dir(args.data_dir.as_deref())?;
    let db = data_dir.join(DB_FILE);
    match args.cmd {
        Some(ServerCmd::Migrate) => migrate(ctx, db).await,
        _ => serve(ctx, args, data_dir, db).await,
    }
}

/// `mc server calibrate`: the overlap scorer's figures for the configured embedder, fitting and
/// keeping one first when no shipped scorer was fitted for it.
async fn calibrate(ctx: &Ctx, data_dir: &Path) -> anyhow::Result<()> {
    let Some(embedder) = embedder()? else {
        anyhow::bail!("embeddings are off (MC_EMBEDDINGS=off): there is no embedder to calibrate for");
    };
    let (shipped, fitted) = mc_server::overlap::scorer_for(embedder.model_id());
    let prepared = mc_server::overlap::prepared(embedder);
    let id = prepared.model_id().to_owned();
    let (model, calibration, holdout, kept) = if fitted {
        // measured the way the scorer was fitted: in-sample on the calibration pairs, and on the held-out ones
        let (calibration, holdout) = mc_server::calibration::measure(prepared.as_ref(), &shipped)
            .await
            .with_context(|| format!("cannot measure the overlap scorer with {id}"))?;
        (shipped.embedder.clone(), calibration, holdout, None)
    } else {
        let c = mc_server::calibration::run(prepared.as_ref())
            .await
            .with_context(|| format!("cannot calibrate the overlap scorer for {id}"))?;
        let path = mc_server::calibration::keep(data_dir, &c)
            .with_context(|| format!("cannot keep the calibrated scorer in {}", data_dir.display()))?;
        (c.model.embedder.clone(), c.calibration, c.holdout, Some(path))
    };
    if ctx.json() {
        return output::json(&serde_json::json!({
            "embedder": id,
            "scorer": if fitted { "shipped" } else { "calibrated" },
            "scorer_embedder": model,
            "calibration": calibration,
            "holdout": holdout,
            "kept": kept,
        }));
    }
    output::line(format_args!("embedder: {id}"))?;
    match &kept {
        None => output::line(format_args!("scorer: shipped, fitted for {model}"))?,
        Some(path) => output::line(format_args!("scorer: calibrated now, kept in {} for `mc server`", path.display()))?,
    }
    output::line(calibration.report("calibration pairs (fitted on them)"))?;
    output::line(holdout.report("held-out pairs"))?;
    Ok(())
}

fn data_dir(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    match flag.filter(|p| !p.as_os_str().is_empty()) {
        Some(d) => Ok(d.to_owned()),
        None => dirs::data_dir()
            .map(|d| d.join("missioncontrol"))
            .ok_or_else(|| anyhow!("cannot find a data directory for this user; pass --data-dir or set MC_DATA_DIR")),
    }
}

async fn migrate(ctx: &Ctx, db: PathBuf) -> anyhow::Result<()> {
    let shown = db.display().to_string();
    let applied = tokio::task::spawn_blocking(move || mc_store_sqlite::migrate(&db))
        .await
        .context("the migration task panicked")?
        .with_context(|| format!("cannot migrate {shown}"))?;
    if ctx.json() {
        return output::json(&serde_json::json!({ "database": shown, "applied": applied }));
    }
    if applied.is_empty() {
        output::line(format_args!("schema is up to date ({shown})"))?;
    } else {
        let versions: Vec<String> = applied.iter().map(i64::to_string).collect();
        output::line(format_args!("applied migrations {} to {shown}", versions.join(", ")))?;
    }
    Ok(())
}

/// Logs go to stderr, filtered by `MC_LOG`, else `RUST_LOG`, else `info`.
fn init_tracing() {
    let spec = std::env::var("MC_LOG").or_else(|_| std::env::var("RUST_LOG")).ok();
    let filter = match spec.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => EnvFilter::try_new(s).unwrap_or_else(|e| {
            eprintln!("warning: ignoring the log filter `{s}` ({e}); logging at info");
            EnvFilter::new("info")
        }),
        None => EnvFilter::new("info"),
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .try_init();
}

/// The PostgreSQL URL from `--database-url`/`MC_DATABASE_URL`, if one is set; any other scheme
/// is refused rather than silently falling back to the embedded store.
fn postgres_url(flag: Option<&str>) -> anyhow::Result<Option<String>> {
    match flag.map(str::trim).filter(|u| !u.is_empty()) {
        None => Ok(None),
        Some(u) if mc_store_postgres::is_postgres_url(u) => Ok(Some(u.to_owned())),
        Some(_) => Err(anyhow!(
            "MC_DATABASE_URL (--database-url) must be a postgres:// or postgresql:// URL; \
             leave it unset to use the embedded SQLite store in the data directory"
        )),
    }
}

async fn migrate_postgres(ctx: &Ctx, url: &str) -> anyhow::Result<()> {
    let applied = mc_store_postgres::migrate(url).await.context("cannot migrate the PostgreSQL database")?;
    if ctx.json() {
        return output::json(&serde_json::json!({ "database": "postgres", "applied": applied }));
    }
    if applied.is_empty() {
        output::line(format_args!("schema is up to date (PostgreSQL)"))?;
    } else {
        let versions: Vec<String> = applied.iter().map(i64::to_string).collect();
        output::line(format_args!("applied migrations {} to the PostgreSQL database", versions.join(", ")))?;
    }
    Ok(())
}

async fn serve_postgres(ctx: &Ctx, args: ServerArgs, url: String) -> anyhow::Result<()> {
    init_tracing();
    // calibrated scorers are kept in the data directory, if this user has one
    let state_dir = data_dir(args.data_dir.as_deref()).ok();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store =
        PgStore::open(PgConfig::new(url, Arc::clone(&clock))).await.context("cannot open the PostgreSQL store")?;
    let shown = format!("PostgreSQL {}", store.location());
    serve_store(ctx, args, Arc::new(store), clock, shown, state_dir).await
}

async fn serve(ctx: &Ctx, args: ServerArgs, data_dir: PathBuf, db: PathBuf) -> anyhow::Result<()> {
    init_tracing();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = SqliteConfig {
        path: db.clone(),
        synchronous: match args.sqlite_sync {
            SqliteSync::Full => Synchronous::Full,
            SqliteSync::Normal => Synchronous::Normal,
        },
        readers: 4,
        max_batch: 512,
        clock: Arc::clone(&clock),
    };
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(config))
        .await
        .context("opening the store panicked")?
        .with_context(|| format!("cannot open the database {}", db.display()))?;
    serve_store(ctx, args, Arc::new(store), clock, data_dir.display().to_string(), Some(data_dir)).await
}

/// Serves `store` until a shutdown signal; `data` says where the data lives (for the banner).
async fn serve_store(
    ctx: &Ctx,
    args: ServerArgs,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    data: String,
    state_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    if let Some(token) = mc_server::bootstrap_admin_token(store.as_ref(), ctx.global.token.as_deref())
        .await
        .context("cannot store the admin token")?
    {
        eprintln!("generated admin token (shown once, store it): {token}");
    }

    let embedder = embedder()?;
    let opts = ServerOptions {
        listen: args.listen,
        max_body_bytes: args.max_body_bytes,
        reaper_interval: Duration::from_secs(1),
        embedder,
        state_dir,
    };
    let server = mc_server::start(store, clock, opts).await?;
    eprintln!("MissionControl listening on http://{} (data: {data})", server.addr());

    let signal = shutdown_signal().await?;
    tracing::info!(signal, "shutting down: finishing in-flight requests");
    server.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

/// The sentence embedder for search and overlap detection, from the environment:
/// `MC_EMBEDDINGS=off` disables it; `MC_EMBEDDINGS_URL` (an OpenAI-compatible endpoint) wins over
/// `MC_EMBEDDINGS_MODEL_DIR` (an all-MiniLM-L6-v2 directory); the default is the model bundled in
/// this binary.
fn embedder() -> anyhow::Result<Option<Arc<dyn mc_embed::Embedder>>> {
    if std::env::var("MC_EMBEDDINGS").is_ok_and(|v| matches!(v.trim(), "off" | "none" | "0" | "false")) {
        tracing::info!("embeddings are off: search and overlap detection use text signals only");
        return Ok(None);
    }
    let config = mc_embed::EmbedderConfig::from_env().context("bad embeddings configuration")?;
    let embedder = mc_embed::build(&config).context("cannot set up the embedder")?;
    match config {
        mc_embed::EmbedderConfig::Bundled | mc_embed::EmbedderConfig::ModelDir(_) => {
            // the in-process models: which vector unit runs them (MC_EMBEDDINGS_SIMD caps it)
            tracing::info!(model = embedder.model_id(), simd = mc_embed::simd_unit(), "embedder ready")
        }
        _ => tracing::info!(model = embedder.model_id(), "embedder ready"),
    }
    Ok(Some(embedder))
}

/// Waits for Ctrl-C or (on Unix) SIGTERM; returns which one came.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT").context("cannot listen for Ctrl-C"),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("cannot listen for Ctrl-C")?;
        Ok("Ctrl-C")
    }
}
