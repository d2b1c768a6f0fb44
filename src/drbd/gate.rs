//! THE decision table: may this node use these DRBD resources for a start,
//! as the source of a live migration, or as its target? Pure: a state in,
//! a verdict out. Every rule below has an id; the README table and the
//! tests in tests/drbd_gate.rs follow the same ids.
//!
//! All purposes
//! - C1 the resource exists in this node's DRBD state
//! - C2 it has at least one volume, and every configured volume is reported
//! - C3 its I/O is not suspended and not forced to fail
//!
//! start (S) and migrate-target (T): the data used here must be the newest
//! - S1/T1 every local disk is UpToDate; a Diskless volume only with
//!   `allow_diskless` and a Connected, Established peer whose disk is UpToDate
//! - S2/T2 no volume is being resynced towards this node (SyncTarget, ...)
//! - S3/T3 no connection is StandAlone (split brain, or cut by hand: in
//!   both cases nobody knows which side is newer)
//! - S4/T4 no volume reports `quorum:no`
//!
//! start only
//! - S5 no peer is Primary (one writer). With `drbd_dual_primary` (the
//!   resource is promoted on both nodes all the time: LINBIT's setup for live
//!   migration on DRBD 8.4, `promoted-max=2` and `allow-two-primaries`), one
//!   Primary peer is expected when `allow-two-primaries` is on towards it;
//!   a second Primary peer is still refused
//! - S6 a Secondary resource with `may_promote:no` is refused (DRBD's own
//!   view; reported only when no other rule already explains the refusal)
//!
//! migrate-target only (the source is, or just was, Primary)
//! - T5 the connection to the source exists, is Connected and every volume
//!   replicates (Established)
//! - T6 no peer other than the source is Primary
//! - T7 locally Primary, or able to become Primary: while the source is
//!   Primary that needs `allow-two-primaries` on the connection to it;
//!   otherwise `may_promote` must not be `no`
//!
//! migrate-source (on the node that runs the guest, before memory is sent)
//! - M1 the connection to the target exists and is Connected
//! - M2 on every volume the target's disk is UpToDate and replication is
//!   Established (a Diskless target only with `allow_diskless` while this
//!   node's disk is UpToDate)
//! - M3 the target is not Primary already (with `drbd_dual_primary` and
//!   `allow-two-primaries` on towards it, it may be), and no third node is
//!   Primary
//! - M4 when this node is Primary, the connection to the target has
//!   `allow-two-primaries`, so the target can open the device while the
//!   source still holds it; unknown counts as no
//!
//! start, from the configuration (`drbdsetup show`), not the state
//! - F1 every volume (8.4) / connection (9) has a fencing policy other than
//!   `dont-care`. Without one, DRBD cannot mark a cut-off peer Outdated: when
//!   the replication link is cut and the Primary keeps writing, then fails,
//!   the survivor still says UpToDate and S1 lets the guest start on older
//!   data. A warning by default (the classic agent does not look, and a
//!   drop-in must not refuse what it ran); a refusal with
//!   `drbd_require_fencing`. A policy that cannot be read counts as missing.
//! - F2 with `drbd_dual_primary`, no `resource-only`: with both nodes Primary
//!   a cut replication link makes both call the fence-peer handler; the node
//!   without the guest can win, and Pacemaker then moves the guest onto its
//!   older data. `resource-and-stonith` freezes I/O until the handler is
//!   done, so no write is acknowledged that the winner lacks. Warning or
//!   refusal as F1.
//!
//! DRBD 8.4 names no peers: its single peer stands for the target/source.
//!
//! F1's fix is DRBD's own: `fencing resource-only` with the crm-fence-peer
//! handlers (8.4: `fence-peer "/usr/lib/drbd/crm-fence-peer.sh"` and
//! `after-resync-target "/usr/lib/drbd/crm-unfence-peer.sh"`; 9:
//! `crm-fence-peer.9.sh` and `unfence-peer
//! "/usr/lib/drbd/crm-unfence-peer.9.sh"`): the survivor is then Outdated
//! and S1 refuses. tests/drbd_real.rs cuts the link under a writing Primary
//! on the real 8.4 kernel. During validate-all, state that cannot be read
//! (module not loaded, resource down) is only a warning: start checks again.
//!
//! Why `allow-two-primaries` stays on rather than being switched on just
//! before a migration and off after it: that cannot be made safe from
//! inside one agent action.
//! - Pacemaker kills a migrate_to that outlives its timeout; whatever it
//!   switched on stays on, and no later action is sure to run on that node
//!   to switch it off (the next may be a stop elsewhere, or fencing).
//! - After a failed or aborted migration the target's QEMU may still hold
//!   the device, so both nodes are Primary, and DRBD will not clear the
//!   option while both sides are; the source would have to wait for a
//!   process on the other node that it does not own.
//! - The option belongs to the connection's settings, which both nodes
//!   compare when they connect: changed while the link is down, they
//!   differ, DRBD refuses the connection, the resource stays disconnected
//!   and S3 refuses every later start.
//!
//! These come from DRBD's documentation; the real 8.4 kernel runs in
//! tests/drbd_real.rs, but a migration with the option toggled around it
//! has not been tried there. The price of leaving it on: a program other
//! than the guest that opens the device on the second node (a mount by
//! hand) is not stopped by DRBD.
//!
//! Why DRBD 8.4 needs `drbd_dual_primary` to migrate at all: an 8.4
//! Secondary cannot be opened (no auto-promote), so the target's QEMU finds
//! the device usable only when Pacemaker already promoted it there, and
//! with `promoted-max=1` it never does for a migration. With both nodes
//! Primary all the time S5 would refuse every start and M3 every
//! migration. The price of the mode: S5 no longer stops a second writer on
//! the peer; one writer is then Pacemaker's guarantee (the guest's resource
//! runs once, fencing) and libvirt's (it refuses to migrate a guest onto a
//! node where it already runs). tests/drbd_cluster.rs samples both nodes
//! through live migrations and a failover on the real 8.4 kernel.

