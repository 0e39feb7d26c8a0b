//! Overlap detection before mutations, and hybrid search: the new item's vector (computed now,
//! with a deadline), candidates from the store's full-text and vector indexes and from declared
//! paths, each judged by the calibrated scorer of `mc-overlap`. A failing embedder degrades to
//! text signals with a warning; it never fails the request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mc_api::{DocHitView, KlusterHitView, OverlapRelation, OverlapSuggestion, SearchHitView};
use mc_domain::task::embedding_text;
use mc_domain::{Doc, DocKind, KlusterId, MissionId, Task, TaskId, TaskStatus};
use mc_embed::{Embedder, cosine};
use mc_overlap::glob::Glob;
use mc_overlap::text::tokens;
use mc_overlap::{ItemText, PairFeatures, Relation, ScorerModel, doc_subject, doc_titles, path_relation};
use mc_store::{DocEmbedded, Embedded, KlusterEmbedded, SearchFilter, SearchRequest, Store, TextCursor, VectorQuery};
use serde_json::json;

use crate::error::ApiError;

/// How long a request waits for the embedder before going on without a vector.
pub const EMBED_DEADLINE: Duration = Duration::from_secs(3);
/// Most suggestions returned.
pub const MAX_SUGGESTIONS: usize = 10;
/// Candidates taken from the indexes.
const CANDIDATES: usize = 20;
/// Most tasks with declared paths compared glob by glob.
const PATH_CANDIDATES: usize = 200;

/// A vector and the id of the model that made it.
pub type ModelVector = (String, Vec<f32>);

/// Texts whose vectors are kept for the next request that embeds the same text.
const RECENT_VECTORS: usize = 512;

/// The embedder and the scorer fitted for it.
#[derive(Debug, Clone)]
pub struct Semantic {
    pub embedder: Arc<dyn Embedder>,
    scorer: Arc<std::sync::RwLock<Scorer>>,
    recent: Arc<Mutex<RecentVectors>>,
}

#[derive(Debug)]
struct Scorer {
    model: Arc<ScorerModel>,
    source: Source,
}

/// Where the scorer in use comes from.
#[derive(Debug)]
enum Source {
    Shipped,
    /// The interim scorer of an embedder without a shipped one, with the warning answers carry.
    Calibrating(String),
    Calibrated,
}

impl Semantic {
    /// The configured embedder, [prepared](prepared) for its scorer. An embedder without a
    /// shipped scorer starts with the interim one (see [`Semantic::needs_calibration`]).
    pub fn new(embedder: Arc<dyn Embedder>) -> Self {
        let (model, shipped) = scorer_for(embedder.model_id());
        let model = Arc::new(model);
        let embedder: Arc<dyn Embedder> = Arc::new(Prepared::new(embedder, &model));
        let source = if shipped {
            Source::Shipped
        } else {
            Source::Calibrating(format!(
                "the overlap scorer is being calibrated for the embedder {}; until then suggestions are approximate and no creation is refused",
                embedder.model_id()
            ))
        };
        Self {
            embedder,
            scorer: Arc::new(std::sync::RwLock::new(Scorer { model, source })),
            recent: Arc::new(Mutex::new(RecentVectors::new(RECENT_VECTORS))),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Scorer> {
        self.scorer.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The scorer in use.
    pub fn scorer(&self) -> Arc<ScorerModel> {
        Arc::clone(&self.read().model)
    }

    /// Whether the scorer in use is the interim one (no scorer is fitted for this embedder yet).
    pub fn needs_calibration(&self) -> bool {
        matches!(self.read().source, Source::Calibrating(_))
    }

    /// The warning overlap answers carry while the scorer is the interim one.
    fn calibration_warning(&self) -> Option<String> {
        match &self.read().source {
            Source::Calibrating(warning) => Some(warning.clone()),
            Source::Shipped | Source::Calibrated => None,
        }
    }

    /// Puts a scorer calibrated for this embedder in use. It must read plain texts, as the interim
    /// one does: the vectors already stored were made of them.
    pub fn install(&self, model: Arc<ScorerModel>) {
        if model.canonical_input {
            tracing::warn!("a calibrated scorer must read plain texts; ignored");
            return;
        }
        *self.scorer.write().unwrap_or_else(|p| p.into_inner()) = Scorer { model, source: Source::Calibrated };
    }

    /// Where the scorer in use comes from: `shipped`, `calibrated` or `calibrating`.
    pub fn scorer_source(&self) -> &'static str {
        match self.read().source {
            Source::Shipped => "shipped",
            Source::Calibrating(_) => "calibrating",
            Source::Calibrated => "calibrated",
        }
    }
}

/// The scorer for an embedder: the shipped one fitted for it, or else the interim one, which reads
/// plain texts (as any calibrated scorer does), judges with the thresholds of all-MiniLM-L6-v2 and
/// refuses no creation; the flag says which.
pub fn scorer_for(embedder_id: &str) -> (ScorerModel, bool) {
    if let Some(m) = mc_overlap::model::fitted_for(embedder_id) {
        return (m, true);
    }
    let mut m = mc_overlap::model::shipped_named("minilm-dir").unwrap_or_else(|| mc_overlap::shipped_for(""));
    // its last variant reads one cosine (the others also read the bundled model's)
    m.variants = m.variants.split_off(m.variants.len().saturating_sub(1));
    for v in &mut m.variants {
        v.block_threshold = f32::INFINITY;
    }
    m.canonical_input = false;
    m.embedder = embedder_id.to_owned();
    m.fingerprints.clear();
    // another model's cosines have another scale: its floor comes with its calibration
    m.search_floor = None;
    (m, false)
}

/// `embedder` as the server runs it: each text is given to it the way its scorer was fitted
/// (acronyms expanded; for the bundled model, synonyms replaced by the word of their thesaurus
/// group), and the vectors are stored under an id that says so. Whatever embeds for the server
/// (the request path, the embedding worker, a benchmark filling the store) goes through this.
pub fn prepared(embedder: Arc<dyn Embedder>) -> Arc<dyn Embedder> {
    let (scorer, _) = scorer_for(embedder.model_id());
    Arc::new(Prepared::new(embedder, &scorer))
}

#[derive(Debug)]
struct Prepared {
    inner: Arc<dyn Embedder>,
    canonical: bool,
    id: String,
}

impl Prepared {
    fn new(inner: Arc<dyn Embedder>, scorer: &ScorerModel) -> Self {
        let id = scorer.vector_model_id(inner.model_id());
        Self { inner, canonical: scorer.canonical_input, id }
    }
}

#[async_trait::async_trait]
impl Embedder for Prepared {
    fn model_id(&self) -> &str {
        &self.id
    }

    fn dim(&self) -> usize {
        self.inner.dim()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, mc_embed::EmbedError> {
        let texts: Vec<String> = texts.iter().map(|t| mc_overlap::text::embedding_input(t, self.canonical)).collect();
        self.inner.embed(&texts).await
    }
}

/// The vectors of the texts embedded most recently on the request path (by the hash of the text),
/// least recently used out first.
/// An agent asks `get_overlap_suggestions` for a draft and then creates it, or repeats a search after a
/// change: the second request finds the vector here instead of running the model again.
#[derive(Debug)]
struct RecentVectors {
    capacity: usize,
    tick: u64,
    entries: HashMap<String, (u64, Vec<f32>)>,
}

impl RecentVectors {
    fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), tick: 0, entries: HashMap::new() }
    }

