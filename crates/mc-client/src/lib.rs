//! Typed async HTTP client of the MissionControl control plane: one method per route, request and
//! response types from `mc-api`, errors parsed from the server's envelope. The CLI, the MCP bridge
//! and the mesh daemon reach the control plane only through this crate.

mod error;

use std::fmt;
use std::time::Duration;

use mc_api::{
    AGENT_HEADER, ClaimNextResponse, ClaimTask, CreateDoc, CreateKluster, CreateMission, CreateTask, CreatedDoc,
    CreatedTask, Doc, DocListQuery, DocSearchQuery, DocSearchResponse, FencedRequest, Health, HeartbeatTask, Kluster,
    KlusterSearchQuery, KlusterSearchResponse, LedgerEvent, LedgerQuery, LedgerVerification, Mission, OverlapDraft,
    OverlapResponse, Page, Readiness, ReadyQuery, ScopeListQuery, SearchQuery, SearchResponse, SystemInfo, Task,
    TaskListQuery, TransitionTask, UpdateDoc, UpdateScope, UpdateTask, WhoAmI,
};
use mc_domain::{AgentId, DocId, KlusterId, MissionId, TaskId};
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use error::{ClientError, OVERLAP_DETECTED};

/// How long to wait for a TCP (and TLS) connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Header carrying the idempotency key of a creating call.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// Pause before the single retry of a request that is safe to repeat.
const RETRY_DELAY: Duration = Duration::from_millis(300);

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A handle on one control plane. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Base URL without a trailing slash.
    base: String,
    token: Option<String>,
    agent: Option<String>,
    /// Fixed key for creating calls; when `None` each create gets a fresh UUIDv4.
    idempotency_key: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("agent", &self.agent)
            .field("idempotency_key", &self.idempotency_key)
            .finish()
    }
}

/// One request, before it is sent.
struct Call<'a> {
    method: Method,
    path: &'a str,
    query: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    auth: bool,
    idempotency_key: Option<String>,
    /// Whether repeating the request is harmless (reads, and creates carrying a key).
    retry: bool,
}

impl<'a> Call<'a> {
    fn new(method: Method, path: &'a str) -> Self {
        let retry = method == Method::GET;
        Self { method, path, query: Vec::new(), body: None, auth: true, idempotency_key: None, retry }
    }

    fn query(mut self, q: &impl Serialize) -> Result<Self> {
        self.query = query_pairs(q)?;
        Ok(self)
    }

    fn json(mut self, body: &impl Serialize) -> Result<Self> {
        let bytes =
            serde_json::to_vec(body).map_err(|e| ClientError::Decode(format!("cannot encode the request: {e}")))?;
        self.body = Some(bytes);
        Ok(self)
    }

    fn no_auth(mut self) -> Self {
        self.auth = false;
        self
    }

    fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }

    /// Marks a request that changes nothing (a POST carrying a query) as safe to repeat.
    fn read_only(mut self) -> Self {
        self.retry = true;
        self
    }
}