use super::model::{ConnState, DiskState, DrbdState, FencingPolicy, Peer, Resource, Role, Volume};
use super::show::FencingSetting;
use super::Purpose;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateOptions {
    /// The operator accepts Diskless volumes served by an UpToDate peer.
    pub allow_diskless: bool,
    /// The resources are promoted on both nodes by design (S5, M3).
    pub dual_primary: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Why not, one line per finding, naming resource, volume, peer and state.
    pub reasons: Vec<String>,
    /// Allowed, but worth a log line (e.g. running diskless).
    pub notes: Vec<String>,
}

pub fn decide(state: &DrbdState, resources: &[String], purpose: &Purpose, options: &GateOptions) -> Verdict {
    let mut reasons = Vec::new();
    let mut notes = Vec::new();
    for name in resources {
        let Some(resource) = state.resource(name) else {
            reasons.push(format!("{name}: not configured on this node (no such DRBD resource in {})", state.origin.describe()));
            continue;
        };
        let mut found = Findings { reasons: Vec::new(), notes: Vec::new() };
        let verb = verb(purpose);
        common_rules(resource, &verb, &mut found);
        if !resource.volumes.is_empty() {
            match purpose {
                Purpose::Start => start_rules(resource, options, &verb, &mut found),
                Purpose::MigrateTarget { source } => migrate_target_rules(resource, source, options, &verb, &mut found),
                Purpose::MigrateSource { target } => migrate_source_rules(resource, target, options, &verb, &mut found),
            }
        }
        reasons.append(&mut found.reasons);
        notes.append(&mut found.notes);
    }
    Verdict { allowed: reasons.is_empty(), reasons, notes }
}

/// What F1 makes of the fencing configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencingVerdict {
    /// One line per resource whose fencing cannot keep a failover off older
    /// data, or whose policy could not be read; empty when every one is fenced.
    pub findings: Vec<String>,
    /// The findings refuse the start (`drbd_require_fencing`); otherwise
    /// they are warnings.
    pub refused: bool,
}

