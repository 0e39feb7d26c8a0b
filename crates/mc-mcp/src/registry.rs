//! The one list of tools: name, toolset, description and input schema of each. Every transport
//! (stdio, Streamable HTTP, `GET /mcp/tools`) lists tools from here, and `handlers::call`
//! dispatches on the same names. The names are a contract checked against `tools.golden.json`.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, OnceLock};

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde_json::Value;

use crate::args;

/// A group of tools an agent can load alone (`MC_MCP_TOOLSETS=core,search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Toolset {
    /// The work loop: load a kluster, claim, heartbeat, release, complete.
    Core,
    /// Finding work and checking for overlap.
    Search,
    /// Browsing missions and klusters, creating and changing tasks.
    Plan,
}

impl Toolset {
    pub const ALL: [Toolset; 3] = [Toolset::Core, Toolset::Search, Toolset::Plan];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Core => "core",
            Self::Search => "search",
            Self::Plan => "plan",
        }
    }
}

impl fmt::Display for Toolset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which toolsets a session serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolsets(BTreeSet<Toolset>);

impl Default for Toolsets {
    fn default() -> Self {
        Self::all()
    }
}

impl Toolsets {
    pub fn all() -> Self {
        Self(Toolset::ALL.into_iter().collect())
    }

    /// Parses `core,search` (also `all`); blank means all. Unknown names are refused, naming the
    /// valid ones.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut set = BTreeSet::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match Toolset::ALL.into_iter().find(|t| t.as_str().eq_ignore_ascii_case(part)) {
                Some(t) => {
                    set.insert(t);
                }
                None if part.eq_ignore_ascii_case("all") => return Ok(Self::all()),
                None => {
                    let valid: Vec<&str> = Toolset::ALL.iter().map(|t| t.as_str()).collect();
                    return Err(format!("unknown toolset `{part}` (valid: {}, or all)", valid.join(", ")));
                }
            }
        }
        Ok(if set.is_empty() { Self::all() } else { Self(set) })
    }

    pub fn contains(&self, t: Toolset) -> bool {
        self.0.contains(&t)
    }

    pub fn is_all(&self) -> bool {
        self.0.len() == Toolset::ALL.len()
    }
}

impl fmt::Display for Toolsets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|t| t.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

/// One tool: what an agent reads in `tools/list`.
#[derive(Debug)]
pub struct ToolSpec {
    pub name: &'static str,
    pub toolset: Toolset,
    pub description: &'static str,
    /// Changes nothing (advertised as `readOnlyHint`, so clients may call it without asking).
    pub read_only: bool,
    schema: fn() -> JsonObject,
}

macro_rules! spec {
    ($name:literal, $set:ident, $ro:literal, $args:ty, $desc:literal) => {
        ToolSpec {
            name: $name,
            toolset: Toolset::$set,
            description: $desc,
            read_only: $ro,
            schema: input_schema::<$args>,
        }
    };
}

