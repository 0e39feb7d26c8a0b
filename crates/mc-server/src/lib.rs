//! The MissionControl control plane: an axum HTTP API over a `Store`, with bearer auth,
//! request ids, idempotent creates, OpenAPI docs and the lease reaper. Takes typed options; the
//! `mc` binary parses flags and picks the backend.

pub mod auth;
pub mod calibration;
pub mod error;
pub mod extract;
mod mcp;
pub mod overlap;
pub mod reaper;
pub mod routes;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mc_api::{API_PREFIX, REPLAYED_HEADER};
use mc_domain::Clock;
use mc_store::{Created, Store};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

pub use auth::bootstrap_admin_token;
use error::ApiError;

/// Version reported by `/healthz` and compared by `mc system doctor`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to listen on, e.g. `127.0.0.1:8008` (port 0 picks a free one).
    pub listen: String,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// How often the lease reaper runs.
    pub reaper_interval: Duration,
    /// The sentence embedder for search and overlap detection; without one, both use text only.
    pub embedder: Option<Arc<dyn mc_embed::Embedder>>,
    /// Where the server keeps what it can rebuild: the overlap scorers it calibrated for embedders
    /// that no shipped scorer was fitted for. Without it, each start calibrates again.
    pub state_dir: Option<std::path::PathBuf>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8008".into(),
            max_body_bytes: 1024 * 1024,
            reaper_interval: Duration::from_secs(1),
            embedder: None,
            state_dir: None,
        }
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub tokens: Arc<auth::TokenCache>,
    pub semantic: Option<overlap::Semantic>,
    pub admissions: Arc<overlap::Admissions>,
    /// MCP over HTTP (`/mcp`, `/mcp/call`); set by `start`, which knows the loopback address.
    pub mcp: Option<Arc<mc_mcp::HttpMcp>>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock, tokens: Arc::default(), semantic: None, admissions: Arc::default(), mcp: None }
    }

    pub fn with_embedder(mut self, embedder: Option<Arc<dyn mc_embed::Embedder>>) -> Self {
        self.semantic = embedder.map(overlap::Semantic::new);
        self
    }

    pub fn with_mcp(mut self, mcp: Arc<mc_mcp::HttpMcp>) -> Self {
        self.mcp = Some(mcp);
        self
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "MissionControl API", description = "Control plane for AI agents: missions, klusters, tasks with leases, and the ledger."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "missions", description = "Bounded objectives"),
        (name = "klusters", description = "Workstreams inside a mission"),
        (name = "tasks", description = "Units of work and their dependency graph"),
        (name = "docs", description = "Docs and artifacts: knowledge and work products, versioned"),
        (name = "ownership", description = "Leases with fencing tokens"),
        (name = "ledger", description = "Hash-chained record of every mutation"),
        (name = "search", description = "Hybrid search and overlap detection"),
        (name = "system", description = "Health and identity"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// A 201 response for a creating call; a replay of an idempotent create is marked.
pub(crate) fn created<T: Serialize>(c: Created<T>) -> Response {
    let mut resp = (StatusCode::CREATED, Json(c.value)).into_response();
    if c.replayed {
        resp.headers_mut().insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    resp
}

async fn route_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "route_not_found", "no such route; see /api/docs", serde_json::Value::Null)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept that method; see /api/docs",
        serde_json::Value::Null,
    )
}

/// The whole HTTP application.
pub fn app(state: AppState, max_body_bytes: usize) -> Router {
    let protected = OpenApiRouter::new()
        .merge(routes::missions::router())
        .merge(routes::klusters::router())
        .merge(routes::docs::router())
        .merge(routes::tasks::router())
        .merge(routes::ledger::router())
        .merge(routes::search::router())
        .merge(routes::system::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(API_PREFIX, protected)
        .merge(routes::system::probes())
        .split_for_parts();
    openapi.info.version = VERSION.to_owned();
    let mcp = mcp::router(&state);
    router
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", openapi))
        .merge(mcp)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// A server started by `start`.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    reaper: JoinHandle<()>,
    embedder: Option<JoinHandle<()>>,
    calibration: Option<JoinHandle<()>>,
    semantic: Option<overlap::Semantic>,
}

impl RunningServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until the overlap scorer is no longer the interim one (an embedder without a shipped
    /// scorer is calibrated in the background at start); false if that takes longer than `limit`.
    pub async fn scorer_ready(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.semantic.as_ref().is_some_and(overlap::Semantic::needs_calibration) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Stops accepting connections, lets in-flight requests finish, stops the workers.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Waits until the server stops (after `shutdown` or a fatal error).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.http.await.context("http server task panicked")?.context("http server failed")?;
        self.reaper.await.context("lease reaper task panicked")?;
        if let Some(e) = self.embedder {
            e.await.context("embedding worker task panicked")?;
        }
        if let Some(c) = self.calibration {
            c.await.context("scorer calibration task panicked")?;
        }
        Ok(())
    }
}

/// Binds, then serves the API and runs the background workers until `shutdown`.
pub async fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>, opts: ServerOptions) -> anyhow::Result<RunningServer> {
    let listener = tokio::net::TcpListener::bind(&opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let mcp = mc_mcp::HttpMcp::new(&mcp::loopback_url(addr), opts.max_body_bytes)
        .map_err(|e| anyhow::anyhow!("cannot set up MCP over HTTP: {e}"))?;
    let state =
        AppState::new(Arc::clone(&store), clock).with_embedder(opts.embedder.clone()).with_mcp(Arc::clone(&mcp));
    // the worker embeds exactly as the request path does (same preparation, same model id)
    let worker_embedder = state.semantic.as_ref().map(|s| Arc::clone(&s.embedder));
    let semantic = state.semantic.clone();
    let (tx, rx) = watch::channel(false);
    let mut http_rx = rx.clone();
    let app = app(state, opts.max_body_bytes);
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_rx.changed().await;
                // Open MCP streams would otherwise hold the graceful shutdown forever.
                mcp.shutdown();
            })
            .await
    });
    let embedder = worker_embedder
        .map(|e| tokio::spawn(overlap::run_embedder(Arc::clone(&store), e, Duration::from_millis(500), rx.clone())));
    let calibration = semantic.clone().filter(overlap::Semantic::needs_calibration).and_then(|s| {
        let kept = opts.state_dir.as_deref().and_then(|d| calibration::load_kept(d, s.embedder.model_id()));
        match kept {
            Some(model) => {
                tracing::info!(model = %s.embedder.model_id(), "using the overlap scorer calibrated for this embedder before");
                s.install(Arc::new(model));
                None
            }
            None => Some(tokio::spawn(calibration::in_background(s, opts.state_dir.clone(), rx.clone()))),
        }
    });
    let reaper = tokio::spawn(reaper::run(store, opts.reaper_interval, rx));
    Ok(RunningServer { addr, shutdown: tx, http, reaper, embedder, calibration, semantic })
}