/// F1 and F2 for `resources`. `settings` is what `drbdsetup show` said, or
/// why it could not be read.
pub fn fencing_rule(
    resources: &[String],
    settings: Result<&[FencingSetting], &str>,
    require_fencing: bool,
    dual_primary: bool,
) -> FencingVerdict {
    // The resource, the policy and the verdict come first: Pacemaker shows
    // the start of an exit reason, and it must say what and why.
    let verdict = if require_fencing { ": refusing to start" } else { "" };
    let hint = if require_fencing { "" } else { " (drbd_require_fencing makes this a refusal)" };
    let mut findings = Vec::new();
    let unknown = |name: &str, why: &str| {
        format!("{name}: fencing policy unknown ({why}) (rule F1){verdict}: a failover may run the guest on older data{hint}")
    };
    for name in resources {
        let mine: Vec<&FencingSetting> = match settings {
            Ok(all) => all.iter().filter(|s| s.resource == *name).collect(),
            Err(why) => {
                findings.push(unknown(name, why));
                continue;
            }
        };
        if mine.is_empty() {
            findings.push(unknown(name, "not in drbdsetup show"));
            continue;
        }
        let scopes_with = |wanted: Option<FencingPolicy>| -> Vec<String> {
            mine.iter().filter(|s| s.policy == wanted).map(|s| s.scope.to_string()).collect()
        };
        let unfenced = scopes_with(Some(FencingPolicy::DontCare));
        if !unfenced.is_empty() {
            findings.push(format!(
                "{name}: fencing dont-care ({}) (rule F1){verdict}: after the replication link is cut DRBD cannot mark \
                 the peer's data Outdated, so a failover can run the guest on older data and lose writes; configure \
                 fencing resource-only with the crm-fence-peer handlers{hint}",
                unfenced.join(", ")
            ));
        }
        let race = if dual_primary { scopes_with(Some(FencingPolicy::ResourceOnly)) } else { Vec::new() };
        if !race.is_empty() {
            findings.push(format!(
                "{name}: fencing resource-only ({}) with drbd_dual_primary (rule F2){verdict}: with both nodes Primary a cut \
                 replication link makes both call the fence-peer handler, the node without the guest can win, and the \
                 guest then restarts there on older data; configure fencing resource-and-stonith, as LINBIT documents \
                 for dual-primary{hint}",
                race.join(", ")
            ));
        }
        let undisclosed = scopes_with(None);
        if !undisclosed.is_empty() {
            findings.push(unknown(name, &format!("{}: no local disk, so DRBD shows no disk options", undisclosed.join(", "))));
        }
    }
    FencingVerdict { refused: require_fencing && !findings.is_empty(), findings }
}

struct Findings {
    reasons: Vec<String>,
    notes: Vec<String>,
}

fn verb(purpose: &Purpose) -> String {
    match purpose {
        Purpose::Start => "start".to_owned(),
        Purpose::MigrateSource { target } => format!("migrate to {target}"),
        Purpose::MigrateTarget { source } => format!("take over the migration from {source}"),
    }
}

/// C1 is checked by the caller; C2, C3 here.
fn common_rules(r: &Resource, verb: &str, found: &mut Findings) {
    if r.volumes.is_empty() {
        found.reasons.push(format!("{}: has no volumes on this node: refusing to {verb}", r.name));
    }
    for volume in &r.missing_volumes {
        found.reasons.push(format!("{}/{volume}: configured but not reported by DRBD: refusing to {verb}", r.name));
    }
    if !r.suspended.is_empty() {
        found.reasons.push(format!("{}: I/O is suspended ({}): refusing to {verb}", r.name, r.suspended.join(",")));
    }
    if r.force_io_failures == Some(true) {
        found.reasons.push(format!("{}: DRBD forces I/O failures (force-io-failures:yes): refusing to {verb}", r.name));
    }
}

