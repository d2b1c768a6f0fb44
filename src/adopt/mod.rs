//! `virtguard adopt`: switches running VirtualDomain resources between
//! ocf:heartbeat and ocf:virtguard without stopping or starting a guest.
//!
//! Per resource, never cluster-wide: mark it (see [`plan::MARKER`]) and set
//! is-managed=false on it alone; change its provider with one
//! epoch-guarded CIB modification; reprobe it (`crm_resource --refresh`);
//! once the new agent's probes find the guest where it ran, and nowhere
//! else, restore its is-managed and drop the mark. Anything else leaves it
//! unmanaged, with a message, and adopt never starts or stops anything. The
//! mark lets a rerun finish (or, with the other `--to`, roll back) a switch
//! that was interrupted.

mod cluster_tools;
#[cfg(test)]
mod fake_cluster;
mod pacemaker;
mod plan;
mod state;
#[cfg(test)]
mod tests;
mod tree;

use std::time::Duration;

use anyhow::{bail, Context};

use crate::deadline::Deadline;
use crate::exec::ExecError;

use cluster_tools::{switch_provider_command_line, ClusterTools, Step, SwitchError};
use plan::{Decision, Marker, ProbeVerdict, MARKER};
use state::{Cib, Monitor};

/// Captured lab-cluster XML (tests/fixtures/adopt/), for the parsers' tests.
#[cfg(test)]
fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/adopt/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub struct Request {
    /// "virtguard" or "heartbeat".
    pub to: String,
    pub resources: Vec<String>,
    pub all: bool,
    pub dry_run: bool,
    /// How long to wait for the new agent's probes, for all resources together.
    pub probe_timeout: Duration,
}

/// Exit codes: 0 done (or nothing to do), 1 refused (nothing changed),
/// 2 something is left unmanaged or a cluster command failed.
pub fn run(request: &Request) -> u8 {
    run_with(request, &pacemaker::Pacemaker)
}

fn run_with(request: &Request, tools: &dyn ClusterTools) -> u8 {
    match adopt(request, tools) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("adopt: {error:#}");
            report_unmanaged(tools);
            2
        }
    }
}

struct Work {
    id: String,
    marker: Marker,
    provider_now: String,
}

fn adopt(request: &Request, tools: &dyn ClusterTools) -> anyhow::Result<u8> {
    let to = request.to.as_str();
    let cib = tools.read_cib()?;
    let mon = tools.read_monitor()?;
    let ids = if request.all { plan::all_candidates(&cib, to) } else { request.resources.clone() };
    if ids.is_empty() {
        println!("no VirtualDomain resource to switch to ocf:{to}:VirtualDomain");
        return Ok(0);
    }
    let (work, refusals) = decide_all(&ids, to, &cib, &mon, tools);
    if !refusals.is_empty() {
        for refusal in &refusals {
            eprintln!("refused: {refusal}");
        }
        eprintln!("nothing was changed");
        return Ok(1);
    }
    if work.is_empty() {
        return Ok(0);
    }
    if request.dry_run {
        print_plan(&work, to, &cib, request.probe_timeout);
        return Ok(0);
    }
    let started = tools.clock().now();
    for item in &work {
        unmanage(item, tools)?;
    }
    for item in work.iter().filter(|w| w.provider_now != to) {
        switch_guarded(item, to, tools)?;
    }
    for item in &work {
        tools.apply(&Step::Refresh { id: item.id.clone() })?;
        println!("{}: reprobing with ocf:{to}:VirtualDomain", item.id);
    }
    let left_unmanaged = wait_and_manage(&work, to, request.probe_timeout, tools)?;
    let took = tools.clock().since(started);
    println!("switched {} of {} resources in {:.1}s", work.len() - left_unmanaged.len(), work.len(), took.as_secs_f64());
    for message in &left_unmanaged {
        eprintln!("left unmanaged: {message}");
    }
    report_unmanaged(tools);
    Ok(if left_unmanaged.is_empty() { 0 } else { 2 })
}