/// Every tool, in the order `tools/list` shows them.
pub static TOOLS: &[ToolSpec] = &[
    spec!(
        "load_kluster_workspace",
        Core,
        true,
        args::LoadKlusterWorkspace,
        "Start here: a kluster, its mission, its ready, claimed and waiting tasks, its docs, and recent ledger events."
    ),
    spec!("get_task", Core, true, args::TaskRef, "One task in full: description, dependencies, lease."),
    spec!(
        "list_ready_tasks",
        Core,
        true,
        args::ListReadyTasks,
        "Open tasks whose dependencies are done, most urgent first."
    ),
    spec!(
        "claim_next_task",
        Core,
        false,
        args::ClaimNextTask,
        "Claim the most urgent ready task of a kluster (task is null when none is left). Heartbeat before the \
         lease expires."
    ),
    spec!(
        "claim_task",
        Core,
        false,
        args::ClaimTask,
        "Claim one task (also takes over a lease your agent already holds)."
    ),
    spec!("heartbeat_task", Core, false, args::HeartbeatTask, "Renew the lease on a task you hold."),
    spec!(
        "release_task",
        Core,
        false,
        args::FencedTaskRef,
        "Give back a task you hold without finishing it; it reopens."
    ),
    spec!("complete_task", Core, false, args::FencedTaskRef, "Mark a task you hold as done."),
    spec!(
        "search_tasks",
        Search,
        true,
        args::SearchTasks,
        "Search tasks by meaning and wording; each hit says why it matched."
    ),
    spec!(
        "get_overlap_suggestions",
        Search,
        true,
        args::GetOverlapSuggestions,
        "Existing work that a draft or existing task (or, with kind, a draft doc) duplicates or relates to. Creates \
         nothing."
    ),
    spec!(
        "search_docs",
        Search,
        true,
        args::SearchDocs,
        "Search docs and artifacts by meaning and wording: what is already written. Hits carry an excerpt."
    ),
    spec!("get_doc", Search, true, args::DocRef, "One doc or artifact in full, with its version."),
    spec!("list_missions", Plan, true, args::ListMissions, "Missions: bounded objectives."),
    spec!("list_klusters", Plan, true, args::ListKlusters, "Klusters: workstreams inside a mission."),
    spec!(
        "create_task",
        Plan,
        false,
        args::CreateTask,
        "Create a task; returns overlap_suggestions. A duplicate of live work is refused unless acknowledged."
    ),
    spec!(
        "create_doc",
        Plan,
        false,
        args::CreateDoc,
        "Write a doc or artifact; returns overlap_suggestions. A duplicate of an existing doc is refused unless \
         acknowledged."
    ),
    spec!(
        "update_doc",
        Plan,
        false,
        args::UpdateDoc,
        "Change a doc as its next version; give if_version to refuse overwriting someone else's change."
    ),
    spec!(
        "update_task",
        Plan,
        false,
        args::UpdateTask,
        "Change a task's fields and/or status; lists given replace the current ones."
    ),
];

/// The tool named `name`, if it exists at all.
pub fn find(name: &str) -> Option<&'static ToolSpec> {
    TOOLS.iter().find(|t| t.name == name)
}

/// The MCP description of every tool, built once.
fn all_tools() -> &'static [(Toolset, Tool)] {
    static CELL: OnceLock<Vec<(Toolset, Tool)>> = OnceLock::new();
    CELL.get_or_init(|| {
        TOOLS
            .iter()
            .map(|s| {
                let mut tool = Tool::new(s.name, s.description, Arc::new((s.schema)()));
                if s.read_only {
                    tool = tool.with_annotations(ToolAnnotations::new().read_only(true));
                }
                (s.toolset, tool)
            })
            .collect()
    })
}

/// The tools of `sets`, in registry order.
pub fn tools(sets: &Toolsets) -> Vec<Tool> {
    all_tools().iter().filter(|(set, _)| sets.contains(*set)).map(|(_, t)| t.clone()).collect()
}

/// The tool named `name` if `sets` serves it.
pub fn tool(name: &str, sets: &Toolsets) -> Option<Tool> {
    all_tools().iter().find(|(set, t)| t.name == name && sets.contains(*set)).map(|(_, t)| t.clone())
}

/// The `tools/list` result of `sets` as JSON (`{"tools": [...]}`), as sent on the wire.
pub fn list_json(sets: &Toolsets) -> Value {
    serde_json::json!({ "tools": tools(sets) })
}

/// The input schema of `T`: derived by schemars, then trimmed of what costs tokens and tells an
/// agent nothing (`$schema`, titles, integer formats, `null` in the types of optional fields).
fn input_schema<T: JsonSchema>() -> JsonObject {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut value = generator.into_root_schema_for::<T>().to_value();
    compact(&mut value);
    match value {
        Value::Object(map) => map,
        // Every argument type is a struct, whose schema is an object.
        _ => JsonObject::new(),
    }
}