fn start_rules(r: &Resource, options: &GateOptions, verb: &str, found: &mut Findings) {
    data_here_rules(r, options, verb, found);
    let primaries: Vec<&Peer> = r.peers.iter().filter(|p| p.role == Role::Primary).collect();
    match primaries.as_slice() {
        [peer] if options.dual_primary && peer.allow_two_primaries == Some(true) => found.notes.push(format!(
            "{}: {} is Primary as well, as drbd_dual_primary expects (allow-two-primaries on): one writer is Pacemaker's guarantee here, not DRBD's",
            r.name,
            peer.label()
        )),
        [peer] if options.dual_primary => found.reasons.push(format!(
            "{}: {} is Primary and allow-two-primaries is {} on that connection, which drbd_dual_primary needs: refusing to {verb} a second writer",
            r.name,
            peer.label(),
            yes_no_unknown(peer.allow_two_primaries)
        )),
        _ => {
            for peer in primaries {
                found.reasons.push(format!("{}: {} is Primary: refusing to {verb} a second writer", r.name, peer.label()));
            }
        }
    }
    if r.role == Role::Secondary && r.may_promote == Some(false) && found.reasons.is_empty() {
        let score = r.promotion_score.map(|s| format!(" (promotion_score {s})")).unwrap_or_default();
        found.reasons.push(format!("{}: DRBD reports may_promote:no{score}: refusing to {verb}", r.name));
    }
}

fn migrate_target_rules(r: &Resource, source: &str, options: &GateOptions, verb: &str, found: &mut Findings) {
    data_here_rules(r, options, verb, found);
    let source_peer = find_peer(r, source);
    match source_peer {
        None => found.reasons.push(format!("{}: no connection to {source} (the migration source): refusing to {verb}", r.name)),
        Some(peer) => {
            if !peer.is_connected() {
                found.reasons.push(format!("{}: connection to {source} is {}: refusing to {verb}", r.name, peer.connection));
            } else {
                for v in &r.volumes {
                    match peer.volume(v.number) {
                        Some(pv) if pv.replication.is_replicating() => {}
                        Some(pv) => found.reasons.push(format!(
                            "{}/{}: replication with {source} is {}: refusing to {verb}",
                            r.name, v.number, pv.replication
                        )),
                        None => found.reasons.push(format!("{}/{}: no state towards {source}: refusing to {verb}", r.name, v.number)),
                    }
                }
            }
        }
    }
    for peer in r.peers.iter().filter(|p| p.role == Role::Primary && !is_same_peer(p, source_peer)) {
        found.reasons.push(format!("{}: {} is Primary as well: refusing to {verb} as a third writer", r.name, peer.label()));
    }
    if r.role != Role::Primary {
        match source_peer {
            Some(peer) if peer.role == Role::Primary => match peer.allow_two_primaries {
                Some(true) => {}
                Some(false) => found.reasons.push(format!(
                    "{}: Secondary here while {source} is Primary and allow-two-primaries is off on that connection: cannot become Primary, refusing to {verb}",
                    r.name
                )),
                None => found.reasons.push(format!(
                    "{}: Secondary here while {source} is Primary and whether allow-two-primaries is on could not be read: refusing to {verb}",
                    r.name
                )),
            },
            _ if r.may_promote == Some(false) && found.reasons.is_empty() => {
                found.reasons.push(format!("{}: DRBD reports may_promote:no: refusing to {verb}", r.name));
            }
            _ => {}
        }
    }
}