fn decide_all(ids: &[String], to: &str, cib: &Cib, mon: &Monitor, tools: &dyn ClusterTools) -> (Vec<Work>, Vec<String>) {
    let mut work = Vec::new();
    let mut refusals = Vec::new();
    for id in ids {
        let provider_now = cib.primitive(id).map(|p| p.provider.clone()).unwrap_or_default();
        let marker = match plan::decide(id, to, cib, mon) {
            Decision::NothingToDo => {
                println!("{id}: already ocf:{to}:VirtualDomain, nothing to do");
                continue;
            }
            Decision::Refuse(reason) => {
                refusals.push(reason);
                continue;
            }
            Decision::Switch(marker) => marker,
            // Resuming toward either agent: the requested one wins, the rest of the mark stays.
            Decision::Resume(marker) => Marker { to: to.to_owned(), ..marker },
        };
        if provider_now != to {
            let params = cib.primitive(id).map(|p| p.params.clone()).unwrap_or_default();
            if let Err(reason) = tools.validate_all(id, to, &params) {
                refusals.push(format!("{id}: its parameters do not pass ocf:{to}:VirtualDomain on this node: {reason:#}"));
                continue;
            }
        }
        work.push(Work { id: id.clone(), marker, provider_now });
    }
    (work, refusals)
}

fn marker_step(item: &Work) -> Step {
    Step::set_meta(&item.id, MARKER, &item.marker.render())
}

fn unmanage_step(item: &Work) -> Step {
    Step::set_meta(&item.id, "is-managed", "false")
}

/// Puts is-managed back as it was, then drops the mark.
fn manage_steps(item: &Work) -> [Step; 2] {
    let restore = match &item.marker.managed_before {
        Some(value) => Step::set_meta(&item.id, "is-managed", value),
        None => Step::delete_meta(&item.id, "is-managed"),
    };
    [restore, Step::delete_meta(&item.id, MARKER)]
}

fn unmanage(item: &Work, tools: &dyn ClusterTools) -> Result<(), ExecError> {
    // The mark first: a run killed between the two leaves a marked, managed
    // resource, which a rerun simply takes up.
    tools.apply(&marker_step(item))?;
    tools.apply(&unmanage_step(item))?;
    let at = item.marker.node.as_deref().map_or("running nowhere".to_owned(), |n| format!("running on {n}"));
    println!("{}: unmanaged ({at})", item.id);
    Ok(())
}

/// The provider change, retried on a fresh read when another change landed
/// between our read and our write (the guard failed, nothing was written).
fn switch_guarded(item: &Work, to: &str, tools: &dyn ClusterTools) -> anyhow::Result<()> {
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let cib = tools.read_cib()?;
        let primitive = cib.primitive(&item.id).with_context(|| format!("{}: vanished from the CIB while adopting", item.id))?;
        if primitive.meta("is-managed") != Some("false") || primitive.meta(MARKER).is_none() {
            bail!("{}: someone changed its is-managed or {MARKER} meanwhile; not switching it", item.id);
        }
        if primitive.provider == to {
            return Ok(());
        }
        match tools.switch_provider(&item.id, to, &cib.version) {
            Ok(()) => {
                println!("{}: ocf:{}:VirtualDomain -> ocf:{to}:VirtualDomain (CIB {}.{})", item.id, primitive.provider, cib.version.admin_epoch, cib.version.epoch);
                return Ok(());
            }
            Err(SwitchError::Changed) => {
                println!("{}: the CIB changed since it was read (epoch {}); reading it again", item.id, cib.version.epoch)
            }
            Err(SwitchError::Other(e)) => bail!("{}: {e}", item.id),
        }
    }
    bail!("{}: the CIB kept changing under {ATTEMPTS} attempts to switch it; it stays unmanaged, run adopt again", item.id)
}

