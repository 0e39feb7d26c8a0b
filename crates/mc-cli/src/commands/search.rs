//! `mc search`: hybrid search over tasks, klusters or docs (full-text and semantic, fused), each hit with why it
//! matched.

use mc_api::{DocSearchQuery, KlusterSearchQuery, SearchQuery};

use super::{CliError, Ctx};
use crate::cli::SearchArgs;
use crate::output;

pub async fn run(ctx: &Ctx, args: SearchArgs) -> anyhow::Result<()> {
    let q = args.words.join(" ").trim().to_owned();
    if q.is_empty() {
        return Err(CliError::usage(
            "the search query is empty",
            Some("pass one or more words, e.g. `mc search helm chart`".to_owned()),
        )
        .into());
    }
    if args.klusters {
        let q = KlusterSearchQuery { q, mission_id: args.mission, limit: args.limit };
        let resp = ctx.client()?.search_klusters(&q).await?;
        if ctx.json() {
            return output::json(&resp);
        }
        output::line(output::kluster_hits(&resp.items))?;
        output::warnings(&resp.warnings);
        return Ok(());
    }
    if args.docs {
        let q = DocSearchQuery {
            q,
            mission_id: args.mission,
            kluster_id: args.kluster,
            kind: args.kind,
            limit: args.limit,
        };
        let resp = ctx.client()?.search_docs(&q).await?;
        if ctx.json() {
            return output::json(&resp);
        }
        output::line(output::doc_hits(&resp.items))?;
        output::warnings(&resp.warnings);
        return Ok(());
    }
    let labels: Vec<&str> =
        args.labels.iter().flat_map(|l| l.split(',')).map(str::trim).filter(|l| !l.is_empty()).collect();
    let q = SearchQuery {
        q,
        mission_id: args.mission,
        kluster_id: args.kluster,
        status: args.status,
        label: (!labels.is_empty()).then(|| labels.join(",")),
        limit: args.limit,
    };
    let resp = ctx.client()?.search(&q).await?;
    if ctx.json() {
        return output::json(&resp);
    }
    output::line(output::search_hits(&resp.items))?;
    output::warnings(&resp.warnings);
    Ok(())
}
