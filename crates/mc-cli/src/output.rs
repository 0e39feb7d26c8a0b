//! Rendering for humans (borderless tables for lists, key/value blocks for one entity) and for
//! machines (`--json`: the API's response body, pretty-printed). Ids are always shown in full.

use std::fmt::{self, Write as _};
use std::io::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::{ContentArrangement, Table, presets};
use mc_api::{
    Doc, DocHitView, Kluster, KlusterHitView, LedgerEvent, Mission, OverlapRelation, OverlapSuggestion, SearchHitView,
    Task,
};
use serde::Serialize;

/// Prints one line (or block) on stdout. Unlike `println!` it returns an error instead of
/// panicking when stdout is gone (`mc task list | head -1`).
pub fn line(s: impl fmt::Display) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{s}")?;
    out.flush()?;
    Ok(())
}

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    line(serde_json::to_string_pretty(value)?)
}

/// A warning from the server, as printed on stderr.
pub fn warning_line(w: &str) -> String {
    format!("warning: {}", w.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Prints the server's warnings on stderr, one `warning:` line each.
pub fn warnings(items: &[String]) {
    for w in items {
        eprintln!("{}", warning_line(w));
    }
}

/// Whether an error is stdout having been closed by the reader.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().filter_map(|e| e.downcast_ref::<std::io::Error>()).any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}

/// A timestamp as `2026-01-02T03:04:05Z`.
pub fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A list as `a, b`, or `-` when empty.
fn list<T: ToString>(items: &[T]) -> String {
    if items.is_empty() { "-".to_owned() } else { items.iter().map(T::to_string).collect::<Vec<_>>().join(", ") }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// A borderless table with upper-case headers, columns two spaces apart, no trailing blanks.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled);
    t.set_header(header.to_vec());
    for row in rows {
        t.add_row(row);
    }
    let last = header.len().saturating_sub(1);
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, if i == last { 0 } else { 2 }));
    }
    t.trim_fmt()
}

/// Key/value lines with the keys aligned; multi-line values are indented under their first line.
pub fn block(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (k, v) in rows {
        let mut lines = v.lines();
        let first = lines.next().unwrap_or("");
        let _ = writeln!(out, "{k:<width$}  {first}");
        for line in lines {
            let _ = writeln!(out, "{:width$}  {line}", "");
        }
    }
    out.trim_end().to_owned()
}

/// The line printed under a list when there is a next page.
pub fn next_page(flag: &str, cursor: Option<&str>) -> Option<String> {
    cursor.map(|c| format!("(more: pass {flag} {c})"))
}

pub fn mission(m: &Mission) -> String {
    block(&[
        ("id", m.id.to_string()),
        ("name", m.name.clone()),
        ("status", m.status.as_str().to_owned()),
        ("created", time(m.created_at)),
        ("updated", time(m.updated_at)),
        ("description", or_dash(&m.description).to_owned()),
    ])
}

pub fn missions(items: &[Mission]) -> String {
    if items.is_empty() {
        return "no missions".into();
    }
    table(
        &["ID", "STATUS", "UPDATED", "NAME"],
        items
            .iter()
            .map(|m| vec![m.id.to_string(), m.status.as_str().into(), time(m.updated_at), m.name.clone()])
            .collect(),
    )
}

pub fn kluster(k: &Kluster) -> String {
    block(&[
        ("id", k.id.to_string()),
        ("name", k.name.clone()),
        ("mission", k.mission_id.to_string()),
        ("status", k.status.as_str().to_owned()),
        ("created", time(k.created_at)),
        ("updated", time(k.updated_at)),
        ("description", or_dash(&k.description).to_owned()),
    ])
}

pub fn klusters(items: &[Kluster]) -> String {
    if items.is_empty() {
        return "no klusters".into();
    }
    table(
        &["ID", "MISSION", "STATUS", "NAME"],
        items
            .iter()
            .map(|k| vec![k.id.to_string(), k.mission_id.to_string(), k.status.as_str().into(), k.name.clone()])
            .collect(),
    )
}

pub fn task(t: &Task) -> String {
    let mut rows = vec![
        ("id", t.id.to_string()),
        ("title", t.title.clone()),
        ("status", t.status.as_str().to_owned()),
        ("priority", t.priority.get().to_string()),
        ("mission", t.mission_id.to_string()),
        ("kluster", t.kluster_id.to_string()),
        ("labels", list(&t.labels)),
        ("paths", list(&t.paths)),
        ("depends on", list(&t.depends_on)),
    ];
    match &t.lease {
        Some(l) => {
            rows.push(("holder", l.holder.clone()));
            rows.push(("lease until", time(l.expires_at)));
        }
        None => rows.push(("holder", "-".into())),
    }
    rows.extend([
        ("fencing token", t.fencing_token.to_string()),
        ("created by", t.created_by.clone()),
        ("created", time(t.created_at)),
        ("updated", time(t.updated_at)),
        ("description", or_dash(&t.description).to_owned()),
    ]);
    block(&rows)
}

pub fn tasks(items: &[Task]) -> String {
    if items.is_empty() {
        return "no tasks".into();
    }
    table(
        &["ID", "STATUS", "PRI", "HOLDER", "TITLE"],
        items
            .iter()
            .map(|t| {
                vec![
                    t.id.to_string(),
                    t.status.as_str().into(),
                    t.priority.get().to_string(),
                    t.lease.as_ref().map_or("-", |l| l.holder.as_str()).to_owned(),
                    t.title.clone(),
                ]
            })
            .collect(),
    )
}