    fn get(&mut self, text: &str) -> Option<Vec<f32>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(text).map(|(used, v)| {
            *used = tick;
            v.clone()
        })
    }

    fn put(&mut self, text: String, vector: Vec<f32>) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&text) {
            // A linear scan for the oldest: a few microseconds at this capacity, next to milliseconds of model.
            if let Some(oldest) = self.entries.iter().min_by_key(|(_, (used, _))| *used).map(|(k, _)| k.clone()) {
                self.entries.remove(&oldest);
            }
        }
        self.tick += 1;
        self.entries.insert(text, (self.tick, vector));
    }
}

/// Embeds one text within the deadline; `Err` carries the warning to show.
pub async fn embed_now(semantic: Option<&Semantic>, text: &str) -> Result<(String, Vec<f32>), String> {
    let (model, mut vectors) = embed_texts(semantic, &[text]).await?;
    let vector = vectors.pop().ok_or("the embedder returned no vector; only text signals were used")?;
    Ok((model, vector))
}

/// Embeds texts within the deadline, in one call for those not embedded lately; `Err` carries
/// the warning to show.
pub async fn embed_texts(semantic: Option<&Semantic>, texts: &[&str]) -> Result<(String, Vec<Vec<f32>>), String> {
    let Some(s) = semantic else { return Err("no embedder is configured; only text signals were used".into()) };
    // kept by the text's hash: a doc's text can be 256 KiB, and 512 of them would be 128 MiB
    let keys: Vec<String> = texts.iter().map(|t| mc_domain::ledger::sha256_hex(t.as_bytes())).collect();
    let model = s.embedder.model_id().to_owned();
    let mut vectors: Vec<Option<Vec<f32>>> = {
        let mut recent = s.recent.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().map(|k| recent.get(k)).collect()
    };
    let missing: Vec<usize> = (0..texts.len()).filter(|&i| vectors[i].is_none()).collect();
    if !missing.is_empty() {
        let inputs: Vec<String> = missing.iter().map(|&i| texts[i].to_owned()).collect();
        match tokio::time::timeout(EMBED_DEADLINE, s.embedder.embed(&inputs)).await {
            Ok(Ok(made)) if made.len() == inputs.len() => {
                let mut recent = s.recent.lock().unwrap_or_else(|p| p.into_inner());
                for (&i, vector) in missing.iter().zip(made) {
                    recent.put(keys[i].clone(), vector.clone());
                    vectors[i] = Some(vector);
                }
            }
            Ok(Ok(_)) => return Err("the embedder returned no vector; only text signals were used".into()),
            Ok(Err(e)) => return Err(format!("{e}; only text signals were used")),
            Err(_) => {
                return Err(format!(
                    "the embedder did not answer within {} s; only text signals were used",
                    EMBED_DEADLINE.as_secs()
                ));
            }
        }
    }
    Ok((model, vectors.into_iter().flatten().collect()))
}

