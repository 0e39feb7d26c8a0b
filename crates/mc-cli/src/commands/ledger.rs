//! `mc ledger`: list the hash-chained record of mutations, and verify the chain.

use mc_api::LedgerQuery;

use super::{CliError, Ctx, EXIT_FAILURE};
use crate::cli::LedgerCmd;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: LedgerCmd) -> anyhow::Result<()> {
    match cmd {
        LedgerCmd::List { entity, kind, action, actor, after, limit } => {
            let q = LedgerQuery { entity_id: entity, entity_kind: kind, action, actor, after_seq: after, limit };
            let p = ctx.client()?.list_ledger(&q).await?;
            if ctx.json() {
                return output::json(&p);
            }
            output::line(output::ledger(&p.items))?;
            if let Some(more) = output::next_page("--after", p.next_cursor.as_deref()) {
                output::line(more)?;
            }
            Ok(())
        }
        LedgerCmd::Verify => {
            let v = ctx.client()?.verify_ledger().await?;
            if ctx.json() {
                output::json(&v)?;
                return if v.ok { Ok(()) } else { Err(CliError::silent(EXIT_FAILURE).into()) };
            }
            if v.ok {
                output::line(format_args!("ledger OK: {} events, head {}", v.checked, v.head_hash))?;
                return Ok(());
            }
            let at = v.first_bad_seq.map_or_else(|| "?".to_owned(), |s| s.to_string());
            let problem = v.problem.as_deref().unwrap_or("unknown problem");
            Err(CliError::failure(format!(
                "ledger broken at event {at}: {problem} ({} good events before it, last good head {})",
                v.checked, v.head_hash
            ))
            .into())
        }
    }
}