fn migrate_source_rules(r: &Resource, target: &str, options: &GateOptions, verb: &str, found: &mut Findings) {
    let Some(peer) = find_peer(r, target) else {
        found.reasons.push(format!("{}: no connection to {target} (the migration target): refusing to {verb}", r.name));
        return;
    };
    if !peer.is_connected() {
        found.reasons.push(format!("{}: connection to {target} is {}: refusing to {verb}", r.name, peer.connection));
    } else {
        for v in &r.volumes {
            let Some(pv) = peer.volume(v.number) else {
                found.reasons.push(format!("{}/{}: no state for {target}: refusing to {verb}", r.name, v.number));
                continue;
            };
            let disk_ok = match pv.peer_disk {
                DiskState::UpToDate => true,
                DiskState::Diskless if options.allow_diskless && v.disk == DiskState::UpToDate => {
                    found.notes.push(format!("{}/{}: {target} is Diskless and will read from this node", r.name, v.number));
                    true
                }
                _ => false,
            };
            if !disk_ok {
                found.reasons.push(format!(
                    "{}/{}: peer {target} disk {} (replication {}): the target's data is not current, refusing to {verb}",
                    r.name, v.number, pv.peer_disk, pv.replication
                ));
            } else if !pv.replication.is_replicating() {
                found.reasons.push(format!(
                    "{}/{}: replication with {target} is {}: refusing to {verb}",
                    r.name, v.number, pv.replication
                ));
            }
        }
    }
    if peer.role == Role::Primary {
        if options.dual_primary && peer.allow_two_primaries == Some(true) {
            found.notes.push(format!("{}: {target} is Primary already, as drbd_dual_primary expects", r.name));
        } else {
            found.reasons.push(format!("{}: {target} is already Primary: refusing to {verb}", r.name));
        }
    }
    for other in r.peers.iter().filter(|p| p.role == Role::Primary && !std::ptr::eq(*p, peer)) {
        found.reasons.push(format!("{}: {} is Primary as well: refusing to {verb}", r.name, other.label()));
    }
    if r.role == Role::Primary {
        match peer.allow_two_primaries {
            Some(true) => {}
            Some(false) => found.reasons.push(format!(
                "{}: allow-two-primaries is off on the connection to {target}: the target cannot become Primary while this node is, refusing to {verb}",
                r.name
            )),
            None => found.reasons.push(format!(
                "{}: cannot tell whether allow-two-primaries is on for the connection to {target}: refusing to {verb}",
                r.name
            )),
        }
    }
}

fn yes_no_unknown(setting: Option<bool>) -> &'static str {
    match setting {
        Some(true) => "on",
        Some(false) => "off",
        None => "unknown",
    }
}

/// S1-S4 / T1-T4: the local copy is complete, the newest, and safe to write.
fn data_here_rules(r: &Resource, options: &GateOptions, verb: &str, found: &mut Findings) {
    for v in &r.volumes {
        match local_disk(r, v, options, verb) {
            LocalDisk::UsableNoting(note) => found.notes.push(note),
            LocalDisk::Usable => {}
            LocalDisk::Refused(reason) => {
                found.reasons.push(reason);
                continue;
            }
        }
        for peer in &r.peers {
            if let Some(pv) = peer.volume(v.number).filter(|pv| pv.replication.is_sync_target()) {
                found.reasons.push(format!(
                    "{}/{}: replication from {} is {}: refusing to {verb} on data that is being resynced",
                    r.name, v.number, peer.label(), pv.replication
                ));
            }
        }
    }
    for peer in r.peers.iter().filter(|p| p.connection == ConnState::StandAlone) {
        let why = match peer.sync_state {
            Some(s) => format!(" ({s})"),
            None => String::new(),
        };
        found.reasons.push(format!(
            "{}: connection to {} is StandAlone{why}: refusing to {verb} on data that may have diverged",
            r.name,
            peer.name.as_deref().unwrap_or("the peer")
        ));
    }
    for v in r.volumes.iter().filter(|v| v.quorum == Some(false)) {
        found.reasons.push(format!("{}/{}: no quorum: refusing to {verb}", r.name, v.number));
    }
}

/// What S1/T1 say of one volume's local disk: not an error but half of
/// the gate's verdict, so the caller sorts it into notes or reasons.
enum LocalDisk {
    Usable,
    /// Usable, with something the log should say (the data is a peer's).
    UsableNoting(String),
    Refused(String),
}

