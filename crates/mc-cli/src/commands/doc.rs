//! `mc doc`: write, check, list, show and update docs and artifacts.

use std::io::Read as _;

use mc_api::{CreateDoc, DocKind, DocListQuery, OverlapDraft, UpdateDoc};

use super::{CliError, Ctx};
use crate::cli::{BodyArgs, DocCmd};
use crate::output;

pub async fn run(ctx: &Ctx, cmd: DocCmd) -> anyhow::Result<()> {
    match cmd {
        DocCmd::Create { draft, acknowledge_overlap, idem } => {
            let body = CreateDoc {
                mission_id: draft.mission,
                kluster_id: draft.kluster,
                kind: draft.kind.as_deref().and_then(DocKind::parse),
                body: read_body(&draft.text)?,
                title: draft.title,
                paths: draft.paths,
                acknowledge_overlap: acknowledge_overlap.then_some(true),
            };
            let client = ctx.creating_client(idem.idempotency_key.as_deref())?;
            // A duplicate is refused with `overlap_detected`; `main` prints the suggestions.
            let created = client.create_doc(&body).await?;
            if ctx.json() {
                return output::json(&created);
            }
            output::line(output::doc(&created.doc))?;
            if !created.overlap_suggestions.is_empty() {
                output::line(format_args!("\n{}", output::suggestions(&created.overlap_suggestions)))?;
            }
            output::warnings(&created.warnings);
            Ok(())
        }
        DocCmd::Check { draft } => {
            let draft = OverlapDraft {
                kluster_id: draft.kluster,
                mission_id: draft.mission,
                kind: Some(draft.kind.as_deref().and_then(DocKind::parse).unwrap_or(DocKind::Doc)),
                description: read_body(&draft.text)?,
                title: draft.title,
                paths: draft.paths,
            };
            let resp = ctx.client()?.overlap_draft(&draft).await?;
            if ctx.json() {
                return output::json(&resp);
            }
            output::line(output::suggestions(&resp.overlap_suggestions))?;
            output::warnings(&resp.warnings);
            Ok(())
        }
        DocCmd::List { mission, kluster, kind, page } => {
            let q =
                DocListQuery { mission_id: mission, kluster_id: kluster, kind, cursor: page.cursor, limit: page.limit };
            let p = ctx.client()?.list_docs(&q).await?;
            if ctx.json() {
                return output::json(&p);
            }
            output::line(output::docs(&p.items))?;
            if let Some(more) = output::next_page("--cursor", p.next_cursor.as_deref()) {
                output::line(more)?;
            }
            Ok(())
        }
        DocCmd::Show { id } => show(ctx, &ctx.client()?.get_doc(id).await?),
        DocCmd::Update { id, title, text, paths, if_version } => {
            let body = read_body(&text)?;
            if title.is_none() && body.is_none() && paths.is_empty() {
                let hint = "pass --title, --body, --file and/or --path".to_owned();
                return Err(CliError::usage("nothing to update", Some(hint)).into());
            }
            let patch = UpdateDoc { title, body, paths: (!paths.is_empty()).then_some(paths), if_version };
            show(ctx, &ctx.client()?.update_doc(id, &patch).await?)
        }
    }
}

/// The text given with `--body`, or read from `--file` (`-`: standard input).
fn read_body(args: &BodyArgs) -> anyhow::Result<Option<String>> {
    match (&args.body, &args.file) {
        (Some(b), _) => Ok(Some(b.clone())),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| CliError::usage(format!("cannot read the text from standard input: {e}"), None))?;
            Ok(Some(s))
        }
        (None, Some(path)) => std::fs::read_to_string(path).map(Some).map_err(|e| {
            CliError::usage(
                format!("cannot read {}: {e}", path.display()),
                Some("--file takes a UTF-8 text file".into()),
            )
            .into()
        }),
        (None, None) => Ok(None),
    }
}

fn show(ctx: &Ctx, d: &mc_api::Doc) -> anyhow::Result<()> {
    if ctx.json() {
        return output::json(d);
    }
    output::line(output::doc(d))?;
    Ok(())
}