pub fn ledger(items: &[LedgerEvent]) -> String {
    if items.is_empty() {
        return "no ledger events".into();
    }
    table(
        &["SEQ", "AT", "ACTOR", "ACTION", "ENTITY"],
        items
            .iter()
            .map(|e| {
                vec![
                    e.seq.to_string(),
                    time(e.at),
                    e.actor.clone(),
                    e.action.clone(),
                    format!("{} {}", e.entity_kind, e.entity_id),
                ]
            })
            .collect(),
    )
}

/// Existing work that overlaps a new or draft task, best first, with why the top one matched.
pub fn suggestions(items: &[OverlapSuggestion]) -> String {
    if items.is_empty() {
        return "no overlap found".into();
    }
    let t = table(
        &["RELATION", "SCORE", "ID", "STATUS", "HOLDER", "TITLE"],
        items
            .iter()
            .map(|s| {
                vec![
                    relation(s.relation).into(),
                    format!("{:.2}", s.score),
                    s.id.clone(),
                    s.status.clone(),
                    s.holder.clone().unwrap_or_else(|| "-".into()),
                    s.title.clone(),
                ]
            })
            .collect(),
    );
    match items.first().filter(|s| !s.reasons.is_empty()) {
        Some(top) => format!("{t}\ntop match: {}", top.reasons.join("; ")),
        None => t,
    }
}

fn relation(r: OverlapRelation) -> &'static str {
    match r {
        OverlapRelation::Duplicate => "duplicate",
        OverlapRelation::Related => "related",
    }
}

pub fn search_hits(items: &[SearchHitView]) -> String {
    if items.is_empty() {
        return "no matching tasks".into();
    }
    table(
        &["SCORE", "ID", "STATUS", "TITLE", "WHY"],
        items
            .iter()
            .map(|h| {
                vec![
                    format!("{:.4}", h.score),
                    h.task.id.to_string(),
                    h.task.status.as_str().into(),
                    h.task.title.clone(),
                    if h.why.is_empty() { "-".into() } else { h.why.join("; ") },
                ]
            })
            .collect(),
    )
}

pub fn kluster_hits(items: &[KlusterHitView]) -> String {
    if items.is_empty() {
        return "no matching klusters".into();
    }
    table(
        &["SCORE", "ID", "NAME", "WHY"],
        items
            .iter()
            .map(|h| {
                vec![
                    format!("{:.4}", h.score),
                    h.kluster.id.to_string(),
                    h.kluster.name.clone(),
                    if h.why.is_empty() { "-".into() } else { h.why.join("; ") },
                ]
            })
            .collect(),
    )
}

pub fn doc_hits(items: &[DocHitView]) -> String {
    if items.is_empty() {
        return "no matching docs".into();
    }
    table(
        &["SCORE", "ID", "KIND", "TITLE", "WHY"],
        items
            .iter()
            .map(|h| {
                vec![
                    format!("{:.4}", h.score),
                    h.doc.id.to_string(),
                    h.doc.kind.as_str().into(),
                    h.doc.title.clone(),
                    if h.why.is_empty() { "-".into() } else { h.why.join("; ") },
                ]
            })
            .collect(),
    )
}

pub fn doc(d: &Doc) -> String {
    let head = block(&[
        ("id", d.id.to_string()),
        ("kind", d.kind.as_str().to_owned()),
        ("title", d.title.clone()),
        ("version", d.version.to_string()),
        ("mission", d.mission_id.to_string()),
        ("kluster", d.kluster_id.map_or_else(|| "-".to_owned(), |k| k.to_string())),
        ("paths", list(&d.paths)),
        ("created", format!("{} by {}", time(d.created_at), d.created_by)),
        ("updated", time(d.updated_at)),
    ]);
    if d.body.is_empty() { head } else { format!("{head}\n\n{}", d.body) }
}

pub fn docs(items: &[Doc]) -> String {
    if items.is_empty() {
        return "no docs".into();
    }
    table(
        &["ID", "KIND", "VERSION", "UPDATED", "TITLE"],
        items
            .iter()
            .map(|d| {
                vec![
                    d.id.to_string(),
                    d.kind.as_str().into(),
                    d.version.to_string(),
                    time(d.updated_at),
                    d.title.clone(),
                ]
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_borderless_aligned_and_trimmed() {
        let t = table(
            &["ID", "STATUS", "TITLE"],
            vec![
                vec!["a".into(), "open".into(), "First".into()],
                vec!["bbb".into(), "in_progress".into(), "Second one".into()],
            ],
        );
        assert_eq!(t, "ID   STATUS       TITLE\na    open         First\nbbb  in_progress  Second one");
    }

    #[test]
    fn suggestions_show_a_table_and_why_the_top_one_matched() {
        let s = |id: &str, relation, score, holder: Option<&str>, reasons: &[&str]| OverlapSuggestion {
            id: id.into(),
            kind: "task".into(),
            title: format!("Task {id}"),
            status: "open".into(),
            holder: holder.map(str::to_owned),
            relation,
            score,
            reasons: reasons.iter().map(|r| (*r).to_owned()).collect(),
        };
        let out = suggestions(&[
            s("a", OverlapRelation::Duplicate, 0.966, Some("bob"), &["shared wording 100%", "same kluster"]),
            s("b", OverlapRelation::Related, 0.4, None, &["different environment: staging vs production"]),
        ]);
        assert_eq!(
            out,
            "RELATION   SCORE  ID  STATUS  HOLDER  TITLE\n\
             duplicate  0.97   a   open    bob     Task a\n\
             related    0.40   b   open    -       Task b\n\
             top match: shared wording 100%; same kluster"
        );
        assert_eq!(suggestions(&[]), "no overlap found");
    }

    #[test]
    fn blocks_align_keys_and_indent_continuation_lines() {
        let b = block(&[("id", "1".into()), ("description", "line one\nline two".into())]);
        assert_eq!(b, "id           1\ndescription  line one\n             line two");
    }
}