impl Client {
    /// A client of the control plane at `base_url` (e.g. `http://127.0.0.1:8008`; a trailing
    /// slash is fine). `token` is sent as `Authorization: Bearer`, `agent` as `x-mc-agent`.
    pub fn new(base_url: &str, token: Option<String>, agent: Option<String>) -> Result<Self> {
        let trimmed = base_url.trim();
        let url = Url::parse(trimmed).map_err(|e| {
            ClientError::Config(format!("invalid base URL `{trimmed}`: {e} (expected e.g. http://127.0.0.1:8008)"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!("invalid base URL `{trimmed}`: the scheme must be http or https")));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ClientError::Config(format!(
                "invalid base URL `{trimmed}`: it must not carry a query or fragment"
            )));
        }
        let base = url.as_str().trim_end_matches('/').to_owned();
        let token = check_token(token)?;
        let agent = check_agent(agent)?;

        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("mc/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http, base, token, agent, idempotency_key: None })
    }

    /// The same control plane and connection pool, acting with another token and agent identity
    /// (checked as in [`Client::new`]). The server's MCP endpoint uses it to forward each caller's
    /// own credentials without building a client per request.
    pub fn with_identity(&self, token: Option<String>, agent: Option<String>) -> Result<Self> {
        Ok(Self { token: check_token(token)?, agent: check_agent(agent)?, ..self.clone() })
    }

    /// Uses `key` as the `Idempotency-Key` of creating calls instead of a fresh UUIDv4 per call,
    /// so that repeating a whole command (not just a request) returns the first result.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The agent identity sent with every request, if any.
    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// Whether a bearer token is configured.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    // ---- plumbing ----

    async fn execute(&self, call: &Call<'_>) -> Result<reqwest::Response> {
        let mut url = Url::parse(&format!("{}{}", self.base, call.path))
            .map_err(|e| ClientError::Config(format!("invalid request URL: {e}")))?;
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        let attempts = if call.retry { 2 } else { 1 };
        let mut attempt = 1;
        loop {
            let mut rb = self.http.request(call.method.clone(), url.clone());
            if call.auth {
                if let Some(t) = &self.token {
                    rb = rb.bearer_auth(t);
                }
                if let Some(a) = &self.agent {
                    rb = rb.header(AGENT_HEADER, a);
                }
            }
            if let Some(k) = &call.idempotency_key {
                rb = rb.header(IDEMPOTENCY_HEADER, k);
            }
            if let Some(b) = &call.body {
                rb = rb.header(CONTENT_TYPE, "application/json").body(b.clone());
            }
            match rb.send().await {
                // Retried: a connection cut mid-request. Not retried: a refused connection (nobody
                // listens), a timeout (the server is stuck; waiting twice as long helps no one).
                Err(e) if attempt < attempts && !e.is_connect() && !e.is_timeout() && !e.is_builder() => {}
                Err(e) => {
                    return Err(ClientError::transport(&e, &self.base, REQUEST_TIMEOUT, CONNECT_TIMEOUT));
                }
                Ok(resp) if attempt < attempts && resp.status() == StatusCode::SERVICE_UNAVAILABLE => {}
                Ok(resp) => return Ok(resp),
            }
            attempt += 1;
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }

    async fn send<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T> {
        let resp = self.execute(&call).await?;
        let (status, request_id, body) = self.read(resp).await?;
        if !status.is_success() {
            return Err(ClientError::from_response(status.as_u16(), request_id, &body));
        }
        decode(&body)
    }

    async fn read(&self, resp: reqwest::Response) -> Result<(StatusCode, Option<String>, Vec<u8>)> {
        let status = resp.status();
        let request_id = resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body =
            resp.bytes().await.map_err(|e| ClientError::transport(&e, &self.base, REQUEST_TIMEOUT, CONNECT_TIMEOUT))?;
        Ok((status, request_id, body.to_vec()))
    }

    /// A creating call: carries an idempotency key, so it may be retried safely.
    fn create_call<'a>(&self, path: &'a str, body: &impl Serialize) -> Result<Call<'a>> {
        let mut call = Call::new(Method::POST, path).json(body)?;
        call.idempotency_key = Some(self.idempotency_key.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()));
        call.retry = true;
        Ok(call)
    }

    // ---- system ----

    /// `GET /healthz`: liveness and server version (no auth).
    pub async fn health(&self) -> Result<Health> {
        self.send(Call::new(Method::GET, "/healthz").no_auth()).await
    }

    /// `GET /readyz`: storage health (no auth). A 503 still carries a `Readiness` body, returned
    /// here with `storage.ok == false`.
    pub async fn readiness(&self) -> Result<Readiness> {
        let resp = self.execute(&Call::new(Method::GET, "/readyz").no_auth().no_retry()).await?;
        let (status, request_id, body) = self.read(resp).await?;
        if status.is_success() {
            return decode(&body);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE
            && let Ok(r) = serde_json::from_slice::<Readiness>(&body)
        {
            return Ok(r);
        }
        Err(ClientError::from_response(status.as_u16(), request_id, &body))
    }

    /// `GET /api/v1/system/info`: version, server time, storage.
    pub async fn system_info(&self) -> Result<SystemInfo> {
        self.send(Call::new(Method::GET, "/api/v1/system/info")).await
    }

    /// `GET /api/v1/whoami`: the principal behind the token and the agent identity.
    pub async fn whoami(&self) -> Result<WhoAmI> {
        self.send(Call::new(Method::GET, "/api/v1/whoami")).await
    }

    // ---- missions ----

    pub async fn create_mission(&self, body: &CreateMission) -> Result<Mission> {
        self.send(self.create_call("/api/v1/missions", body)?).await
    }

    pub async fn list_missions(&self, q: &ScopeListQuery) -> Result<Page<Mission>> {
        self.send(Call::new(Method::GET, "/api/v1/missions").query(q)?).await
    }

    pub async fn get_mission(&self, id: MissionId) -> Result<Mission> {
        self.send(Call::new(Method::GET, &format!("/api/v1/missions/{id}"))).await
    }

    pub async fn update_mission(&self, id: MissionId, body: &UpdateScope) -> Result<Mission> {
        self.send(Call::new(Method::PATCH, &format!("/api/v1/missions/{id}")).json(body)?).await
    }

    pub async fn archive_mission(&self, id: MissionId) -> Result<Mission> {
        self.send(Call::new(Method::POST, &format!("/api/v1/missions/{id}/archive"))).await
    }

    // ---- klusters ----

    pub async fn create_kluster(&self, body: &CreateKluster) -> Result<Kluster> {
        self.send(self.create_call("/api/v1/klusters", body)?).await
    }

    pub async fn list_klusters(&self, q: &ScopeListQuery) -> Result<Page<Kluster>> {
        self.send(Call::new(Method::GET, "/api/v1/klusters").query(q)?).await
    }

    pub async fn get_kluster(&self, id: KlusterId) -> Result<Kluster> {
        self.send(Call::new(Method::GET, &format!("/api/v1/klusters/{id}"))).await
    }

    pub async fn update_kluster(&self, id: KlusterId, body: &UpdateScope) -> Result<Kluster> {
        self.send(Call::new(Method::PATCH, &format!("/api/v1/klusters/{id}")).json(body)?).await
    }

    pub async fn archive_kluster(&self, id: KlusterId) -> Result<Kluster> {
        self.send(Call::new(Method::POST, &format!("/api/v1/klusters/{id}/archive"))).await
    }

    /// `POST /api/v1/klusters/{id}/claim-next`: claims the most urgent ready task, if any.
    pub async fn claim_next(&self, kluster: KlusterId, body: &ClaimTask) -> Result<ClaimNextResponse> {
        self.send(Call::new(Method::POST, &format!("/api/v1/klusters/{kluster}/claim-next")).json(body)?).await
    }

    // ---- tasks ----

    /// `POST /api/v1/tasks`: the created task with the overlap found before it was created. A
    /// strong duplicate refuses the create unless `acknowledge_overlap` is set: an API error
    /// `overlap_detected` (HTTP 409) whose details carry the suggestions (see
    /// [`ClientError::overlap_suggestions`]).
    pub async fn create_task(&self, body: &CreateTask) -> Result<CreatedTask> {
        self.send(self.create_call("/api/v1/tasks", body)?).await
    }

    pub async fn list_tasks(&self, q: &TaskListQuery) -> Result<Page<Task>> {
        self.send(Call::new(Method::GET, "/api/v1/tasks").query(q)?).await
    }

    /// Open tasks whose dependencies are all done, most urgent first.
    pub async fn ready_tasks(&self, q: &ReadyQuery) -> Result<Page<Task>> {
        self.send(Call::new(Method::GET, "/api/v1/tasks/ready").query(q)?).await
    }

    pub async fn get_task(&self, id: TaskId) -> Result<Task> {
        self.send(Call::new(Method::GET, &format!("/api/v1/tasks/{id}"))).await
    }

    pub async fn update_task(&self, id: TaskId, body: &UpdateTask) -> Result<Task> {
        self.send(Call::new(Method::PATCH, &format!("/api/v1/tasks/{id}")).json(body)?).await
    }

    pub async fn transition_task(&self, id: TaskId, body: &TransitionTask) -> Result<Task> {
        self.send(Call::new(Method::POST, &format!("/api/v1/tasks/{id}/transition")).json(body)?).await
    }

    pub async fn claim_task(&self, id: TaskId, body: &ClaimTask) -> Result<Task> {
        self.send(Call::new(Method::POST, &format!("/api/v1/tasks/{id}/claim")).json(body)?).await
    }

    pub async fn heartbeat_task(&self, id: TaskId, body: &HeartbeatTask) -> Result<Task> {
        self.send(Call::new(Method::POST, &format!("/api/v1/tasks/{id}/heartbeat")).json(body)?).await
    }

    pub async fn release_task(&self, id: TaskId, body: &FencedRequest) -> Result<Task> {
        self.send(Call::new(Method::POST, &format!("/api/v1/tasks/{id}/release")).json(body)?).await
    }

    pub async fn complete_task(&self, id: TaskId, body: &FencedRequest) -> Result<Task> {
        self.send(Call::new(Method::POST, &format!("/api/v1/tasks/{id}/complete")).json(body)?).await
    }

    // ---- search and overlap ----

    /// `GET /api/v1/search`: hybrid (full-text and semantic) search over tasks, each hit with why
    /// it matched; `warnings` say when only full-text results could be given.
    pub async fn search(&self, q: &SearchQuery) -> Result<SearchResponse> {
        self.send(Call::new(Method::GET, "/api/v1/search").query(q)?).await
    }

    /// `GET /api/v1/search/klusters`: hybrid search over the active klusters.
    pub async fn search_klusters(&self, q: &KlusterSearchQuery) -> Result<KlusterSearchResponse> {
        self.send(Call::new(Method::GET, "/api/v1/search/klusters").query(q)?).await
    }

    /// `GET /api/v1/search/docs`: hybrid search over docs and artifacts.
    pub async fn search_docs(&self, q: &DocSearchQuery) -> Result<DocSearchResponse> {
        self.send(Call::new(Method::GET, "/api/v1/search/docs").query(q)?).await
    }

    /// `POST /api/v1/docs`: creates a doc or artifact after an overlap check against its mission's docs.
    pub async fn create_doc(&self, body: &CreateDoc) -> Result<CreatedDoc> {
        self.send(self.create_call("/api/v1/docs", body)?).await
    }

    pub async fn list_docs(&self, q: &DocListQuery) -> Result<Page<Doc>> {
        self.send(Call::new(Method::GET, "/api/v1/docs").query(q)?).await
    }

    pub async fn get_doc(&self, id: DocId) -> Result<Doc> {
        self.send(Call::new(Method::GET, &format!("/api/v1/docs/{id}"))).await
    }

    /// `PATCH /api/v1/docs/{id}`: the doc's next version.
    pub async fn update_doc(&self, id: DocId, body: &UpdateDoc) -> Result<Doc> {
        self.send(Call::new(Method::PATCH, &format!("/api/v1/docs/{id}")).json(body)?).await
    }

    /// `POST /api/v1/overlap`: the existing work a draft task overlaps; creates nothing.
    pub async fn overlap_draft(&self, body: &OverlapDraft) -> Result<OverlapResponse> {
        self.send(Call::new(Method::POST, "/api/v1/overlap").json(body)?.read_only()).await
    }

    /// `GET /api/v1/tasks/{id}/overlap`: the other live work of its mission an existing task overlaps.
    pub async fn task_overlap(&self, id: TaskId) -> Result<OverlapResponse> {
        self.send(Call::new(Method::GET, &format!("/api/v1/tasks/{id}/overlap"))).await
    }

    // ---- ledger ----

    /// Ledger events in sequence order; `next_cursor` is the `after_seq` of the next page.
    pub async fn list_ledger(&self, q: &LedgerQuery) -> Result<Page<LedgerEvent>> {
        self.send(Call::new(Method::GET, "/api/v1/ledger").query(q)?).await
    }

    /// Walks the whole hash chain on the server and reports the first bad link.
    pub async fn verify_ledger(&self) -> Result<LedgerVerification> {
        self.send(Call::new(Method::GET, "/api/v1/ledger/verify")).await
    }
}