fn local_disk(r: &Resource, v: &Volume, options: &GateOptions, verb: &str) -> LocalDisk {
    let id = format!("{}/{}", r.name, v.number);
    match v.disk {
        DiskState::UpToDate => LocalDisk::Usable,
        DiskState::Diskless => {
            let client = if v.client == Some(true) { " (diskless client)" } else { "" };
            if !options.allow_diskless {
                return LocalDisk::Refused(format!("{id}: local disk Diskless{client} and drbd_allow_diskless is off: refusing to {verb} without local data"));
            }
            let server = r.peers.iter().find(|p| {
                p.is_connected()
                    && p.volume(v.number).is_some_and(|pv| pv.peer_disk == DiskState::UpToDate && pv.replication.is_replicating())
            });
            match server {
                Some(p) => LocalDisk::UsableNoting(format!("{id}: local disk Diskless{client}, data served by {} (UpToDate)", p.label())),
                None => LocalDisk::Refused(format!("{id}: local disk Diskless{client} and no connected peer is UpToDate: refusing to {verb} without data")),
            }
        }
        DiskState::Outdated => LocalDisk::Refused(format!("{id}: local disk Outdated, {}: refusing to {verb} on stale data", up_to_date_peers(r, v))),
        DiskState::Inconsistent => {
            let sync = r.peers.iter().find_map(|p| {
                p.volume(v.number).filter(|pv| pv.replication.is_sync_target()).map(|pv| {
                    let done = pv.done.map(|d| format!(", {d:.1}% done")).unwrap_or_default();
                    format!(" ({} from {}{done})", pv.replication, p.name.as_deref().unwrap_or("the peer"))
                })
            });
            LocalDisk::Refused(format!("{id}: local disk Inconsistent{}: refusing to {verb} on incomplete data", sync.unwrap_or_default()))
        }
        DiskState::Consistent => LocalDisk::Refused(format!("{id}: local disk Consistent, not known to be the newest ({}): refusing to {verb}", up_to_date_peers(r, v))),
        DiskState::Failed | DiskState::Detaching => LocalDisk::Refused(format!("{id}: local disk {}: refusing to {verb} without a usable disk", v.disk)),
        DiskState::Attaching | DiskState::Negotiating | DiskState::DUnknown => {
            LocalDisk::Refused(format!("{id}: local disk {}: not known to be current, refusing to {verb}", v.disk))
        }
    }
}

fn up_to_date_peers(r: &Resource, v: &Volume) -> String {
    let names: Vec<String> = r
        .peers
        .iter()
        .filter(|p| p.volume(v.number).is_some_and(|pv| pv.peer_disk == DiskState::UpToDate))
        .map(|p| p.name.clone().unwrap_or_else(|| "the peer".to_owned()))
        .collect();
    match names.len() {
        0 => "no peer known UpToDate".to_owned(),
        1 => format!("peer {} UpToDate", names[0]),
        _ => format!("peers {} UpToDate", names.join(", ")),
    }
}

/// The connection named `node`; DRBD 8.4's single unnamed peer stands for any node.
pub fn find_peer<'a>(r: &'a Resource, node: &str) -> Option<&'a Peer> {
    if let Some(p) = r.peers.iter().find(|p| p.name.as_deref() == Some(node)) {
        return Some(p);
    }
    match r.peers.as_slice() {
        [only] if only.name.is_none() => Some(only),
        _ => None,
    }
}