/// The cosine of the subject of the draft's title with that of each of `titles` (docs are judged
/// by their titles too, see [`ScorerModel::judge_doc`] and [`doc_subject`]); all `None` when they
/// cannot be embedded now.
async fn title_cosines(semantic: Option<&Semantic>, draft_title: &str, titles: &[&str]) -> Vec<Option<f32>> {
    if titles.is_empty() {
        return Vec::new();
    }
    let texts: Vec<&str> = std::iter::once(draft_title).chain(titles.iter().copied()).map(doc_subject).collect();
    match embed_texts(semantic, &texts).await {
        Ok((_, v)) if v.len() == texts.len() => v[1..].iter().map(|t| Some(cosine(&v[0], t))).collect(),
        Ok(_) | Err(_) => vec![None; titles.len()],
    }
}

/// Parses declared paths as globs, naming the bad one.
pub fn parse_globs(paths: &[String]) -> Result<Vec<Glob>, ApiError> {
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Glob::parse(p).map_err(|e| {
                ApiError::from(mc_domain::Error::validation(format!("paths[{i}]"), format!("not a valid glob: {e}")))
            })
        })
        .collect()
}

/// What is being checked for overlap.
#[derive(Debug, Clone)]
pub struct Draft {
    pub mission_id: MissionId,
    pub kluster_id: Option<KlusterId>,
    pub title: String,
    pub description: String,
    pub paths: Vec<String>,
    /// An existing task checked against the others.
    pub exclude: Option<TaskId>,
}

/// Suggestions for a draft, whether one of them blocks creation, the warnings, and the draft's
/// vector (so a create can store it).
#[derive(Debug, Default)]
pub struct Outcome {
    pub suggestions: Vec<OverlapSuggestion>,
    pub blocking: bool,
    pub warnings: Vec<String>,
    pub vector: Option<(String, Vec<f32>)>,
}

pub async fn check(
    store: &dyn Store,
    semantic: Option<&Semantic>,
    draft: &Draft,
    known: Option<(String, Vec<f32>)>,
) -> Result<Outcome, ApiError> {
    let text = embedding_text(&draft.title, &draft.description);
    let mut warnings = Vec::new();
    let mut vector = None;
    let filter =
        SearchFilter { mission_id: Some(draft.mission_id), statuses: TaskStatus::LIVE.to_vec(), ..Default::default() };
    let request = SearchRequest { text: text.clone(), vector: None, filter: filter.clone(), limit: CANDIDATES };
    // the store searches full text while the draft is embedded
    let pending = async {
        vector = match known {
            Some(v) => Some(v),
            None => embed_now(semantic, &text).await.map_err(|w| warnings.push(w)).ok(),
        };
        vector.as_ref().map(|(model, v)| VectorQuery { model: model.clone(), vector: v.clone() })
    };
    let hits = store.search_tasks_while(&request, Box::pin(pending)).await?;
    let mut candidates: HashMap<TaskId, (Task, Option<f32>)> =
        hits.into_iter().map(|h| (h.task.id, (h.task, h.cosine))).collect();
    let draft_globs = parse_globs(&draft.paths)?;
    if !draft_globs.is_empty() {
        // tasks found only by their paths count when their paths can touch the same file
        for t in store.tasks_with_paths(&filter, PATH_CANDIDATES).await? {
            if candidates.contains_key(&t.id) {
                continue;
            }
            let globs: Vec<Glob> = t.paths.iter().filter_map(|p| Glob::parse(p).ok()).collect();
            if mc_overlap::glob::first_overlap(&globs, &draft_globs).is_some() {
                candidates.insert(t.id, (t, None));
            }
        }
    }
    if let Some(id) = draft.exclude {
        candidates.remove(&id);
    }
    let scorer = scorer_of(semantic);
    let mut suggestions = Vec::new();
    let mut blocking = false;
    for (_, (task, cos)) in candidates {
        let cos = match (cos, &vector) {
            (Some(c), _) => Some(c),
            (None, Some((model, v))) => store.task_embedding(task.id, model).await?.map(|tv| cosine(v, &tv)),
            (None, None) => None,
        };
        if let Some((suggestion, blocks)) = judge(&scorer, draft, &draft_globs, Candidate::task(&task), cos, None) {
            blocking |= blocks;
            suggestions.push(suggestion);
        }
    }
    rank(&mut suggestions);
    warnings.extend(semantic.and_then(Semantic::calibration_warning));
    Ok(Outcome { suggestions, blocking, warnings, vector })
}

/// The scorer fitted for the configured embedder (or for wording alone).
fn scorer_of(semantic: Option<&Semantic>) -> Arc<ScorerModel> {
    semantic.map(Semantic::scorer).unwrap_or_else(|| Arc::new(mc_overlap::shipped_for("")))
}

/// An existing item as overlap detection compares it with a draft.
pub struct Candidate<'a> {
    id: String,
    kind: &'static str,
    title: &'a str,
    description: &'a str,
    status: String,
    holder: Option<String>,
    paths: &'a [String],
    kluster_id: Option<KlusterId>,
}

impl<'a> Candidate<'a> {
    fn task(t: &'a Task) -> Self {
        Self {
            id: t.id.to_string(),
            kind: "task",
            title: &t.title,
            description: &t.description,
            status: t.status.as_str().into(),
            holder: t.lease.as_ref().map(|l| l.holder.clone()),
            paths: &t.paths,
            kluster_id: Some(t.kluster_id),
        }
    }

