//! Client for OpenAI-compatible embedding endpoints: `POST {base_url}/embeddings` with `{"model", "input"}`.
//!
//! Works with OpenAI (`https://api.openai.com/v1`), Ollama (`http://127.0.0.1:11434/v1`), vLLM, LM Studio and the
//! like. Inputs go in requests of at most [`REQUEST_CHUNK`] texts; vectors are taken from `data[].embedding`,
//! ordered by `data[].index`, checked (count, indices, one dimension, finite) and L2-normalised.
//!
//! Errors: connection failures, timeouts (connect 3 s, whole request 10 s), 5xx, 408 and 429 are
//! [`EmbedError::Unavailable`] (callers degrade and retry later); other 4xx and malformed responses are
//! [`EmbedError::Invalid`], carrying the server's own error message.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::Deserialize;

use crate::{EmbedError, Embedder, check_texts, l2_normalize};

/// Texts per HTTP request. OpenAI accepts up to 2048, but a local server on a CPU (Ollama with a larger model:
/// 50–200 ms per text) must answer each request within [`REQUEST_TIMEOUT`].
pub const REQUEST_CHUNK: usize = 32;
/// Connection timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Timeout for one whole request, response body included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// An OpenAI-compatible embeddings endpoint; model id `openai/<model>@<host[:port]>`.
pub struct OpenAiEmbedder {
    client: reqwest::Client,
    url: reqwest::Url,
    model: String,
    api_key: Option<String>,
    model_id: String,
    /// Configured or known dimension (fixed), else learned from the first response; 0 = not known yet.
    dim: AtomicUsize,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("url", &self.url.as_str())
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("dim", &self.dim.load(Ordering::Relaxed))
            .finish()
    }
}

impl OpenAiEmbedder {
    /// `base_url` is the API root without `/embeddings` (e.g. `http://127.0.0.1:11434/v1`). `dim`, when given, is
    /// checked against every response (it is not sent as a request parameter); without it the dimension of the
    /// well-known OpenAI models is assumed, and any other model's is learned from the first response.
    pub fn new(base_url: &str, model: &str, api_key: Option<String>, dim: Option<usize>) -> Result<Self, EmbedError> {
        let base = base_url.trim().trim_end_matches('/');
        let base = reqwest::Url::parse(base)
            .map_err(|e| EmbedError::Invalid(format!("embeddings base URL {base_url:?} is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(EmbedError::Invalid(format!("embeddings base URL {base_url:?} must be http or https")));
        }
        let host = match (base.host_str(), base.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err(EmbedError::Invalid(format!("embeddings base URL {base_url:?} has no host"))),
        };
        let model = model.trim();
        if model.is_empty() {
            return Err(EmbedError::Invalid("embeddings model name is empty".to_owned()));
        }
        if dim == Some(0) {
            return Err(EmbedError::Invalid("embeddings dimension must be at least 1".to_owned()));
        }
        let url = reqwest::Url::parse(&format!("{}/embeddings", base.as_str().trim_end_matches('/')))
            .map_err(|e| EmbedError::Invalid(format!("embeddings URL from {base_url:?}: {e}")))?;
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| EmbedError::Invalid(format!("cannot build HTTP client: {e}")))?;
        let api_key = api_key.map(|k| k.trim().to_owned()).filter(|k| !k.is_empty());
        Ok(Self {
            client,
            url,
            model: model.to_owned(),
            api_key,
            model_id: format!("openai/{model}@{host}"),
            dim: AtomicUsize::new(dim.or_else(|| known_dim(model)).unwrap_or(0)),
        })
    }

    /// The full `.../embeddings` URL requests go to.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    async fn request(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut req =
            self.client.post(self.url.clone()).json(&serde_json::json!({ "model": self.model, "input": texts }));
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| EmbedError::Unavailable(format!("{}: {}", self.url, describe(&e))))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| EmbedError::Unavailable(format!("{}: reading response: {}", self.url, describe(&e))))?;
        if !status.is_success() {
            let msg = format!("{} answered {status}: {}", self.url, server_message(&body));
            return Err(if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
                EmbedError::Unavailable(msg)
            } else {
                EmbedError::Invalid(msg)
            });
        }
        let parsed: Response = serde_json::from_slice(&body).map_err(|e| {
            EmbedError::Invalid(format!("{} sent an unexpected response ({e}): {}", self.url, snippet(&body)))
        })?;
        self.vectors(parsed, texts.len())
    }

    /// Orders, checks and normalises the vectors of one response to a request of `n` texts.
    fn vectors(&self, resp: Response, n: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
        let invalid = |what: String| EmbedError::Invalid(format!("{}: {what}", self.url));
        if resp.data.len() != n {
            return Err(invalid(format!("asked for {n} embeddings, got {}", resp.data.len())));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; n];
        for item in resp.data {
            let slot = out.get_mut(item.index).ok_or_else(|| invalid(format!("index {} out of range", item.index)))?;
            if slot.is_some() {
                return Err(invalid(format!("index {} appears twice", item.index)));
            }
            *slot = Some(item.embedding);
        }
        let mut vectors = Vec::with_capacity(n);
        for (i, v) in out.into_iter().enumerate() {
            let mut v = v.ok_or_else(|| invalid(format!("no embedding for index {i}")))?;
            if let Some(first) = vectors.first().map(Vec::len).filter(|&first| first != v.len()) {
                return Err(invalid(format!("embedding {i} has dimension {}, embedding 0 has {first}", v.len())));
            }
            if v.iter().any(|x| !x.is_finite()) || !l2_normalize(&mut v) {
                return Err(invalid(format!("embedding {i} is empty, zero or not finite")));
            }
            vectors.push(v);
        }
        // Learn (or check) the dimension only from a response that passed every other check.
        if let Some(len) = vectors.first().map(Vec::len) {
            self.check_dim(len).map_err(invalid)?;
        }
        Ok(vectors)
    }

    fn check_dim(&self, len: usize) -> Result<(), String> {
        match self.dim.compare_exchange(0, len, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(()),
            Err(expected) if expected == len => Ok(()),
            Err(expected) => Err(format!("embeddings have dimension {len}, expected {expected}")),
        }
    }
}