/// A bearer token as sent: trimmed, blank meaning none, refused if it cannot be a header value.
fn check_token(token: Option<String>) -> Result<Option<String>> {
    let token = token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    if let Some(t) = &token
        && HeaderValue::from_str(&format!("Bearer {t}")).is_err()
    {
        return Err(ClientError::Config("the token contains characters that cannot be sent in an HTTP header".into()));
    }
    Ok(token)
}

/// An agent identity as sent: trimmed, blank meaning none, checked against the identity rules.
fn check_agent(agent: Option<String>) -> Result<Option<String>> {
    match agent.map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()) {
        Some(a) => Ok(Some(
            AgentId::parse(&a).map_err(|e| ClientError::Config(format!("invalid agent identity: {e}")))?.to_string(),
        )),
        None => Ok(None),
    }
}

/// Parses a success body, naming the field at fault when it does not match the contract.
fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| ClientError::Decode(error::one_line(&e.to_string())))
}

/// Flattens a query struct into `key=value` pairs, leaving out absent (`None`) fields.
fn query_pairs(q: &impl Serialize) -> Result<Vec<(String, String)>> {
    let value = serde_json::to_value(q).map_err(|e| ClientError::Decode(format!("cannot encode the query: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(ClientError::Decode("a query must be a struct".into()));
    };
    let mut pairs = Vec::with_capacity(map.len());
    for (k, v) in map {
        let v = match v {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(ClientError::Decode(format!("query field `{k}` is not a scalar: {other}")));
            }
        };
        pairs.push((k, v));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::thread;

    use super::*;

    #[test]
    fn query_pairs_skip_absent_fields_and_stringify_scalars() {
        let kluster = KlusterId::new();
        let q = TaskListQuery {
            kluster_id: Some(kluster),
            status: Some("open,claimed".into()),
            limit: Some(10),
            ..Default::default()
        };
        let mut pairs = query_pairs(&q).expect("query encodes");
        pairs.sort();
        assert_eq!(
            pairs,
            vec![
                ("kluster_id".to_owned(), kluster.to_string()),
                ("limit".to_owned(), "10".to_owned()),
                ("status".to_owned(), "open,claimed".to_owned()),
            ]
        );
        let q = ScopeListQuery { include_archived: Some(true), ..Default::default() };
        assert_eq!(query_pairs(&q).expect("encodes"), vec![("include_archived".to_owned(), "true".to_owned())]);
        assert!(query_pairs(&LedgerQuery::default()).expect("encodes").is_empty());
        let q = SearchQuery { q: "helm chart".into(), label: Some("ops,infra".into()), ..Default::default() };
        let mut pairs = query_pairs(&q).expect("encodes");
        pairs.sort();
        assert_eq!(
            pairs,
            vec![("label".to_owned(), "ops,infra".to_owned()), ("q".to_owned(), "helm chart".to_owned())]
        );
    }

    #[test]
    fn base_urls_are_checked_and_trailing_slashes_tolerated() {
        let c = Client::new("http://127.0.0.1:8008/", None, None).expect("valid");
        assert_eq!(c.base_url(), "http://127.0.0.1:8008");
        let c = Client::new(" https://mc.example.com/prefix/ ", None, None).expect("valid");
        assert_eq!(c.base_url(), "https://mc.example.com/prefix");
        for bad in ["", "127.0.0.1:8008", "ftp://host", "http://host/?a=b", "not a url"] {
            let e = Client::new(bad, None, None).expect_err(bad);
            assert!(matches!(e, ClientError::Config(_)), "{bad}: {e:?}");
        }
    }

    #[test]
    fn agent_and_token_are_checked_and_token_never_debug_printed() {
        let e = Client::new("http://h", None, Some("bad agent".into())).expect_err("space refused");
        assert!(e.to_string().starts_with("invalid agent identity: agent_id:"), "{e}");
        assert!(Client::new("http://h", Some("line\nbreak".into()), None).is_err());
        let c = Client::new("http://h", Some("  ".into()), Some(" ".into())).expect("blank means none");
        assert!(!c.has_token());
        assert_eq!(c.agent(), None);
        let c = Client::new("http://h", Some("s3cret-token".into()), Some("agent-1".into())).expect("valid");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
    }

    fn free_port() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    #[tokio::test]
    async fn connection_refused_is_a_transport_error_with_a_hint() {
        let base = format!("http://127.0.0.1:{}", free_port());
        let c = Client::new(&base, Some("t".into()), None).expect("client");
        let e = c.health().await.expect_err("nobody listens");
        let ClientError::Transport(msg) = &e else { panic!("expected a transport error, got {e:?}") };
        assert!(msg.starts_with(&format!("cannot connect to {base} (")), "{msg}");
        assert!(msg.ends_with(&format!("is `mc server` running at {base}?")), "{msg}");
        assert!(!msg.contains('\n'));
    }

    /// Reads one HTTP request; returns its head (request line and headers, lower-cased names).
    fn read_request(stream: &TcpStream) -> String {
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        let mut content_length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).expect("read") == 0 || line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().expect("length");
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body).expect("body");
        head
    }

    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|l| l.strip_prefix(&format!("{name}:"))).map(str::trim)
    }

    /// A server that drops the first `drops` connections after reading the request, then answers
    /// `response`. Returns its address and a handle yielding the request heads it saw.
    fn flaky_server(drops: usize, response: String) -> (String, thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = format!("http://{}", listener.local_addr().expect("addr"));
        let handle = thread::spawn(move || {
            let mut heads = Vec::new();
            for (i, stream) in listener.incoming().enumerate() {
                let mut stream = stream.expect("accept");
                heads.push(read_request(&stream));
                if i < drops {
                    drop(stream);
                    continue;
                }
                stream.write_all(response.as_bytes()).expect("write");
                break;
            }
            heads
        });
        (addr, handle)
    }

    #[tokio::test]
    async fn a_create_cut_off_mid_request_is_retried_with_the_same_idempotency_key() {
        let now = chrono::Utc::now();
        let mission = Mission {
            id: MissionId::new(),
            name: "m".into(),
            description: String::new(),
            status: mc_domain::ScopeStatus::Active,
            created_at: now,
            updated_at: now,
        };
        let body = serde_json::to_string(&mission).expect("json");
        let response = format!(
            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let (addr, server) = flaky_server(1, response);
        let c = Client::new(&addr, Some("tok".into()), Some("agent-7".into())).expect("client");
        let got = c.create_mission(&CreateMission { name: "m".into(), description: None }).await.expect("retried");
        assert_eq!(got, mission);

        let heads = server.join().expect("server thread");
        assert_eq!(heads.len(), 2, "one retry");
        let keys: Vec<_> = heads.iter().map(|h| header(h, IDEMPOTENCY_HEADER).expect("key sent")).collect();
        assert_eq!(keys[0], keys[1], "the retry reuses the key");
        assert!(uuid::Uuid::parse_str(keys[0]).is_ok(), "{}", keys[0]);
        for h in &heads {
            assert!(h.starts_with("post /api/v1/missions http/1.1"), "{h}");
            assert_eq!(header(h, "authorization"), Some("bearer tok"));
            assert_eq!(header(h, AGENT_HEADER), Some("agent-7"));
        }
    }

    fn response(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn sample_task() -> Task {
        let now = chrono::Utc::now();
        Task {
            id: TaskId::new(),
            mission_id: MissionId::new(),
            kluster_id: KlusterId::new(),
            title: "Create Helm chart for staging".into(),
            description: String::new(),
            status: mc_domain::TaskStatus::Open,
            priority: mc_domain::Priority::default(),
            labels: Vec::new(),
            paths: Vec::new(),
            depends_on: Vec::new(),
            lease: None,
            fencing_token: 0,
            created_by: "admin".into(),
            created_at: now,
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn a_created_task_comes_back_with_its_overlap_suggestions() {
        let task = sample_task();
        let mut body = serde_json::to_value(&task).expect("json");
        body["overlap_suggestions"] = serde_json::json!([{"id":"x","kind":"task","title":"Create Helm chart for production",
            "status":"open","holder":null,"relation":"related","score":0.4,"reasons":["different environment"]}]);
        body["warnings"] = serde_json::json!(["judged on wording"]);
        let (addr, server) = flaky_server(0, response("201 Created", &body.to_string()));
        let c = Client::new(&addr, None, None).expect("client");
        let create = CreateTask {
            kluster_id: task.kluster_id,
            title: task.title.clone(),
            description: None,
            priority: None,
            depends_on: Vec::new(),
            paths: Vec::new(),
            labels: Vec::new(),
            acknowledge_overlap: Some(true),
            check_overlap: None,
        };
        let got = c.create_task(&create).await.expect("created");
        assert_eq!(got.task, task);
        assert_eq!(got.overlap_suggestions.len(), 1);
        assert_eq!(got.overlap_suggestions[0].relation, mc_api::OverlapRelation::Related);
        assert_eq!(got.warnings, ["judged on wording"]);
        let heads = server.join().expect("server thread");
        assert!(heads[0].starts_with("post /api/v1/tasks http/1.1"), "{}", heads[0]);
    }

    #[tokio::test]
    async fn an_overlap_check_cut_off_mid_request_is_retried() {
        let body = r#"{"overlap_suggestions":[]}"#;
        let (addr, server) = flaky_server(1, response("200 OK", body));
        let c = Client::new(&addr, None, None).expect("client");
        let draft = OverlapDraft {
            kluster_id: Some(KlusterId::new()),
            mission_id: None,
            title: "t".into(),
            description: None,
            paths: Vec::new(),
            kind: None,
        };
        let got = c.overlap_draft(&draft).await.expect("retried");
        assert!(got.overlap_suggestions.is_empty() && got.warnings.is_empty());
        let heads = server.join().expect("server thread");
        assert_eq!(heads.len(), 2, "one retry");
        assert!(heads.iter().all(|h| h.starts_with("post /api/v1/overlap http/1.1")), "{heads:?}");
        assert_eq!(header(&heads[0], IDEMPOTENCY_HEADER), None, "a check creates nothing: no key");
    }

    #[tokio::test]
    async fn a_claim_cut_off_mid_request_is_not_retried() {
        let (addr, server) = flaky_server(1, String::new());
        let c = Client::new(&addr, Some("tok".into()), None).expect("client");
        let e = c.claim_task(TaskId::new(), &ClaimTask::default()).await.expect_err("cut off");
        assert!(matches!(e, ClientError::Transport(_)), "{e:?}");
        // Unblock the server thread, which waits for a second connection, then count requests.
        let _ = TcpStream::connect(addr.trim_start_matches("http://")).map(|mut s| {
            let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n");
        });
        let heads = server.join().expect("server thread");
        assert!(heads[0].starts_with("post /api/v1/tasks/"), "{}", heads[0]);
        assert_eq!(header(&heads[0], IDEMPOTENCY_HEADER), None);
        assert_eq!(heads.len(), 2, "the claim was sent once; the second request is the unblocking one");
        assert!(heads[1].starts_with("get / "), "{}", heads[1]);
    }

    #[tokio::test]
    async fn a_fixed_idempotency_key_is_used_for_creates() {
        let body = r#"{"error":{"code":"validation_failed","message":"name: must not be empty","details":{}}}"#;
        let response = format!(
            "HTTP/1.1 422 Unprocessable Entity\r\ncontent-type: application/json\r\nx-request-id: r-9\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let (addr, server) = flaky_server(0, response);
        let c = Client::new(&addr, None, None).expect("client").with_idempotency_key("my-key");
        let e = c.create_mission(&CreateMission { name: " ".into(), description: None }).await.expect_err("422");
        match e {
            ClientError::Api { status, code, request_id, .. } => {
                assert_eq!(status, 422);
                assert_eq!(code, "validation_failed");
                assert_eq!(request_id.as_deref(), Some("r-9"));
            }
            other => panic!("expected an API error, got {other:?}"),
        }
        let heads = server.join().expect("server thread");
        assert_eq!(header(&heads[0], IDEMPOTENCY_HEADER), Some("my-key"));
        assert_eq!(header(&heads[0], "authorization"), None, "no token, no header");
    }
}