    fn doc(d: &'a Doc) -> Self {
        Self {
            id: d.id.to_string(),
            kind: d.kind.as_str(),
            title: &d.title,
            description: &d.body,
            status: format!("v{}", d.version),
            holder: None,
            paths: &d.paths,
            kluster_id: d.kluster_id,
        }
    }

    /// Docs and artifacts are judged by their titles as well as their whole texts.
    fn is_doc(&self) -> bool {
        self.kind != "task"
    }
}

/// Judges one existing item against the draft: a suggestion if they overlap, and whether it
/// blocks creation.
///
/// `cos` is the cosine of the two texts' vectors; for a doc, `title_cos` is that of the titles'.
/// Without vectors, the lexical overlap stands in for semantic similarity (degraded mode).
fn judge(
    scorer: &ScorerModel,
    draft: &Draft,
    draft_globs: &[Glob],
    item: Candidate<'_>,
    cos: Option<f32>,
    title_cos: Option<f32>,
) -> Option<(OverlapSuggestion, bool)> {
    let globs: Vec<Glob> = item.paths.iter().filter_map(|p| Glob::parse(p).ok()).collect();
    let a = ItemText { title: item.title, description: item.description };
    let b = ItemText { title: &draft.title, description: &draft.description };
    let paths = path_relation(&globs, draft_globs);
    // without a cosine, the lexical overlap stands in for it
    let with_cosine = |mut f: PairFeatures| {
        f.cosine = cos.unwrap_or(f.lexical);
        f
    };
    let verdict = if item.is_doc() {
        let whole = with_cosine(PairFeatures::of_docs(a, b, 0.0, paths.clone()));
        scorer.judge_doc(&doc_titles(item.title, &draft.title, title_cos, paths), &whole)
    } else {
        scorer.judge(&with_cosine(PairFeatures::new(a, b, 0.0, paths)))
    };
    let relation = verdict.relation?;
    let mut reasons = verdict.reasons;
    let mut score = verdict.score;
    if cos.is_none() {
        reasons[0] = "no vector to compare; judged on wording".into();
    }
    if draft.kluster_id.is_some() && draft.kluster_id == item.kluster_id {
        reasons.push("same kluster".into());
        score = (score + 0.02).min(1.0);
    }
    let suggestion = OverlapSuggestion {
        id: item.id,
        kind: item.kind.into(),
        title: item.title.to_owned(),
        status: item.status,
        holder: item.holder,
        relation: match relation {
            Relation::Duplicate => OverlapRelation::Duplicate,
            Relation::Related => OverlapRelation::Related,
        },
        score,
        reasons,
    };
    Some((suggestion, verdict.blocks))
}

fn rank(suggestions: &mut Vec<OverlapSuggestion>) {
    suggestions.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    suggestions.truncate(MAX_SUGGESTIONS);
}

/// Creates that run the overlap check, serialised per mission where it matters: each check runs
/// concurrently against the store, then, under the mission's lock, the draft is also judged
/// against the items created since its check began (which the check may not have seen) before
/// it is created. Two identical drafts sent at the same instant therefore cannot both pass.
/// Tasks and docs have a lane each (they are never compared with each other). This covers the
/// creates of one server process (the embedded profile has exactly one).
#[derive(Debug, Default)]
pub struct Admissions {
    tasks: Lanes<Task>,
    docs: Lanes<Doc>,
}

/// What a lane keeps of a created item: enough to judge a later draft against it.
pub trait Admitted: Clone + Send + Sync + 'static {
    fn candidate(&self) -> Candidate<'_>;
}

impl Admitted for Task {
    fn candidate(&self) -> Candidate<'_> {
        Candidate::task(self)
    }
}

impl Admitted for Doc {
    fn candidate(&self) -> Candidate<'_> {
        Candidate::doc(self)
    }
}

#[derive(Debug)]
struct Lanes<T> {
    missions: std::sync::Mutex<HashMap<MissionId, Arc<tokio::sync::Mutex<Recent<T>>>>>,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Self { missions: std::sync::Mutex::default() }
    }
}

impl<T> Lanes<T> {
    async fn ticket(&self, mission: MissionId) -> Ticket<T> {
        let lane = {
            let mut m = self.missions.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(m.entry(mission).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Recent::default()))))
        };
        let seen = lane.lock().await.next;
        Ticket { lane, seen }
    }
}

/// The items created lately in one mission through the check, numbered in creation order.
#[derive(Debug)]
pub struct Recent<T> {
    next: u64,
    created: std::collections::VecDeque<(u64, T, Option<ModelVector>)>,
}

impl<T> Default for Recent<T> {
    fn default() -> Self {
        Self { next: 0, created: std::collections::VecDeque::new() }
    }
}

/// Created items remembered per mission (a check is never this many creates behind).
const RECENT: usize = 4096;

/// Where a check began: creates numbered from `seen` on may be missing from it.
#[derive(Debug)]
pub struct Ticket<T> {
    lane: Arc<tokio::sync::Mutex<Recent<T>>>,
    seen: u64,
}

impl Admissions {
    /// A ticket for creating a task in `mission`; take it before the check.
    pub async fn ticket(&self, mission: MissionId) -> Ticket<Task> {
        self.tasks.ticket(mission).await
    }

    /// A ticket for creating a doc in `mission`; take it before the check.
    pub async fn doc_ticket(&self, mission: MissionId) -> Ticket<Doc> {
        self.docs.ticket(mission).await
    }
}