/// Native dimensions of OpenAI's published embedding models (used when no dimension is configured).
fn known_dim(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        _ => None,
    }
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    embedding: Vec<f32>,
    index: usize,
}

/// The error text of an OpenAI-style (`{"error": {"message": ...}}`), Ollama-style (`{"error": "..."}`) or other
/// JSON error body (`message`, `detail`), else the start of the body.
fn server_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let candidates = [
            v.pointer("/error/message"),
            v.get("error"),
            v.get("message"),
            v.get("detail"),
            v.pointer("/detail/0/msg"),
        ];
        if let Some(msg) = candidates.into_iter().flatten().find_map(|c| c.as_str()) {
            return msg.to_owned();
        }
    }
    snippet(body)
}

fn snippet(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// A transport error with its cause chain (reqwest's own message hides "connection refused" in the source).
fn describe(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() { format!("timed out: {e}") } else { e.to_string() };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[async_trait::async_trait]
impl Embedder for OpenAiEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dim(&self) -> usize {
        self.dim.load(Ordering::Acquire)
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        check_texts(texts)?;
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(REQUEST_CHUNK) {
            out.extend(self.request(chunk).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_id_names_model_and_host_with_explicit_port() {
        let e = OpenAiEmbedder::new("http://127.0.0.1:11434/v1/", "nomic-embed-text", None, None).expect("valid");
        assert_eq!(e.model_id(), "openai/nomic-embed-text@127.0.0.1:11434");
        assert_eq!(e.url(), "http://127.0.0.1:11434/v1/embeddings");
        assert_eq!(e.dim(), 0);
        let o = OpenAiEmbedder::new("https://api.openai.com/v1", "text-embedding-3-small", None, None).expect("valid");
        assert_eq!(o.model_id(), "openai/text-embedding-3-small@api.openai.com");
        assert_eq!(o.url(), "https://api.openai.com/v1/embeddings");
        assert_eq!(o.dim(), 1536);
        let c =
            OpenAiEmbedder::new("https://api.openai.com/v1", "text-embedding-3-small", None, Some(256)).expect("ok");
        assert_eq!(c.dim(), 256);
    }

    #[test]
    fn bad_configuration_is_invalid() {
        for (url, model, dim) in [
            ("not a url", "m", None),
            ("ftp://host/v1", "m", None),
            ("http://host/v1", " ", None),
            ("http://h/v1", "m", Some(0)),
        ] {
            let r = OpenAiEmbedder::new(url, model, None, dim);
            assert!(matches!(r, Err(EmbedError::Invalid(_))), "{url} {model} {dim:?}");
        }
    }

    #[test]
    fn debug_output_hides_the_key() {
        let e = OpenAiEmbedder::new("http://h/v1", "m", Some("sk-secret".to_owned()), None).expect("valid");
        let dbg = format!("{e:?}");
        assert!(!dbg.contains("sk-secret") && dbg.contains("<redacted>"), "{dbg}");
    }

    #[test]
    fn server_messages_are_extracted_from_common_shapes() {
        assert_eq!(server_message(br#"{"error":{"message":"bad model","type":"invalid_request_error"}}"#), "bad model");
        assert_eq!(server_message(br#"{"error":"model not found"}"#), "model not found");
        assert_eq!(server_message(br#"{"detail":"nope"}"#), "nope");
        assert_eq!(server_message(b"plain text"), "plain text");
        assert_eq!(server_message(b""), "(empty body)");
        assert_eq!(server_message("x".repeat(1000).as_bytes()).chars().count(), 301);
    }

    fn response(items: &[(usize, Vec<f32>)]) -> Response {
        Response {
            data: items.iter().map(|(index, embedding)| Item { index: *index, embedding: embedding.clone() }).collect(),
        }
    }

    #[test]
    fn response_checks_reject_broken_contracts() {
        let e = OpenAiEmbedder::new("http://h/v1", "m", None, None).expect("valid");
        let bad = [
            response(&[(0, vec![1.0, 0.0])]),                           // too few
            response(&[(0, vec![1.0, 0.0]), (0, vec![0.0, 1.0])]),      // duplicate index
            response(&[(0, vec![1.0, 0.0]), (2, vec![0.0, 1.0])]),      // index out of range
            response(&[(0, vec![1.0, 0.0]), (1, vec![0.0, 0.0])]),      // zero vector
            response(&[(0, vec![1.0, 0.0]), (1, vec![f32::NAN, 1.0])]), // not finite
            response(&[(0, vec![1.0, 0.0]), (1, vec![1.0])]),           // mixed dimensions
        ];
        for r in bad {
            assert!(matches!(e.vectors(r, 2), Err(EmbedError::Invalid(_))));
        }
        assert_eq!(e.dim(), 0, "a rejected response must not set the dimension");
        let ok = e.vectors(response(&[(1, vec![0.0, 2.0]), (0, vec![3.0, 4.0])]), 2).expect("valid response");
        assert_eq!(ok, vec![vec![0.6, 0.8], vec![0.0, 1.0]]);
        assert_eq!(e.dim(), 2);
        // The learned dimension is enforced on later responses.
        assert!(matches!(e.vectors(response(&[(0, vec![1.0, 0.0, 0.0])]), 1), Err(EmbedError::Invalid(_))));
    }
}
