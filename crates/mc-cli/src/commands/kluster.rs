//! `mc kluster`: create, list, show, update and archive klusters.

use mc_api::{CreateKluster, ScopeListQuery, UpdateScope};

use super::{CliError, Ctx};
use crate::cli::KlusterCmd;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: KlusterCmd) -> anyhow::Result<()> {
    match cmd {
        KlusterCmd::Create { mission, name, description, idem } => {
            let client = ctx.creating_client(idem.idempotency_key.as_deref())?;
            let k = client.create_kluster(&CreateKluster { mission_id: mission, name, description }).await?;
            show(ctx, &k)
        }
        KlusterCmd::List { mission, all, page } => {
            let q = ScopeListQuery {
                mission_id: mission,
                include_archived: all.then_some(true),
                cursor: page.cursor,
                limit: page.limit,
            };
            let p = ctx.client()?.list_klusters(&q).await?;
            if ctx.json() {
                return output::json(&p);
            }
            output::line(output::klusters(&p.items))?;
            if let Some(more) = output::next_page("--cursor", p.next_cursor.as_deref()) {
                output::line(more)?;
            }
            Ok(())
        }
        KlusterCmd::Show { id } => show(ctx, &ctx.client()?.get_kluster(id).await?),
        KlusterCmd::Update { id, name, description } => {
            if name.is_none() && description.is_none() {
                return Err(
                    CliError::usage("nothing to update", Some("pass --name and/or --description".to_owned())).into()
                );
            }
            show(ctx, &ctx.client()?.update_kluster(id, &UpdateScope { name, description }).await?)
        }
        KlusterCmd::Archive { id } => show(ctx, &ctx.client()?.archive_kluster(id).await?),
    }
}

fn show(ctx: &Ctx, k: &mc_api::Kluster) -> anyhow::Result<()> {
    if ctx.json() {
        return output::json(k);
    }
    output::line(output::kluster(k))?;
    Ok(())
}