impl<T: Admitted> Ticket<T> {
    /// Judges the draft against what was created since the check began, then (unless that
    /// finds a blocking duplicate that is not acknowledged) runs `create` with `wctx` (marked
    /// when a duplicate was acknowledged, and carrying the suggestions for a replay) while
    /// holding the mission's lock, and remembers the created item.
    pub async fn admit<F, Fut>(
        self,
        semantic: Option<&Semantic>,
        draft: &Draft,
        outcome: &mut Outcome,
        acknowledged: bool,
        mut wctx: mc_store::WriteCtx,
        create: F,
    ) -> Result<mc_store::Created<T>, ApiError>
    where
        F: FnOnce(mc_store::WriteCtx) -> Fut,
        Fut: std::future::Future<Output = Result<mc_store::Created<T>, ApiError>>,
    {
        let mut recent = self.lane.lock().await;
        let scorer = scorer_of(semantic);
        let draft_globs = parse_globs(&draft.paths)?;
        let mut found = false;
        let unseen: Vec<_> = recent
            .created
            .iter()
            .filter(|(n, item, _)| *n >= self.seen && !outcome.suggestions.iter().any(|s| s.id == item.candidate().id))
            .collect();
        let doc_titles: Vec<&str> =
            unseen.iter().map(|(_, item, _)| item.candidate()).filter(|c| c.is_doc()).map(|c| c.title).collect();
        let mut title_cos = title_cosines(semantic, &draft.title, &doc_titles).await.into_iter();
        for (_, item, v) in unseen {
            let cos = match (&outcome.vector, v) {
                (Some((ma, a)), Some((mb, b))) if ma == mb => Some(cosine(a, b)),
                _ => None,
            };
            let candidate = item.candidate();
            let title_cos = if candidate.is_doc() { title_cos.next().flatten() } else { None };
            if let Some((suggestion, blocks)) = judge(&scorer, draft, &draft_globs, candidate, cos, title_cos) {
                outcome.blocking |= blocks;
                outcome.suggestions.push(suggestion);
                found = true;
            }
        }
        if found {
            rank(&mut outcome.suggestions);
        }
        if outcome.blocking && !acknowledged {
            return Err(blocked(outcome));
        }
        if outcome.blocking {
            wctx.action_suffix = Some("overlap_acknowledged");
        }
        // what a replay of this create must answer besides the item
        wctx.replay_extra = Some(json!({ "overlap_suggestions": outcome.suggestions, "warnings": outcome.warnings }));
        let created = create(wctx).await?;
        let n = recent.next;
        recent.next += 1;
        recent.created.push_back((n, created.value.clone(), outcome.vector.clone()));
        if recent.created.len() > RECENT {
            recent.created.pop_front();
        }
        Ok(created)
    }
}

/// What a checked create answers beyond the item, kept with its idempotency key (see
/// [`Ticket::admit`]) so that a replay answers it whole.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ReplayExtra {
    pub overlap_suggestions: Vec<OverlapSuggestion>,
    pub warnings: Vec<String>,
}

impl ReplayExtra {
    /// What the first call recorded (nothing, if it recorded nothing readable).
    pub fn of(extra: Option<serde_json::Value>) -> Self {
        extra.and_then(|e| serde_json::from_value(e).ok()).unwrap_or_default()
    }
}

/// The 409 answer when a blocking duplicate exists.
pub fn blocked(outcome: &Outcome) -> ApiError {
    let first = outcome.suggestions.iter().find(|s| s.relation == OverlapRelation::Duplicate);
    let what = first.map(|s| format!("{} {} \"{}\" ({})", s.kind, s.id, s.title, s.status)).unwrap_or_default();
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "overlap_detected",
        format!("this looks like a duplicate of {what}; reuse it, or pass acknowledge_overlap: true to create anyway"),
        json!({ "overlap_suggestions": outcome.suggestions, "warnings": outcome.warnings }),
    )
}

/// Stores a freshly computed vector for a new task (best effort: the worker fills gaps).
pub async fn store_vector(store: &dyn Store, task: &Task, vector: Option<(String, Vec<f32>)>) {
    let Some((model, v)) = vector else { return };
    let item = Embedded {
        task_id: task.id,
        text_hash: mc_domain::ledger::sha256_hex(task.embedding_text().as_bytes()),
        vector: v,
    };
    if let Err(e) = store.put_embeddings(&model, vec![item]).await {
        tracing::warn!(task = %task.id, error = %e, "could not store the vector of a new task; the worker will retry");
    }
}

/// The query's vector for a search, or the warning that search is text-only.
async fn query_vector(semantic: Option<&Semantic>, q: &str, warnings: &mut Vec<String>) -> Option<VectorQuery> {
    match embed_now(semantic, q).await {
        Ok((model, v)) => Some(VectorQuery { model, vector: v }),
        Err(w) => {
            warnings.push(w.replace("only text signals were used", "full-text results only"));
            None
        }
    }
}