/// Trims one schema object; recurses into the schemas it holds (property names are left alone).
fn compact(v: &mut Value) {
    let Value::Object(map) = v else { return };
    map.remove("$schema");
    map.remove("title");
    map.remove("format");
    // `Option<T>` comes out as `"type": ["T", "null"]`; absence already says "optional".
    if let Some(Value::Array(types)) = map.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let only = types.remove(0);
            map.insert("type".into(), only);
        }
    }
    if let Some(Value::Array(options)) = map.get_mut("anyOf") {
        options.retain(|o| o.get("type").is_none_or(|t| t != "null"));
        if options.len() == 1 {
            let only = options.remove(0);
            map.remove("anyOf");
            if let Value::Object(inner) = only {
                for (k, val) in inner {
                    map.entry(k).or_insert(val);
                }
            }
        }
    }
    if let Some(Value::Array(values)) = map.get_mut("enum") {
        values.retain(|v| !v.is_null());
    }
    if map.get("default").is_some_and(Value::is_null) {
        map.remove("default");
    }
    // Unsigned integers come with `minimum: 0`; keep a minimum only where a range was set.
    if map.get("minimum").is_some_and(|m| m == 0) && map.get("maximum").is_none() {
        map.remove("minimum");
    }
    if let Some(Value::Object(props)) = map.get_mut("properties") {
        props.values_mut().for_each(compact);
    }
    if let Some(items) = map.get_mut("items") {
        compact(items);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(options)) = map.get_mut(key) {
            options.iter_mut().for_each(compact);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn golden_path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools.golden.json")
    }

    /// The tool list is a contract: a change shows in review as a change of `tools.golden.json`.
    /// Regenerate it with `MC_UPDATE_GOLDEN=1 cargo test -p mc-mcp`.
    #[test]
    fn the_tool_list_matches_the_golden_file() {
        let got = serde_json::to_string_pretty(&list_json(&Toolsets::all())).expect("json") + "\n";
        if std::env::var_os("MC_UPDATE_GOLDEN").is_some() {
            std::fs::write(golden_path(), &got).expect("write the golden file");
        }
        let want = std::fs::read_to_string(golden_path()).expect("read tools.golden.json");
        assert!(got == want, "tools/list changed; if intended, rerun with MC_UPDATE_GOLDEN=1:\n{got}");
    }

    #[test]
    fn names_are_unique_and_every_tool_has_an_object_schema() {
        let mut names: Vec<&str> = TOOLS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TOOLS.len());
        for (_, t) in all_tools() {
            assert_eq!(t.input_schema.get("type"), Some(&Value::from("object")), "{}", t.name);
            assert_eq!(t.input_schema.get("additionalProperties"), Some(&Value::Bool(false)), "{}", t.name);
            let text = serde_json::to_string(&*t.input_schema).expect("json");
            for noise in ["\"null\"", "$schema", "\"format\":"] {
                assert!(!text.contains(noise), "{}: {noise} left in {text}", t.name);
            }
            assert!(t.input_schema.get("title").is_none(), "{}", t.name);
        }
    }

    /// The budget of the issue: the full list under 16 KB of JSON (about 4,000 tokens).
    #[test]
    fn the_full_list_stays_within_its_token_budget() {
        let full = serde_json::to_vec(&list_json(&Toolsets::all())).expect("json").len();
        let core = serde_json::to_vec(&list_json(&Toolsets::parse("core").expect("core"))).expect("json").len();
        assert!(full < 16_000, "tools/list is {full} bytes");
        assert!(core < full);
    }

    #[test]
    fn toolsets_parse_with_a_helpful_error() {
        assert_eq!(Toolsets::parse("").expect("blank"), Toolsets::all());
        assert_eq!(Toolsets::parse("all").expect("all"), Toolsets::all());
        let core = Toolsets::parse(" Core , search").expect("two");
        assert!(core.contains(Toolset::Core) && core.contains(Toolset::Search) && !core.contains(Toolset::Plan));
        assert_eq!(core.to_string(), "core,search");
        assert_eq!(
            Toolsets::parse("core,bogus").expect_err("bogus"),
            "unknown toolset `bogus` (valid: core, search, plan, or all)"
        );
        assert_eq!(tools(&core).len(), TOOLS.iter().filter(|t| t.toolset != Toolset::Plan).count());
        assert!(tool("create_task", &core).is_none() && tool("claim_task", &core).is_some());
    }
}
