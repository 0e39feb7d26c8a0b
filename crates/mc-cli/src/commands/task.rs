//! `mc task`: tasks and their ownership. Claims remember the lease's fencing token per agent (see
//! `leases`), so heartbeat, release, done, update and transition can send it without `--fence`.

use mc_api::{
    ClaimTask, CreateTask, FencedRequest, HeartbeatTask, OverlapDraft, OverlapResponse, ReadyQuery, Task,
    TaskListQuery, TransitionTask, UpdateTask,
};
use mc_domain::{TaskId, TaskStatus};

use super::{CliError, Ctx};
use crate::cli::{FenceArg, TaskCmd};
use crate::leases::LeaseBook;
use crate::output;

pub async fn run(ctx: &Ctx, cmd: TaskCmd) -> anyhow::Result<()> {
    match cmd {
        TaskCmd::Create {
            kluster,
            title,
            description,
            priority,
            depends_on,
            paths,
            labels,
            acknowledge_overlap,
            idem,
        } => {
            let client = ctx.creating_client(idem.idempotency_key.as_deref())?;
            let body = CreateTask {
                kluster_id: kluster,
                title,
                description,
                priority,
                depends_on,
                paths,
                labels,
                acknowledge_overlap: acknowledge_overlap.then_some(true),
                check_overlap: None,
            };
            // A duplicate is refused with `overlap_detected`; `main` prints the suggestions.
            let created = client.create_task(&body).await?;
            if ctx.json() {
                return output::json(&created);
            }
            output::line(output::task(&created.task))?;
            if !created.overlap_suggestions.is_empty() {
                output::line(format_args!("\n{}", output::suggestions(&created.overlap_suggestions)))?;
            }
            output::warnings(&created.warnings);
            Ok(())
        }
        TaskCmd::Check { kluster, mission, title, description, paths } => {
            let draft =
                OverlapDraft { kluster_id: kluster, mission_id: mission, title, description, paths, kind: None };
            overlap(ctx, &ctx.client()?.overlap_draft(&draft).await?)
        }
        TaskCmd::Overlap { id } => overlap(ctx, &ctx.client()?.task_overlap(id).await?),
        TaskCmd::List { kluster, mission, status, label, holder, page } => {
            let q = TaskListQuery {
                kluster_id: kluster,
                mission_id: mission,
                status,
                label,
                holder,
                cursor: page.cursor,
                limit: page.limit,
            };
            let p = ctx.client()?.list_tasks(&q).await?;
            if ctx.json() {
                return output::json(&p);
            }
            output::line(output::tasks(&p.items))?;
            if let Some(more) = output::next_page("--cursor", p.next_cursor.as_deref()) {
                output::line(more)?;
            }
            Ok(())
        }
        TaskCmd::Show { id } => show(ctx, &ctx.client()?.get_task(id).await?),
        TaskCmd::Update {
            id,
            title,
            description,
            priority,
            labels,
            clear_labels,
            paths,
            clear_paths,
            depends_on,
            clear_depends_on,
            fence,
        } => {
            let mut body = UpdateTask {
                title,
                description,
                priority,
                labels: replace(labels, clear_labels),
                paths: replace(paths, clear_paths),
                depends_on: replace(depends_on, clear_depends_on),
                fencing_token: None,
            };
            if body.title.is_none()
                && body.description.is_none()
                && body.priority.is_none()
                && body.labels.is_none()
                && body.paths.is_none()
                && body.depends_on.is_none()
            {
                return Err(CliError::usage(
                    "nothing to update",
                    Some(
                        "pass at least one of --title, --description, --priority, --label, --path, --depends-on".into(),
                    ),
                )
                .into());
            }
            body.fencing_token = optional_fence(ctx, id, fence)?;
            let t = ctx.client()?.update_task(id, &body).await?;
            remember(ctx, &t);
            show(ctx, &t)
        }
        TaskCmd::Transition { id, status, fence } => transition(ctx, id, status, fence).await,
        TaskCmd::Start { id, fence } => transition(ctx, id, TaskStatus::InProgress, fence).await,
        TaskCmd::Review { id, fence } => transition(ctx, id, TaskStatus::Review, fence).await,
        TaskCmd::Block { id, fence } => transition(ctx, id, TaskStatus::Blocked, fence).await,
        TaskCmd::Cancel { id, fence } => transition(ctx, id, TaskStatus::Cancelled, fence).await,
        TaskCmd::Ready { kluster, mission, limit } => {
            let q = ReadyQuery { kluster_id: kluster, mission_id: mission, limit };
            let p = ctx.client()?.ready_tasks(&q).await?;
            if ctx.json() {
                return output::json(&p);
            }
            output::line(output::tasks(&p.items))?;
            Ok(())
        }
        TaskCmd::Claim { id, ttl } => {
            let agent = ctx.agent("claim")?;
            let t = ctx.client()?.claim_task(id, &ClaimTask { ttl_seconds: ttl.ttl }).await?;
            remember_for(&agent, &t);
            report(ctx, &t, claimed_line(&t))
        }
        TaskCmd::ClaimNext { kluster, ttl } => {
            let agent = ctx.agent("claim-next")?;
            let resp = ctx.client()?.claim_next(kluster, &ClaimTask { ttl_seconds: ttl.ttl }).await?;
            if let Some(t) = &resp.task {
                remember_for(&agent, t);
            }
            if ctx.json() {
                return output::json(&resp);
            }
            match &resp.task {
                Some(t) => output::line(claimed_line(t))?,
                None => output::line(format_args!("no ready task in kluster {kluster}"))?,
            }
            Ok(())
        }
        TaskCmd::Heartbeat { id, fence, ttl } => {
            let agent = ctx.agent("heartbeat")?;
            let fencing_token = required_fence(&agent, id, fence)?;
            let body = HeartbeatTask { fencing_token, ttl_seconds: ttl.ttl };
            let t = ctx.client()?.heartbeat_task(id, &body).await?;
            remember_for(&agent, &t);
            let line = match &t.lease {
                Some(l) => format!(
                    "renewed the lease on task {} until {} (fencing token {})",
                    t.id,
                    output::time(l.expires_at),
                    l.fencing_token
                ),
                None => format!("task {} has no lease (status {})", t.id, t.status),
            };
            report(ctx, &t, line)
        }
        TaskCmd::Release { id, fence } => {
            let agent = ctx.agent("release")?;
            let fencing_token = required_fence(&agent, id, fence)?;
            let t = ctx.client()?.release_task(id, &FencedRequest { fencing_token }).await?;
            remember_for(&agent, &t);
            report(ctx, &t, format!("released task {} (now {})", t.id, t.status))
        }
        TaskCmd::Done { id, fence } => {
            let agent = ctx.agent("done")?;
            let fencing_token = required_fence(&agent, id, fence)?;
            let t = ctx.client()?.complete_task(id, &FencedRequest { fencing_token }).await?;
            remember_for(&agent, &t);
            report(ctx, &t, format!("task {} is {}", t.id, t.status))
        }
    }
}