/// Why a hit matched: the query's terms found in its text, and its semantic similarity.
fn why(query_terms: &[String], text: &str, text_rank: Option<usize>, vector: Option<(usize, f32)>) -> Vec<String> {
    let mut why = Vec::new();
    if let Some(r) = text_rank {
        let own: Vec<String> = tokens(text).into_iter().map(|t| t.norm).collect();
        let mut shared: Vec<&str> = query_terms.iter().filter(|t| own.contains(t)).map(String::as_str).collect();
        shared.dedup();
        if shared.is_empty() {
            why.push(format!("full-text rank {r}"));
        } else {
            why.push(format!("full-text rank {r}: {}", shared.join(", ")));
        }
    }
    if let Some((r, c)) = vector {
        why.push(format!("semantic rank {r}: similarity {c:.2}"));
    }
    why
}

fn terms(q: &str) -> Vec<String> {
    tokens(q).into_iter().map(|t| t.norm).collect()
}

/// The scorer's search floor, and how many hits to ask the store for so that leaving out the
/// semantic matches below it still leaves `limit` hits where there are that many.
fn floor_and_fetch(semantic: Option<&Semantic>, limit: usize) -> (Option<f32>, usize) {
    let floor = semantic.and_then(|s| s.scorer().search_floor);
    (floor, if floor.is_some() { limit.saturating_mul(2) } else { limit })
}

/// Whether a hit is shown: found by its words, or by meaning at least as similar as the floor
/// (below it, a semantic match is no better than an unrelated text; see `ScorerModel::search_floor`).
fn meaningful(floor: Option<f32>, text_rank: Option<usize>, cosine: Option<f32>) -> bool {
    text_rank.is_some() || floor.is_none_or(|f| cosine.is_some_and(|c| c >= f))
}

/// Hybrid search over tasks, with reasons.
pub async fn search(
    store: &dyn Store,
    semantic: Option<&Semantic>,
    q: &str,
    filter: SearchFilter,
    limit: usize,
) -> Result<(Vec<SearchHitView>, Vec<String>), ApiError> {
    let mut warnings = Vec::new();
    let (floor, fetch) = floor_and_fetch(semantic, limit);
    let request = SearchRequest { text: q.to_owned(), vector: None, filter, limit: fetch };
    // full text is searched while the query is embedded
    let hits = store.search_tasks_while(&request, Box::pin(query_vector(semantic, q, &mut warnings))).await?;
    let query_terms = terms(q);
    let items = hits
        .into_iter()
        .filter(|h| meaningful(floor, h.text_rank, h.cosine))
        .take(limit)
        .map(|h| {
            let text = format!("{} {} {}", h.task.title, h.task.description, h.task.labels.join(" "));
            let why = why(&query_terms, &text, h.text_rank, h.vector_rank.zip(h.cosine));
            SearchHitView { task: h.task, score: h.score, why }
        })
        .collect();
    Ok((items, warnings))
}

/// Hybrid search over klusters, with reasons.
pub async fn search_klusters(
    store: &dyn Store,
    semantic: Option<&Semantic>,
    q: &str,
    filter: SearchFilter,
    limit: usize,
) -> Result<(Vec<KlusterHitView>, Vec<String>), ApiError> {
    let mut warnings = Vec::new();
    let vector = query_vector(semantic, q, &mut warnings).await;
    let (floor, fetch) = floor_and_fetch(semantic, limit);
    let hits = store.search_klusters(&SearchRequest { text: q.to_owned(), vector, filter, limit: fetch }).await?;
    let query_terms = terms(q);
    let items = hits
        .into_iter()
        .filter(|h| meaningful(floor, h.text_rank, h.cosine))
        .take(limit)
        .map(|h| {
            let text = format!("{} {}", h.kluster.name, h.kluster.description);
            let why = why(&query_terms, &text, h.text_rank, h.vector_rank.zip(h.cosine));
            KlusterHitView { kluster: h.kluster, score: h.score, why }
        })
        .collect();
    Ok((items, warnings))
}

/// Hybrid search over docs and artifacts, with reasons.
pub async fn search_docs(
    store: &dyn Store,
    semantic: Option<&Semantic>,
    q: &str,
    filter: SearchFilter,
    kind: Option<DocKind>,
    limit: usize,
) -> Result<(Vec<DocHitView>, Vec<String>), ApiError> {
    let mut warnings = Vec::new();
    let vector = query_vector(semantic, q, &mut warnings).await;
    let (floor, fetch) = floor_and_fetch(semantic, limit);
    let request = SearchRequest { text: q.to_owned(), vector, filter, limit: fetch };
    let hits = store.search_docs(&request, kind).await?;
    let query_terms = terms(q);
    let items = hits
        .into_iter()
        .filter(|h| meaningful(floor, h.text_rank, h.cosine))
        .take(limit)
        .map(|h| {
            let why = why(&query_terms, &h.doc.embedding_text(), h.text_rank, h.vector_rank.zip(h.cosine));
            DocHitView { doc: h.doc, score: h.score, why }
        })
        .collect();
    Ok((items, warnings))
}

/// Most docs with declared paths compared glob by glob.
const DOC_PATH_CANDIDATES: usize = 500;

