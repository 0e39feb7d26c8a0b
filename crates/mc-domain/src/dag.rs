//! Dependency graph rules: task dependencies form a DAG; an edge set that would close a cycle is
//! refused with the cycle spelled out.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use crate::{Error, TaskId};

/// Looks for a cycle that would appear if `task` depended on `new_deps`, given the existing
/// edges (`edges(t)` = what `t` depends on). Returns the cycle as a path that starts and ends at
/// `task`, or `None`.
pub fn find_cycle<F>(task: TaskId, new_deps: &[TaskId], mut edges: F) -> Result<Option<Vec<TaskId>>, Error>
where
    F: FnMut(TaskId) -> Result<Vec<TaskId>, Error>,
{
    // Depth-first search from each new dependency, remembering parents to rebuild the path.
    let mut parent: HashMap<TaskId, TaskId> = HashMap::new();
    let mut seen: HashSet<TaskId> = HashSet::new();
    for &dep in new_deps {
        if dep == task {
            return Ok(Some(vec![task, task]));
        }
        if !seen.insert(dep) {
            continue;
        }
        parent.insert(dep, task);
        let mut stack = vec![dep];
        while let Some(node) = stack.pop() {
            for next in edges(node)? {
                if next == task {
                    let mut path = vec![task, node];
                    let mut cur = node;
                    while let Some(&p) = parent.get(&cur) {
                        if p == task {
                            break;
                        }
                        path.push(p);
                        cur = p;
                    }
                    // path is task ← node ← ... ← dep; turn it into task → dep → ... → node → task
                    let mut cycle = vec![task];
                    cycle.extend(path[1..].iter().rev());
                    cycle.push(task);
                    return Ok(Some(cycle));
                }
                if seen.insert(next) {
                    parent.insert(next, node);
                    stack.push(next);
                }
            }
        }
    }
    Ok(None)
}

/// The conflict returned for a cycle, with the path printed `a → b → a`.
pub fn cycle_error(cycle: &[TaskId]) -> Error {
    let printed: Vec<String> = cycle.iter().map(ToString::to_string).collect();
    Error::conflict(
        "dependency_cycle",
        format!("dependencies would form a cycle: {}", printed.join(" → ")),
        json!({ "cycle": printed }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_and_prints_cycles() {
        let (a, b, c) = (TaskId::new(), TaskId::new(), TaskId::new());
        // b depends on c, c depends on a; making a depend on b closes a → b → c → a.
        let edges = |t: TaskId| -> Result<Vec<TaskId>, Error> {
            Ok(if t == b {
                vec![c]
            } else if t == c {
                vec![a]
            } else {
                vec![]
            })
        };
        let cycle = find_cycle(a, &[b], edges).expect("no error").expect("cycle found");
        assert_eq!(cycle, vec![a, b, c, a]);
        let msg = cycle_error(&cycle).to_string();
        assert_eq!(msg, format!("dependencies would form a cycle: {a} → {b} → {c} → {a}"));
        assert_eq!(find_cycle(a, &[a], edges).expect("ok"), Some(vec![a, a]));
        assert_eq!(find_cycle(c, &[], edges).expect("ok"), None);
        // a diamond is not a cycle
        let d = TaskId::new();
        let diamond = |t: TaskId| -> Result<Vec<TaskId>, Error> { Ok(if t == b || t == c { vec![d] } else { vec![] }) };
        assert_eq!(find_cycle(a, &[b, c], diamond).expect("ok"), None);
    }
}
