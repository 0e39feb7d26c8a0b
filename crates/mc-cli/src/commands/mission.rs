//! `mc mission`: create, list, show, update and archive missions.

use mc_api::{CreateMission, ScopeListQuery, UpdateScope};

use super::{CliError, Ctx};
use crate::cli::MissionCmd;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: MissionCmd) -> anyhow::Result<()> {
    match cmd {
        MissionCmd::Create { name, description, idem } => {
            let client = ctx.creating_client(idem.idempotency_key.as_deref())?;
            let m = client.create_mission(&CreateMission { name, description }).await?;
            show(ctx, &m)
        }
        MissionCmd::List { all, page } => {
            let q = ScopeListQuery {
                mission_id: None,
                include_archived: all.then_some(true),
                cursor: page.cursor,
                limit: page.limit,
            };
            let p = ctx.client()?.list_missions(&q).await?;
            if ctx.json() {
                return output::json(&p);
            }
            output::line(output::missions(&p.items))?;
            if let Some(more) = output::next_page("--cursor", p.next_cursor.as_deref()) {
                output::line(more)?;
            }
            Ok(())
        }
        MissionCmd::Show { id } => show(ctx, &ctx.client()?.get_mission(id).await?),
        MissionCmd::Update { id, name, description } => {
            if name.is_none() && description.is_none() {
                return Err(
                    CliError::usage("nothing to update", Some("pass --name and/or --description".to_owned())).into()
                );
            }
            show(ctx, &ctx.client()?.update_mission(id, &UpdateScope { name, description }).await?)
        }
        MissionCmd::Archive { id } => show(ctx, &ctx.client()?.archive_mission(id).await?),
    }
}

fn show(ctx: &Ctx, m: &mc_api::Mission) -> anyhow::Result<()> {
    if ctx.json() {
        return output::json(m);
    }
    output::line(output::mission(m))?;
    Ok(())
}