/// Overlap of a new doc or artifact with the docs of its mission (of either kind), judged by
/// [`ScorerModel::judge_doc`]. Candidates come from the vector of the whole text and from full
/// text over what the scorer reads of it (the title and the body's first words): a query of every
/// word of a 120 KB draft took 136 ms against 200 docs of that size.
pub async fn check_doc(store: &dyn Store, semantic: Option<&Semantic>, draft: &Draft) -> Result<Outcome, ApiError> {
    let text = embedding_text(&draft.title, &draft.description);
    let mut warnings = Vec::new();
    let vector = embed_now(semantic, &text).await.map_err(|w| warnings.push(w)).ok();
    let filter = SearchFilter { mission_id: Some(draft.mission_id), ..Default::default() };
    let query = vector.as_ref().map(|(model, v)| VectorQuery { model: model.clone(), vector: v.clone() });
    let compared = ItemText { title: &draft.title, description: &draft.description }.compared_text();
    let request = SearchRequest { text: compared, vector: query, filter, limit: CANDIDATES };
    let mut candidates: HashMap<String, (Doc, Option<f32>)> = store
        .search_docs(&request, None)
        .await?
        .into_iter()
        .map(|h| (h.doc.id.to_string(), (h.doc, h.cosine)))
        .collect();
    let draft_globs = parse_globs(&draft.paths)?;
    if !draft_globs.is_empty() {
        let with_paths = mc_store::DocFilter {
            mission_id: Some(draft.mission_id),
            with_paths: true,
            limit: DOC_PATH_CANDIDATES,
            ..Default::default()
        };
        for d in store.list_docs(&with_paths).await?.items {
            let globs: Vec<Glob> = d.paths.iter().filter_map(|p| Glob::parse(p).ok()).collect();
            if mc_overlap::glob::first_overlap(&globs, &draft_globs).is_some() {
                candidates.entry(d.id.to_string()).or_insert((d, None));
            }
        }
    }
    let scorer = scorer_of(semantic);
    let mut suggestions = Vec::new();
    let mut blocking = false;
    let titles: Vec<&str> = candidates.values().map(|(d, _)| d.title.as_str()).collect();
    let title_cos = title_cosines(semantic, &draft.title, &titles).await;
    for ((doc, cos), title_cos) in candidates.values().zip(title_cos.into_iter().chain(std::iter::repeat(None))) {
        if let Some((suggestion, blocks)) = judge(&scorer, draft, &draft_globs, Candidate::doc(doc), *cos, title_cos) {
            blocking |= blocks;
            suggestions.push(suggestion);
        }
    }
    rank(&mut suggestions);
    warnings.extend(semantic.and_then(Semantic::calibration_warning));
    Ok(Outcome { suggestions, blocking, warnings, vector })
}

/// Stores a freshly computed vector for a new doc (best effort: the worker fills gaps).
pub async fn store_doc_vector(store: &dyn Store, doc: &Doc, vector: Option<(String, Vec<f32>)>) {
    let Some((model, v)) = vector else { return };
    let text_hash = mc_domain::ledger::sha256_hex(doc.embedding_text().as_bytes());
    let item = DocEmbedded { doc_id: doc.id, text_hash, vector: v };
    if let Err(e) = store.put_doc_embeddings(&model, vec![item]).await {
        tracing::warn!(doc = %doc.id, error = %e, "could not store the vector of a new doc; the worker will retry");
    }
}

/// Embeds tasks, then klusters, then docs, whose text has no current vector, one batch; returns how many
/// were embedded. The server passes its [prepared] embedder. Tasks are found by a walk over their
/// changed texts (`cursor`, kept by the caller between passes, see [`TextCursor`]), so a pass that
/// finds nothing reads only the texts changed since the last one.
pub async fn embed_pending_once(
    store: &dyn Store,
    embedder: &dyn Embedder,
    batch: usize,
    cursor: &mut TextCursor,
) -> mc_domain::Result<usize> {
    let model = embedder.model_id();
    let page = store.pending_embeddings_from(model, batch, cursor).await?;
    if !page.jobs.is_empty() {
        let items = embed_jobs(
            embedder,
            page.jobs,
            |j| &j.text,
            |j, vector| Embedded { task_id: j.task_id, text_hash: j.text_hash, vector },
        )
        .await?;
        let n = items.len();
        store.put_embeddings(model, items).await?;
        // only once the page's vectors are stored: a failed page is asked for again
        *cursor = page.next;
        return Ok(n);
    }
    *cursor = page.next;
    let jobs = store.pending_kluster_embeddings(model, batch).await?;
    if !jobs.is_empty() {
        let items = embed_jobs(
            embedder,
            jobs,
            |j| &j.text,
            |j, vector| KlusterEmbedded { kluster_id: j.kluster_id, text_hash: j.text_hash, vector },
        )
        .await?;
        let n = items.len();
        store.put_kluster_embeddings(model, items).await?;
        return Ok(n);
    }
    let jobs = store.pending_doc_embeddings(model, batch).await?;
    let items = embed_jobs(
        embedder,
        jobs,
        |j| &j.text,
        |j, vector| DocEmbedded { doc_id: j.doc_id, text_hash: j.text_hash, vector },
    )
    .await?;
    let n = items.len();
    if n > 0 {
        store.put_doc_embeddings(model, items).await?;
    }
    Ok(n)
}

/// Embeds the texts of `jobs` in one call and pairs each job with its vector.
async fn embed_jobs<J, T>(
    embedder: &dyn Embedder,
    jobs: Vec<J>,
    text: impl Fn(&J) -> &String,
    item: impl Fn(J, Vec<f32>) -> T,
) -> mc_domain::Result<Vec<T>> {
    if jobs.is_empty() {
        return Ok(vec![]);
    }
    let texts: Vec<String> = jobs.iter().map(|j| text(j).clone()).collect();
    let vectors = embedder.embed(&texts).await.map_err(|e| mc_domain::Error::Unavailable(e.to_string()))?;
    Ok(jobs.into_iter().zip(vectors).map(|(j, v)| item(j, v)).collect())
}