/// Polls the new agent's probes; manages each resource again as soon as they
/// confirm it. Returns a message per resource left unmanaged.
fn wait_and_manage(work: &[Work], to: &str, timeout: Duration, tools: &dyn ClusterTools) -> anyhow::Result<Vec<String>> {
    let deadline = Deadline::after_on(tools.clock(), timeout);
    let mut pending: Vec<&Work> = work.iter().collect();
    let mut left = Vec::new();
    while !pending.is_empty() {
        let cib = tools.read_cib()?;
        let mon = tools.read_monitor()?;
        let mut still = Vec::new();
        for item in pending {
            match plan::probe_verdict(&item.id, to, item.marker.node.as_deref(), &cib, &mon) {
                ProbeVerdict::Confirmed => {
                    for step in manage_steps(item) {
                        tools.apply(&step)?;
                    }
                    let at = item.marker.node.as_deref().map_or("stopped everywhere".to_owned(), |n| format!("running on {n}"));
                    println!("{}: ocf:{to}:VirtualDomain finds it {at}; managed again", item.id);
                }
                ProbeVerdict::Unexpected(why) => left.push(unmanaged_message(item, to, &why)),
                ProbeVerdict::Waiting => still.push(item),
            }
        }
        pending = still;
        if !pending.is_empty() {
            if deadline.expired() {
                for item in pending {
                    let why = format!("the probes of ocf:{to}:VirtualDomain did not all report within {}s", timeout.as_secs());
                    left.push(unmanaged_message(item, to, &why));
                }
                break;
            }
            deadline.sleep(PROBE_POLL);
        }
    }
    Ok(left)
}

const PROBE_POLL: Duration = Duration::from_millis(500);

fn unmanaged_message(item: &Work, to: &str, why: &str) -> String {
    let id = &item.id;
    let node = item.marker.node.as_deref().unwrap_or("any node");
    format!(
        "{id}: {why}. Nothing was started or stopped. Look at `crm_mon -1 -r` and `crm_resource --list-operations -r {id}`, \
         `virsh list --all` on {node}, and the agent's log; then run `virtguard adopt --to {to} {id}` again to finish, \
         or `virtguard adopt --to {} {id}` to roll back",
        if to == "virtguard" { "heartbeat" } else { "virtguard" }
    )
}

/// Says which VirtualDomain resources are unmanaged now, whoever did it.
fn report_unmanaged(tools: &dyn ClusterTools) {
    let (Ok(cib), Ok(mon)) = (tools.read_cib(), tools.read_monitor()) else {
        eprintln!("adopt: cannot read the cluster state to list unmanaged resources: check `crm_mon -1 -r`");
        return;
    };
    let unmanaged: Vec<String> = cib
        .primitives
        .iter()
        .filter(|p| p.agent_type == "VirtualDomain")
        .filter(|p| mon.resource(&p.id).is_some_and(|r| !r.managed))
        .map(|p| if p.meta(MARKER).is_some() { format!("{} (marked {MARKER}: adopt did not finish it)", p.id) } else { p.id.clone() })
        .collect();
    if unmanaged.is_empty() {
        println!("no VirtualDomain resource is unmanaged");
    } else {
        println!("unmanaged VirtualDomain resources: {}", unmanaged.join(", "));
    }
}

fn print_plan(work: &[Work], to: &str, cib: &Cib, timeout: Duration) {
    println!("dry run: these commands would run (CIB {}.{} as read now):", cib.version.admin_epoch, cib.version.epoch);
    for item in work {
        let at = item.marker.node.as_deref().map_or("running nowhere".to_owned(), |n| format!("running on {n}"));
        println!("{} (ocf:{}:VirtualDomain, {at}):", item.id, item.provider_now);
        println!("  {}", shell_words(&marker_step(item).command_line()));
        println!("  {}", shell_words(&unmanage_step(item).command_line()));
        if item.provider_now != to {
            println!("  {}   (epoch as read after the two above)", shell_words(&switch_provider_command_line(&item.id, to, &cib.version)));
        }
        println!("  {}", shell_words(&Step::Refresh { id: item.id.clone() }.command_line()));
        let expect = item.marker.node.as_deref().map_or("stopped on every node".to_owned(), |n| format!("running on {n} and stopped elsewhere"));
        println!("  wait (up to {}s for all) until ocf:{to}:VirtualDomain's probes find it {expect}, then:", timeout.as_secs());
        for step in manage_steps(item) {
            println!("  {}", shell_words(&step.command_line()));
        }
    }
}

fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| if a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c)) { a.clone() } else { format!("'{}'", a.replace('\'', "'\\''")) })
        .collect::<Vec<_>>()
        .join(" ")
}
