//! End-to-end tests of the embedders: a real local HTTP server for the OpenAI-compatible client, the real bundled
//! model, and a real MiniLM directory when `MC_TEST_MINILM_DIR` points at one.

use mc_embed::{EmbedError, Embedder};

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

fn assert_unit(v: &[f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[cfg(feature = "local-models")]
/// Embeds `texts` as one batch and one by one, and checks both agree within `tol`.
async fn assert_batch_matches_singles(e: &dyn Embedder, texts: &[String], tol: f32) -> Vec<Vec<f32>> {
    let batch = e.embed(texts).await.expect("batch");
    assert_eq!(batch.len(), texts.len());
    for (text, b) in texts.iter().zip(&batch) {
        let single = e.embed(std::slice::from_ref(text)).await.expect("single");
        let diff = max_abs_diff(&single[0], b);
        assert!(diff < tol, "batch vs single differ by {diff} for {text:?}");
    }
    batch
}

mod openai {
    use super::*;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use axum::{Json, Router};
    use mc_embed::{HashingEmbedder, OpenAiEmbedder};
    use serde_json::{Value, json};
    use std::sync::{Arc, Mutex};

    const KEY: &str = "sk-test-key";
    const DIM: usize = 16;

    #[derive(Default)]
    struct Seen {
        requests: Vec<(Option<String>, String, usize)>, // (authorization, model, number of inputs)
    }

    type Shared = Arc<Mutex<Seen>>;

    /// `/v1/embeddings`: vectors from a 16-d hashing embedder, scaled so they are not unit length, returned in
    /// reverse `index` order. Model names select failure modes.
    async fn embeddings(
        State(seen): State<Shared>,
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> (StatusCode, String) {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let model = body["model"].as_str().unwrap_or_default().to_owned();
        let inputs: Vec<String> =
            body["input"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect();
        seen.lock().expect("lock").requests.push((auth.clone(), model.clone(), inputs.len()));
        if auth.as_deref().is_some_and(|a| a != format!("Bearer {KEY}")) {
            let err = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}});
            return (StatusCode::UNAUTHORIZED, err.to_string());
        }
        match model.as_str() {
            "no-such-model" => {
                let err = json!({"error": {"message": "The model `no-such-model` does not exist",
                    "type": "invalid_request_error", "param": null, "code": "model_not_found"}});
                return (StatusCode::BAD_REQUEST, err.to_string());
            }
            "overloaded" => return (StatusCode::SERVICE_UNAVAILABLE, json!({"error": "model is loading"}).to_string()),
            "garbage" => return (StatusCode::OK, "<html>not json</html>".to_owned()),
            _ => {}
        }
        let hashing = HashingEmbedder::new(DIM).expect("dim");
        let mut data: Vec<Value> = inputs
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let scale = (i + 2) as f32;
                let v: Vec<f32> = hashing.embed_one(text).iter().map(|x| x * scale).collect();
                json!({"object": "embedding", "index": i, "embedding": v})
            })
            .collect();
        data.reverse();
        (StatusCode::OK, json!({"object": "list", "data": data, "model": model}).to_string())
    }

    async fn serve() -> (String, Shared) {
        let seen = Shared::default();
        let app = Router::new().route("/v1/embeddings", post(embeddings)).with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        (format!("http://{addr}/v1"), seen)
    }

    #[tokio::test]
    async fn orders_normalises_and_sends_model_and_key() {
        let (base, seen) = serve().await;
        let e = OpenAiEmbedder::new(&base, "test-embed", Some(KEY.to_owned()), None).expect("client");
        assert_eq!(e.dim(), 0, "unknown model: dimension learned from the first response");
        let texts = strings(&["Fix the flaky login test", "fixing flaky login tests", "Translate the billing docs"]);
        let got = e.embed(&texts).await.expect("embed");
        let hashing = HashingEmbedder::new(DIM).expect("dim");
        assert_eq!(got.len(), 3);
        for (text, v) in texts.iter().zip(&got) {
            assert_unit(v);
            assert!(max_abs_diff(v, &hashing.embed_one(text)) < 1e-6, "wrong vector or order for {text:?}");
        }
        assert_eq!(e.dim(), DIM);
        let port = base.trim_start_matches("http://127.0.0.1:").trim_end_matches("/v1");
        assert_eq!(e.model_id(), format!("openai/test-embed@127.0.0.1:{port}"));
        let requests = &seen.lock().expect("lock").requests;
        assert_eq!(requests, &vec![(Some(format!("Bearer {KEY}")), "test-embed".to_owned(), 3)]);
    }

    #[tokio::test]
    async fn no_key_sends_no_authorization_and_empty_input_sends_nothing() {
        let (base, seen) = serve().await;
        let e = OpenAiEmbedder::new(&base, "test-embed", None, Some(DIM)).expect("client");
        assert!(e.embed(&[]).await.expect("empty").is_empty());
        assert!(seen.lock().expect("lock").requests.is_empty());
        e.embed(&strings(&["hello"])).await.expect("embed");
        assert_eq!(seen.lock().expect("lock").requests[0].0, None);
    }

    #[tokio::test]
    async fn large_inputs_are_split_into_requests_and_kept_in_order() {
        let (base, seen) = serve().await;
        let e = OpenAiEmbedder::new(&base, "test-embed", None, None).expect("client");
        let texts: Vec<String> = (0..300).map(|i| format!("task number {i} about area {}", i % 7)).collect();
        let got = e.embed(&texts).await.expect("embed");
        let hashing = HashingEmbedder::new(DIM).expect("dim");
        for (text, v) in texts.iter().zip(&got) {
            assert!(max_abs_diff(v, &hashing.embed_one(text)) < 1e-6, "{text}");
        }
        let sizes: Vec<usize> = seen.lock().expect("lock").requests.iter().map(|r| r.2).collect();
        let mut expected = vec![32; 9];
        expected.push(12);
        assert_eq!(sizes, expected);
    }

    #[tokio::test]
    async fn configured_dimension_mismatch_is_invalid() {
        let (base, _) = serve().await;
        let e = OpenAiEmbedder::new(&base, "test-embed", None, Some(DIM + 1)).expect("client");
        let err = e.embed(&strings(&["hello"])).await.expect_err("dimension mismatch");
        assert!(matches!(&err, EmbedError::Invalid(m) if m.contains("expected 17")), "{err}");
    }

    #[tokio::test]
    async fn closed_port_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let e = OpenAiEmbedder::new(&format!("http://127.0.0.1:{port}/v1"), "m", None, None).expect("client");
        let start = std::time::Instant::now();
        let err = e.embed(&strings(&["hello"])).await.expect_err("nothing listens");
        assert!(err.is_unavailable(), "{err}");
        assert!(start.elapsed() < std::time::Duration::from_secs(5), "refused connection took {:?}", start.elapsed());
    }

    #[tokio::test]
    async fn client_errors_are_invalid_with_the_server_message() {
        let (base, _) = serve().await;
        let e = OpenAiEmbedder::new(&base, "no-such-model", None, None).expect("client");
        let err = e.embed(&strings(&["hello"])).await.expect_err("400");
        match &err {
            EmbedError::Invalid(m) => {
                assert!(m.contains("400") && m.contains("The model `no-such-model` does not exist"), "{m}")
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
        let wrong_key = OpenAiEmbedder::new(&base, "test-embed", Some("sk-wrong".to_owned()), None).expect("client");
        let err = wrong_key.embed(&strings(&["hello"])).await.expect_err("401");
        assert!(matches!(&err, EmbedError::Invalid(m) if m.contains("Incorrect API key provided")), "{err}");
    }

    #[tokio::test]
    async fn server_errors_are_unavailable_and_garbage_is_invalid() {
        let (base, _) = serve().await;
        let e = OpenAiEmbedder::new(&base, "overloaded", None, None).expect("client");
        let err = e.embed(&strings(&["hello"])).await.expect_err("503");
        assert!(matches!(&err, EmbedError::Unavailable(m) if m.contains("model is loading")), "{err}");
        let g = OpenAiEmbedder::new(&base, "garbage", None, None).expect("client");
        let err = g.embed(&strings(&["hello"])).await.expect_err("not json");
        assert!(matches!(&err, EmbedError::Invalid(m) if m.contains("not json")), "{err}");
    }

    #[tokio::test]
    async fn blank_text_is_rejected_before_any_request() {
        let (base, seen) = serve().await;
        let e = OpenAiEmbedder::new(&base, "test-embed", None, None).expect("client");
        let err = e.embed(&strings(&["ok", ""])).await.expect_err("blank");
        assert!(matches!(err, EmbedError::Invalid(_)));
        assert!(seen.lock().expect("lock").requests.is_empty());
    }
}

#[cfg(feature = "local-models")]
mod pocket {
    use super::*;
    use mc_embed::PocketEmbedder;
    use mc_embed::cosine;

    #[tokio::test]
    async fn paraphrase_beats_unrelated_and_vectors_are_unit_384() {
        let e = PocketEmbedder::new();
        assert_eq!(e.dim(), 384);
        assert_eq!(e.model_id(), "pocket-encoder/paraphrase-MiniLM-L3-v2-q4a8-centred1@0.1.2");
        assert_eq!(
            mc_embed::PocketEmbedder::uncentred().model_id(),
            "pocket-encoder/paraphrase-MiniLM-L3-v2-q4a8@0.1.2"
        );
        assert_eq!(mc_embed::PocketEmbedder::exact().model_id(), "pocket-encoder/paraphrase-MiniLM-L3-v2-q4@0.1.2");
        assert_eq!(e.model_id(), PocketEmbedder::new().model_id());
        let v = e
            .embed(&strings(&[
                "Fix the flaky login test",
                "Stabilise the intermittently failing login e2e test",
                "Translate the billing docs to French",
            ]))
            .await
            .expect("embed");
        for x in &v {
            assert_eq!(x.len(), 384);
            assert_unit(x);
        }
        let (para, other) = (cosine(&v[0], &v[1]), cosine(&v[0], &v[2]));
        println!("pocket: paraphrase {para:.3}, unrelated {other:.3}");
        assert!(para > other + 0.2, "paraphrase {para} vs unrelated {other}");
    }

    #[tokio::test]
    async fn batch_equals_singles_and_order_is_kept() {
        let e = PocketEmbedder::new();
        let texts = strings(&[
            "Add retries to the webhook sender",
            "a",
            "Migrate the ledger table to the new schema and backfill the hash chain for every mission in production",
            "日本語のテキストも大丈夫",
        ]);
        let batch = assert_batch_matches_singles(&e, &texts, 1e-4).await;
        assert!(cosine(&batch[0], &batch[2]) < 0.99, "different texts must give different vectors");
        // Many texts (more than one internal chunk) keep their order.
        let many: Vec<String> = (0..70).map(|i| format!("ticket {i}: {}", texts[i % 4])).collect();
        let out = e.embed(&many).await.expect("many");
        let last = e.embed(&many[69..]).await.expect("last");
        assert!(max_abs_diff(&out[69], &last[0]) < 1e-4);
    }

    #[tokio::test]
    async fn empty_blank_huge_and_concurrent_inputs() {
        let e = PocketEmbedder::new();
        assert!(e.embed(&[]).await.expect("empty").is_empty());
        assert!(matches!(e.embed(&strings(&["fine", "   "])).await, Err(EmbedError::Invalid(_))));
        // Far beyond the encoder's 64 KiB per-text limit: cut, not refused.
        let huge = "deploy the service ".repeat(10_000);
        assert_unit(&e.embed(&[huge]).await.expect("huge")[0]);
        let late = format!("{}deploy the service", " ".repeat(70_000));
        assert_unit(&e.embed(&[late]).await.expect("text after 70 KB of spaces")[0]);
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let e = e.clone();
                tokio::spawn(async move { e.embed(&strings(&["Fix the flaky login test"])).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("join").expect("embed").remove(0));
        }
        for r in &results[1..] {
            assert!(max_abs_diff(r, &results[0]) < 1e-5);
        }
    }

    #[tokio::test]
    async fn works_through_the_configured_trait_object() {
        let e = mc_embed::build(&mc_embed::EmbedderConfig::Bundled).expect("bundled");
        let v = e.embed(&strings(&["hello world"])).await.expect("embed");
        assert_eq!(v[0].len(), e.dim());
    }
}

#[cfg(feature = "local-models")]
mod minilm {
    use super::*;
    use mc_embed::MiniLmDirEmbedder;
    use mc_embed::cosine;

    /// The model directory from `MC_TEST_MINILM_DIR`; `None` (skip) when unset, unless `MC_REQUIRE_MINILM=1`.
    fn model_dir() -> Option<std::path::PathBuf> {
        let required = std::env::var("MC_REQUIRE_MINILM").is_ok_and(|v| v == "1");
        match std::env::var_os("MC_TEST_MINILM_DIR").filter(|v| !v.is_empty()) {
            Some(dir) => {
                let dir = std::path::PathBuf::from(dir);
                assert!(dir.is_dir(), "MC_TEST_MINILM_DIR={} is not a directory", dir.display());
                Some(dir)
            }
            None if required => panic!("MC_REQUIRE_MINILM=1 but MC_TEST_MINILM_DIR is not set"),
            None => {
                println!("skipping: MC_TEST_MINILM_DIR is not set");
                None
            }
        }
    }

    #[tokio::test]
    async fn known_similarities_of_all_minilm_l6_v2() {
        let Some(dir) = model_dir() else { return };
        let e = MiniLmDirEmbedder::new(&dir).expect("model dir");
        assert_eq!(e.dim(), 384);
        assert!(e.model_id().starts_with("minilm-dir/"), "{}", e.model_id());
        assert_eq!(e.model_id(), MiniLmDirEmbedder::new(&dir).expect("model dir").model_id(), "id must be stable");
        let v = e
            .embed(&strings(&[
                "A man is eating food.",
                "A man is eating a piece of bread.",
                "The girl is carrying a baby.",
            ]))
            .await
            .expect("embed");
        for x in &v {
            assert_eq!(x.len(), 384);
            assert_unit(x);
        }
        let (bread, baby) = (cosine(&v[0], &v[1]), cosine(&v[0], &v[2]));
        println!("minilm: food/bread {bread:.4}, food/baby {baby:.4}");
        assert!(bread > baby, "food/bread {bread} vs food/baby {baby}");
        assert!(bread > 0.5, "food/bread {bread}");
    }

    /// The similarity matrix that the sentence-transformers documentation (usage page "Semantic Textual
    /// Similarity") prints for all-MiniLM-L6-v2 with the PyTorch reference implementation, to 4 decimals.
    #[tokio::test]
    async fn matches_the_published_sentence_transformers_scores() {
        let Some(dir) = model_dir() else { return };
        let e = MiniLmDirEmbedder::new(&dir).expect("model dir");
        let left = e
            .embed(&strings(&["The new movie is awesome", "The cat sits outside", "A man is playing guitar"]))
            .await
            .expect("embed");
        let right = e
            .embed(&strings(&["The dog plays in the garden", "The new movie is so great", "A woman watches TV"]))
            .await
            .expect("embed");
        let published = [[0.0543, 0.8939, -0.0502], [0.2838, -0.0029, 0.1310], [0.2277, -0.0136, -0.0327]];
        let mut worst = 0.0f32;
        for (i, row) in published.iter().enumerate() {
            for (j, want) in row.iter().enumerate() {
                let got = cosine(&left[i], &right[j]);
                assert!((got - want).abs() < 2e-4, "pair ({i}, {j}): got {got:.4}, published {want:.4}");
                worst = worst.max((got - want).abs());
            }
        }
        println!("minilm: largest deviation from the published scores {worst:.5}");
    }

    #[tokio::test]
    async fn batch_of_very_different_lengths_equals_singles() {
        let Some(dir) = model_dir() else { return };
        let e = MiniLmDirEmbedder::new(&dir).expect("model dir");
        // Very different lengths stacked in one forward pass; one exceeds the 256-token cut.
        let texts = strings(&[
            "Fix the flaky login test",
            "ok",
            &"Refactor the lease reaper so that it never holds the writer lock while it scans expired leases. "
                .repeat(30),
            "Stabilise the intermittently failing login e2e test",
        ]);
        let batch = assert_batch_matches_singles(&e, &texts, 1e-4).await;
        let (para, other) = (cosine(&batch[0], &batch[3]), cosine(&batch[0], &batch[1]));
        assert!(para > other, "paraphrase {para} vs unrelated {other}");
    }

    #[tokio::test]
    async fn works_through_the_configured_trait_object() {
        let Some(dir) = model_dir() else { return };
        let e = mc_embed::build(&mc_embed::EmbedderConfig::ModelDir(dir)).expect("model dir");
        assert!(e.embed(&[]).await.expect("empty").is_empty());
        assert!(matches!(e.embed(&strings(&[" "])).await, Err(EmbedError::Invalid(_))));
        assert_eq!(e.embed(&strings(&["hello"])).await.expect("embed")[0].len(), 384);
    }
}