/// Longest wait between two passes of the embedding worker while it finds nothing to do. New
/// tasks created with the overlap check get their vector at once; this bounds how late a bulk
/// import, an edited text or a new model is embedded after a quiet spell.
pub const EMBED_IDLE_MAX: Duration = Duration::from_secs(10);

/// The embedding worker: fills missing vectors (new texts, or all of them after a model change).
pub async fn run_embedder(
    store: Arc<dyn Store>,
    embedder: Arc<dyn Embedder>,
    every: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    const BATCH: usize = 32;
    let cursor = Arc::new(tokio::sync::Mutex::new(TextCursor::default()));
    // finding nothing to embed still reads every kluster's and doc's text: back off while idle
    crate::worker::periodic("embedding worker", every, EMBED_IDLE_MAX, shutdown, BATCH, || {
        let (store, embedder, cursor) = (Arc::clone(&store), Arc::clone(&embedder), Arc::clone(&cursor));
        async move {
            let mut cursor = cursor.lock().await;
            embed_pending_once(store.as_ref(), embedder.as_ref(), BATCH, &mut cursor).await
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn recent_vectors_drop_the_least_recently_used() {
        let mut recent = RecentVectors::new(2);
        recent.put("a".into(), vec![1.0]);
        recent.put("b".into(), vec![2.0]);
        assert_eq!(recent.get("a"), Some(vec![1.0]), "reading a makes b the oldest");
        recent.put("c".into(), vec![3.0]);
        assert_eq!(recent.get("b"), None);
        assert_eq!(recent.get("a"), Some(vec![1.0]));
        assert_eq!(recent.get("c"), Some(vec![3.0]));
        // Putting a text again replaces its vector without evicting another.
        recent.put("c".into(), vec![4.0]);
        assert_eq!(recent.entries.len(), 2);
        assert_eq!(recent.get("c"), Some(vec![4.0]));
    }

    /// Counts the texts it is asked to embed.
    #[derive(Debug)]
    struct Counting {
        inner: mc_embed::HashingEmbedder,
        texts: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Embedder for Counting {
        fn model_id(&self) -> &str {
            self.inner.model_id()
        }
        fn dim(&self) -> usize {
            self.inner.dim()
        }
        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, mc_embed::EmbedError> {
            self.texts.fetch_add(texts.len(), Ordering::SeqCst);
            self.inner.embed(texts).await
        }
    }

    #[tokio::test]
    async fn the_bundled_model_is_given_canonical_texts_and_stores_them_under_their_own_id() {
        let raw: Arc<dyn Embedder> = Arc::new(mc_embed::PocketEmbedder::new());
        let semantic = Semantic::new(Arc::clone(&raw));
        let id = format!(
            "{}+{}+{}",
            mc_embed::POCKET_MODEL_ID,
            mc_overlap::thesaurus::REVISION,
            mc_overlap::text::ACRONYM_REVISION
        );
        assert_eq!(semantic.embedder.model_id(), id, "vectors of canonical texts are not mixed with plain ones");
        assert_eq!(prepared(Arc::clone(&raw)).model_id(), id, "the worker and benchmarks store under the same id");

        let (a, b) =
            ("Restart crashed consumers automatically", "Relaunch dead queue readers without manual intervention");
        let plain = raw.embed(&[a.to_owned(), b.to_owned()]).await.expect("plain");
        let (model, va) = embed_now(Some(&semantic), a).await.expect("a");
        let (_, vb) = embed_now(Some(&semantic), b).await.expect("b");
        assert_eq!(model, id);
        let (before, after) = (cosine(&plain[0], &plain[1]), cosine(&va, &vb));
        assert!(after > before + 0.3, "the same work in other words: cosine {before:.2} plain, {after:.2} canonical");

        // what the worker embeds is what the request path embeds
        let worker = prepared(raw).embed(&[a.to_owned()]).await.expect("worker");
        assert!(cosine(&worker[0], &va) > 0.999);
    }

    #[tokio::test]
    async fn a_text_embedded_again_comes_from_the_recent_vectors() {
        let counting = Arc::new(Counting { inner: mc_embed::HashingEmbedder::default(), texts: AtomicUsize::new(0) });
        let semantic = Semantic::new(counting.clone());
        let (model, first) = embed_now(Some(&semantic), "Fix the flaky login test").await.expect("embedded");
        assert_eq!(model, semantic.embedder.model_id(), "the id of the prepared embedder");
        assert!(model.starts_with(counting.model_id()), "{model}");
        let (_, again) = embed_now(Some(&semantic), "Fix the flaky login test").await.expect("embedded");
        assert_eq!(first, again);
        assert_eq!(counting.texts.load(Ordering::SeqCst), 1, "the second request did not run the model");
        let (_, other) = embed_now(Some(&semantic), "Translate the billing docs").await.expect("embedded");
        assert_ne!(first, other);
        assert_eq!(counting.texts.load(Ordering::SeqCst), 2);
    }
}