fn is_same_peer(p: &Peer, other: Option<&Peer>) -> bool {
    other.is_some_and(|o| std::ptr::eq(p, o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drbd::show::{fencing, FencingScope};

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const FENCED_84: &str = include_str!("../../tests/fixtures/drbd84-real/healthy.alpha.show");
    const DETACHED_84: &str = include_str!("../../tests/fixtures/drbd84-real/diskless.beta.show");
    const UNFENCED_84: &str = include_str!("../../tests/fixtures/drbd/84-single.show");

    #[test]
    fn f2_asks_dual_primary_for_resource_and_stonith() {
        let resource_only = fencing(FENCED_84).unwrap();
        assert!(resource_only.iter().all(|s| s.policy == Some(FencingPolicy::ResourceOnly)), "{resource_only:?}");
        assert!(fencing_rule(&names(&["r0"]), Ok(&resource_only), true, false).findings.is_empty());
        let warned = fencing_rule(&names(&["r0"]), Ok(&resource_only), false, true);
        assert!(!warned.refused);
        assert_eq!(warned.findings.len(), 1);
        assert!(warned.findings[0].starts_with("r0: fencing resource-only (volume 0) with drbd_dual_primary (rule F2): with both"), "{warned:?}");
        let refused = fencing_rule(&names(&["r0"]), Ok(&resource_only), true, true);
        assert!(refused.refused && refused.findings[0].contains("(rule F2): refusing to start: "), "{refused:?}");
        let stonith: Vec<FencingSetting> =
            resource_only.iter().map(|s| FencingSetting { policy: Some(FencingPolicy::ResourceAndStonith), ..s.clone() }).collect();
        assert!(fencing_rule(&names(&["r0"]), Ok(&stonith), true, true).findings.is_empty());
    }

    #[test]
    fn f1_passes_a_fenced_resource_whatever_the_parameter() {
        let settings = fencing(FENCED_84).unwrap();
        for require in [false, true] {
            let v = fencing_rule(&names(&["r0"]), Ok(&settings), require, false);
            assert_eq!(v, FencingVerdict { findings: vec![], refused: false });
        }
    }

    #[test]
    fn f1_warns_about_dont_care_and_refuses_it_when_fencing_is_required() {
        let settings = fencing(UNFENCED_84).unwrap();
        let warned = fencing_rule(&names(&["r0"]), Ok(&settings), false, false);
        assert!(!warned.refused);
        assert_eq!(warned.findings.len(), 1, "{warned:?}");
        let finding = &warned.findings[0];
        assert!(finding.starts_with("r0: fencing dont-care (volume 0) (rule F1): after the replication link is cut"), "{finding}");
        assert!(finding.contains("older data") && finding.ends_with("(drbd_require_fencing makes this a refusal)"), "{finding}");

        let refused = fencing_rule(&names(&["r0"]), Ok(&settings), true, false);
        assert!(refused.refused);
        assert!(refused.findings[0].starts_with("r0: fencing dont-care (volume 0) (rule F1): refusing to start: "), "{refused:?}");
        assert!(refused.findings[0].ends_with("with the crm-fence-peer handlers"), "{refused:?}");
    }

    #[test]
    fn f1_counts_an_unreadable_or_missing_policy_as_no_fencing() {
        let detached = fencing(DETACHED_84).unwrap();
        let v = fencing_rule(&names(&["r0"]), Ok(&detached), true, false);
        assert!(v.refused && v.findings[0].starts_with("r0: fencing policy unknown (volume 0: no local disk, so DRBD shows no disk options) (rule F1): refusing to start"), "{v:?}");
        let v = fencing_rule(&names(&["r0"]), Err("drbdsetup show all: exit 20"), true, false);
        assert!(v.refused && v.findings[0].contains("(drbdsetup show all: exit 20)"), "{v:?}");
        let v = fencing_rule(&names(&["r1"]), Ok(&fencing(FENCED_84).unwrap()), false, false);
        assert!(!v.refused && v.findings[0].starts_with("r1: fencing policy unknown (not in drbdsetup show)"), "{v:?}");
    }

    /// DRBD 9: one unfenced connection is enough for a failover from that
    /// peer to run on older data.
    #[test]
    fn f1_names_every_unfenced_connection() {
        let setting = |peer: &str, policy| FencingSetting { resource: "r0".into(), scope: FencingScope::Connection(peer.into()), policy: Some(policy) };
        let settings = vec![setting("node2", FencingPolicy::ResourceOnly), setting("node3", FencingPolicy::DontCare), setting("node4", FencingPolicy::DontCare)];
        let v = fencing_rule(&names(&["r0"]), Ok(&settings), true, false);
        assert_eq!(v.findings.len(), 1, "{v:?}");
        assert!(v.findings[0].starts_with("r0: fencing dont-care (connection to node3, connection to node4) (rule F1): refusing to start"), "{v:?}");
        let fenced = vec![setting("node2", FencingPolicy::ResourceOnly), setting("node3", FencingPolicy::ResourceAndStonith)];
        assert!(fencing_rule(&names(&["r0"]), Ok(&fenced), true, false).findings.is_empty());
    }
}