async fn transition(ctx: &Ctx, id: TaskId, status: TaskStatus, fence: FenceArg) -> anyhow::Result<()> {
    let fencing_token = optional_fence(ctx, id, fence)?;
    let t = ctx.client()?.transition_task(id, &TransitionTask { status, fencing_token }).await?;
    remember(ctx, &t);
    report(ctx, &t, format!("task {} is now {}", t.id, t.status))
}

fn show(ctx: &Ctx, t: &Task) -> anyhow::Result<()> {
    if ctx.json() {
        return output::json(t);
    }
    output::line(output::task(t))?;
    Ok(())
}

/// Prints overlap suggestions (or that there are none), and the server's warnings on stderr.
fn overlap(ctx: &Ctx, resp: &OverlapResponse) -> anyhow::Result<()> {
    if ctx.json() {
        return output::json(resp);
    }
    output::line(output::suggestions(&resp.overlap_suggestions))?;
    output::warnings(&resp.warnings);
    Ok(())
}

/// A list flag of `update`: given values (or `--clear-*`) replace the list, else it stays.
fn replace<T>(values: Vec<T>, clear: bool) -> Option<Vec<T>> {
    if clear || !values.is_empty() { Some(values) } else { None }
}

/// Prints the task as JSON, or `line` for humans.
fn report(ctx: &Ctx, t: &Task, line: String) -> anyhow::Result<()> {
    if ctx.json() {
        return output::json(t);
    }
    output::line(line)?;
    Ok(())
}

fn claimed_line(t: &Task) -> String {
    match &t.lease {
        Some(l) => format!(
            "claimed task {} as {} (fencing token {}, lease until {})",
            t.id,
            l.holder,
            l.fencing_token,
            output::time(l.expires_at)
        ),
        None => format!("task {} is {} without a lease", t.id, t.status),
    }
}

/// The fencing token for a write that needs one only while the task is leased: `--fence`, else
/// the one remembered for this agent, else none (the server says if one was needed).
fn optional_fence(ctx: &Ctx, id: TaskId, fence: FenceArg) -> anyhow::Result<Option<u64>> {
    if fence.fence.is_some() {
        return Ok(fence.fence);
    }
    match ctx.global.agent.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        Some(agent) => LeaseBook::from_env()?.get(agent, id),
        None => Ok(None),
    }
}

/// The fencing token for an ownership call: `--fence`, else the one remembered for this agent.
fn required_fence(agent: &str, id: TaskId, fence: FenceArg) -> anyhow::Result<u64> {
    if let Some(f) = fence.fence {
        return Ok(f);
    }
    match LeaseBook::from_env()?.get(agent, id)? {
        Some(f) => Ok(f),
        None => Err(CliError::usage(
            format!("no fencing token known for task {id}; pass --fence N (see `mc task show {id}`)"),
            Some(format!("tokens are remembered per agent when it claims a task; this is agent {agent}")),
        )
        .into()),
    }
}

/// Updates the remembered token after a write by the configured agent, if any.
fn remember(ctx: &Ctx, t: &Task) {
    if let Some(agent) = ctx.global.agent.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        remember_for(agent, t);
    }
}

/// Remembers (or forgets) `agent`'s token for `t`; a failure only warns: the server call is done.
fn remember_for(agent: &str, t: &Task) {
    if let Err(e) = LeaseBook::from_env().and_then(|b| b.record(agent, t)) {
        eprintln!("warning: could not update the remembered fencing tokens: {e:#}");
        if let Some(l) = t.lease.as_ref().filter(|l| l.holder == agent) {
            eprintln!("hint: pass --fence {} to later commands on task {}", l.fencing_token, t.id);
        }
    }
}
