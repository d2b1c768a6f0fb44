//! `virtguard drbd status` and `virtguard drbd check`: the gate by hand.
//! Exit codes of `check`: 0 allowed, 1 refused, 2 state unreadable; never
//! 0 when the state could not be read.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;

use super::model::{DrbdState, Resource};
use super::{decide, fencing_rule, DrbdSource, GateParams, Purpose};
use crate::deadline::Deadline;

pub const EXIT_ALLOWED: u8 = 0;
pub const EXIT_REFUSED: u8 = 1;
pub const EXIT_UNREADABLE: u8 = 2;

/// drbdsetup answers in milliseconds; this only bounds a hung kernel call.
const COMMAND_BUDGET: Duration = Duration::from_secs(30);

/// Prints the state; the exit code, or why the state cannot be shown (the
/// caller prints it and exits with [`EXIT_UNREADABLE`]).
pub fn status(sources: &dyn DrbdSource, resources: &[String], json: bool) -> anyhow::Result<u8> {
    let deadline = Deadline::after(COMMAND_BUDGET);
    let mut state = sources.read(true, &deadline)?;
    let missing: Vec<&String> = resources.iter().filter(|n| state.resource(n).is_none()).collect();
    if !resources.is_empty() {
        state.resources.retain(|r| resources.contains(&r.name));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&state).context("cannot write JSON")?);
    } else {
        print!("{}", render_table(&state));
    }
    for name in &missing {
        eprintln!("{name}: no such DRBD resource on this node");
    }
    Ok(if missing.is_empty() { EXIT_ALLOWED } else { EXIT_REFUSED })
}

/// Asks the gate; the exit code, or why the state cannot be read. For a
/// start also rule F1 (the fencing policy): a warning on stdout, or with
/// `require_fencing` a refusal like any other.
pub fn check(sources: &dyn DrbdSource, resources: &[String], purpose: &Purpose, params: &GateParams) -> anyhow::Result<u8> {
    let deadline = Deadline::after(COMMAND_BUDGET);
    let state = sources.read(params.reads_net_options(purpose), &deadline)?;
    let verdict = decide(&state, resources, purpose, &params.options());
    for note in &verdict.notes {
        println!("note: {note}");
    }
    let mut reasons = verdict.reasons;
    if *purpose == Purpose::Start {
        let settings = sources.read_fencing(&deadline);
        let fencing = fencing_rule(resources, settings.as_deref().map_err(String::as_str), params.require_fencing, params.dual_primary);
        if fencing.refused {
            reasons.extend(fencing.findings);
        } else {
            for warning in &fencing.findings {
                println!("warning: {warning}");
            }
        }
    }
    if reasons.is_empty() {
        println!("{}: {purpose} allowed ({})", resources.join(" "), state.origin.describe());
        Ok(EXIT_ALLOWED)
    } else {
        for reason in &reasons {
            eprintln!("{reason}");
        }
        Ok(EXIT_REFUSED)
    }
}

pub fn render_table(state: &DrbdState) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}", state.origin.describe());
    if state.resources.is_empty() {
        let _ = writeln!(out, "(no DRBD resources)");
    }
    for r in &state.resources {
        render_resource(&mut out, r);
    }
    if !state.unnamed_minors.is_empty() {
        let minors: Vec<String> = state.unnamed_minors.iter().map(u32::to_string).collect();
        let _ = writeln!(out, "minors without a resource name: {}", minors.join(", "));
    }
    out
}

fn render_resource(out: &mut String, r: &Resource) {
    let yes_no = |b: Option<bool>| match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    let suspended = if r.suspended.is_empty() { "no".to_owned() } else { r.suspended.join(",") };
    let _ = writeln!(
        out,
        "{}  role:{}  suspended:{}  may_promote:{}",
        r.name,
        r.role,
        suspended,
        yes_no(r.may_promote)
    );
    for v in &r.volumes {
        let client = if v.client == Some(true) { " (client)" } else { "" };
        let _ = writeln!(
            out,
            "  volume:{}  minor:{}  disk:{}{client}  quorum:{}  backing:{}",
            v.number,
            v.minor,
            v.disk,
            yes_no(v.quorum),
            v.backing_dev.as_deref().unwrap_or("-")
        );
    }
    for p in &r.peers {
        let node_id = p.node_id.map(|n| format!(" (node-id {n})")).unwrap_or_default();
        let split = p.sync_state.map(|s| format!("  sync-state:{s}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "  peer:{}{node_id}  connection:{}  role:{}{split}  allow-two-primaries:{}",
            p.name.as_deref().unwrap_or("(unnamed)"),
            p.connection,
            p.role,
            yes_no(p.allow_two_primaries)
        );
        for pv in &p.volumes {
            let done = pv.done.map(|d| format!("  done:{d:.1}%")).unwrap_or_default();
            let _ = writeln!(out, "    volume:{}  replication:{}  peer-disk:{}{done}", pv.number, pv.replication, pv.peer_disk);
        }
    }
}
