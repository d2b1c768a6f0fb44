//! The decision table, row by row, for every purpose, on DRBD 9 and 8.4
//! fixtures in the real output formats. Row ids follow src/drbd/gate.rs.

mod support;

use support::{edited, names, state84, state9, state9_text};
use virtguard::drbd::model::DrbdState;
use virtguard::drbd::{decide, GateOptions, Purpose};

enum Expect {
    Allowed,
    /// Every fragment must appear in some reason.
    Refused(&'static [&'static str]),
}
use Expect::{Allowed, Refused};

struct Row {
    id: &'static str,
    state: DrbdState,
    resources: &'static [&'static str],
    diskless: bool,
    expect: Expect,
}

fn row(id: &'static str, state: DrbdState, resources: &'static [&'static str], expect: Expect) -> Row {
    Row { id, state, resources, diskless: false, expect }
}

fn diskless(mut r: Row) -> Row {
    r.diskless = true;
    r
}

fn check_rows(purpose: &Purpose, rows: Vec<Row>) {
    let mut failures = Vec::new();
    for r in &rows {
        let v = decide(&r.state, &names(r.resources), purpose, &GateOptions { allow_diskless: r.diskless, dual_primary: false });
        match (&r.expect, v.allowed) {
            (Allowed, true) => assert!(v.reasons.is_empty()),
            (Allowed, false) => failures.push(format!("{}: refused, expected allowed: {:?}", r.id, v.reasons)),
            (Refused(_), true) => failures.push(format!("{}: allowed, expected refused", r.id)),
            (Refused(fragments), false) => {
                for f in *fragments {
                    if !v.reasons.iter().any(|reason| reason.contains(f)) {
                        failures.push(format!("{}: no reason contains '{f}': {:?}", r.id, v.reasons));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} rows wrong:\n{}", failures.len(), rows.len(), failures.join("\n"));
}

fn start() -> Purpose {
    Purpose::Start
}

fn to(node: &str) -> Purpose {
    Purpose::MigrateSource { target: node.to_owned() }
}

fn from(node: &str) -> Purpose {
    Purpose::MigrateTarget { source: node.to_owned() }
}

#[test]
fn start_on_drbd9() {
    check_rows(&start(), vec![
        row("S ok 2-node", state9("healthy-2node", None), &["r0"], Allowed),
        row("S ok statistics", state9("healthy-statistics", None), &["r0"], Allowed),
        row("S ok unknown fields", state9("unknown-fields", None), &["r0"], Allowed),
        row("S ok 3-node", state9("healthy-3node", None), &["r0"], Allowed),
        row("S ok peer resyncing from us", state9("3node-one-peer-syncing", None), &["r0"], Allowed),
        row("S ok SyncSource", state9("sync-source", None), &["r0"], Allowed),
        row("S ok multi-volume", state9("multi-volume", None), &["r0", "web"], Allowed),
        row("S ok already Primary here", state9("running-primary", None), &["r0"], Allowed),
        row("C1 unknown resource", state9("multi-volume", None), &["r0", "r9"], Refused(&["r9: not configured on this node"])),
        row("C1 no resources at all", state9("no-resources", None), &["r0"], Refused(&["r0: not configured"])),
        row("C2 no volumes", state9_text("exists resource name:r0 role:Secondary suspended:no\nexists -\n"), &["r0"], Refused(&["r0: has no volumes"])),
        row("C3 suspended", state9("suspended-quorum", None), &["r0"], Refused(&["r0: I/O is suspended (quorum)", "r0/0: no quorum"])),
        row(
            "C3 force-io-failures",
            state9_text(&edited("healthy-2node", "force-io-failures:no", "force-io-failures:yes")),
            &["r0"],
            Refused(&["force-io-failures:yes"]),
        ),
        row(
            "S1 Outdated, peer UpToDate",
            state9("outdated-peer-uptodate", None),
            &["r0"],
            Refused(&["r0/0: local disk Outdated, peer node2 UpToDate: refusing to start on stale data"]),
        ),
        row("S1 Outdated, peer gone", state9("outdated", None), &["r0"], Refused(&["r0/0: local disk Outdated, no peer known UpToDate"])),
        row(
            "S1 one volume of two Outdated",
            state9("multi-volume-one-outdated", None),
            &["r0"],
            Refused(&["r0/1: local disk Outdated, peer node2 UpToDate", "r0: peer node2 is Primary"]),
        ),
        row("S1 Inconsistent", state9("inconsistent", None), &["r0"], Refused(&["r0/0: local disk Inconsistent: refusing to start on incomplete data"])),
        row(
            "S1 SyncTarget",
            state9("sync-target", None),
            &["r0"],
            Refused(&["r0/0: local disk Inconsistent (SyncTarget from node2, 37.2% done)"]),
        ),
        row("S1 Failed", state9("failed", None), &["r0"], Refused(&["r0/0: local disk Failed"])),
        row("S1 Diskless not allowed", state9("diskless-client", None), &["r0"], Refused(&["r0/0: local disk Diskless (diskless client) and drbd_allow_diskless is off"])),
        diskless(row("S1 Diskless allowed", state9("diskless-client", None), &["r0"], Allowed)),
        diskless(row(
            "S1 Diskless without UpToDate peer",
            state9("diskless-no-server", None),
            &["r0"],
            Refused(&["r0/0: local disk Diskless (diskless client) and no connected peer is UpToDate"]),
        )),
        row("S1 detached, not allowed", state9("running-detached", None), &["r0"], Refused(&["r0/0: local disk Diskless and drbd_allow_diskless is off"])),
        diskless(row("S1 detached, allowed", state9("running-detached", None), &["r0"], Allowed)),
        row(
            "S2 resync towards us",
            state9_text(&edited("healthy-2node", "replication:Established", "replication:PausedSyncT")),
            &["r0"],
            Refused(&["r0/0: replication from peer node2 is PausedSyncT"]),
        ),
        row("S3 split brain", state9("split-brain", None), &["r0"], Refused(&["r0: connection to node2 is StandAlone (SplitBrain)"])),
        row(
            "S3 StandAlone without split brain",
            state9_text(&edited("healthy-2node", "connection:Connected", "connection:StandAlone")),
            &["r0"],
            Refused(&["r0: connection to node2 is StandAlone: refusing"]),
        ),
        row("S4 no quorum", state9("no-quorum", None), &["r0"], Refused(&["r0/0: no quorum: refusing to start"])),
        row("S5 peer Primary", state9("peer-primary", None), &["r0"], Refused(&["r0: peer node2 is Primary: refusing to start a second writer"])),
        row(
            "S5 one of two peers Primary",
            state9_text(&edited("healthy-3node", "conn-name:node3 connection:Connected role:Secondary", "conn-name:node3 connection:Connected role:Primary")),
            &["r0"],
            Refused(&["r0: peer node3 is Primary"]),
        ),
        row("S6 may_promote:no", state9("may-promote-no", None), &["r0"], Refused(&["r0: DRBD reports may_promote:no (promotion_score 10102)"])),
        row(
            "S ok disconnected peer, data UpToDate",
            state9_text(&edited("healthy-2node", "connection:Connected role:Secondary", "connection:Connecting role:Unknown")),
            &["r0"],
            Allowed,
        ),
    ]);
}

#[test]
fn start_on_drbd84() {
    check_rows(&start(), vec![
        row("S ok", state84("healthy", None), &["r0"], Allowed),
        row("S ok multi-volume", state84("multi-volume", None), &["r0", "web"], Allowed),
        row("S ok SyncSource", state84("sync-source", None), &["r0"], Allowed),
        row("C3 suspended", state84("suspended", None), &["r0"], Refused(&["r0: I/O is suspended"])),
        row("S1 Outdated", state84("outdated", None), &["r0"], Refused(&["r0/0: local disk Outdated, no peer known UpToDate: refusing to start on stale data"])),
        row("S1 Inconsistent", state84("inconsistent", None), &["r0"], Refused(&["r0/0: local disk Inconsistent"])),
        row("S1 SyncTarget", state84("sync-target", None), &["r0"], Refused(&["r0/0: local disk Inconsistent (SyncTarget from the peer, 36.4% done)"])),
        row("S1 Failed", state84("failed", None), &["r0"], Refused(&["r0/0: local disk Failed"])),
        row("S1 Diskless not allowed", state84("diskless", None), &["r0"], Refused(&["r0/0: local disk Diskless and drbd_allow_diskless is off"])),
        diskless(row("S1 Diskless allowed", state84("diskless", None), &["r0"], Allowed)),
        row("S3 StandAlone", state84("standalone", None), &["r0"], Refused(&["r0: connection to the peer is StandAlone"])),
        row("S5 peer Primary", state84("peer-primary", None), &["r0"], Refused(&["r0: the peer is Primary"])),
        row("C1 unknown resource", state84("healthy", None), &["web"], Refused(&["web: not configured"])),
    ]);
}

#[test]
fn migrate_source_on_drbd9() {
    check_rows(&to("node2"), vec![
        row("M ok", state9("running-primary", Some("to-node2-dual")), &["r0"], Allowed),
        row("M ok 3-node, other peer resyncing", state9("running-primary-3node", Some("3node-dual")), &["r0"], Allowed),
        row("M ok Secondary here needs no dual-primary", state9("healthy-2node", None), &["r0"], Allowed),
        row("M1 no such connection", state9("running-primary", Some("to-node2-dual")), &["r0", "r9"], Refused(&["r9: not configured"])),
        row("M1 disconnected", state9("outdated", None), &["r0"], Refused(&["r0: connection to node2 is Connecting: refusing to migrate to node2"])),
        row("M1 split brain", state9("split-brain", None), &["r0"], Refused(&["r0: connection to node2 is StandAlone"])),
        row(
            "M2 target Inconsistent",
            state9("sync-source", None),
            &["r0"],
            Refused(&["r0/0: peer node2 disk Inconsistent (replication SyncSource): the target's data is not current"]),
        ),
        row(
            "M2 target Outdated",
            state9_text(&edited("running-primary", "replication:Established peer-disk:UpToDate", "replication:Established peer-disk:Outdated")),
            &["r0"],
            Refused(&["r0/0: peer node2 disk Outdated"]),
        ),
        row(
            "M2 target UpToDate but replication paused",
            state9_text(&edited("healthy-2node", "replication:Established", "replication:PausedSyncS")),
            &["r0"],
            Refused(&["r0/0: replication with node2 is PausedSyncS"]),
        ),
        row(
            "M2 target Diskless not allowed",
            state9_text(&edited("healthy-2node", "peer-disk:UpToDate peer-client:no", "peer-disk:Diskless peer-client:yes")),
            &["r0"],
            Refused(&["r0/0: peer node2 disk Diskless"]),
        ),
        diskless(row(
            "M2 target Diskless allowed",
            state9_text(&edited("healthy-2node", "peer-disk:UpToDate peer-client:no", "peer-disk:Diskless peer-client:yes")),
            &["r0"],
            Allowed,
        )),
        row("M3 target already Primary", state9("peer-primary", None), &["r0"], Refused(&["r0: node2 is already Primary"])),
        row(
            "M3 a third node Primary",
            state9_text(&edited("healthy-3node", "conn-name:node3 connection:Connected role:Secondary", "conn-name:node3 connection:Connected role:Primary")),
            &["r0"],
            Refused(&["r0: peer node3 is Primary as well"]),
        ),
        row(
            "M4 allow-two-primaries off",
            state9("running-primary", Some("to-node2-single")),
            &["r0"],
            Refused(&["r0: allow-two-primaries is off on the connection to node2"]),
        ),
        row(
            "M4 allow-two-primaries unknown",
            state9("running-primary", None),
            &["r0"],
            Refused(&["r0: cannot tell whether allow-two-primaries is on for the connection to node2"]),
        ),
        row("C3 suspended", state9("suspended-quorum", Some("3node-dual")), &["r0"], Refused(&["r0: I/O is suspended (quorum)"])),
    ]);
    check_rows(&to("node3"), vec![
        row(
            "M2 3-node, target still resyncing volume 1",
            state9("running-primary-3node", Some("3node-dual")),
            &["r0"],
            Refused(&["r0/1: peer node3 disk Inconsistent (replication SyncSource)"]),
        ),
        row("M1 target not a peer", state9("running-primary", Some("to-node2-dual")), &["r0"], Refused(&["r0: no connection to node3 (the migration target)"])),
    ]);
}

#[test]
fn migrate_source_on_drbd84() {
    // 8.4 does not name its peer: the single peer stands for the target.
    check_rows(&to("node2"), vec![
        row("M ok", state84("primary", Some("84-dual")), &["r0"], Allowed),
        row("M4 allow-two-primaries off", state84("primary", Some("84-single")), &["r0"], Refused(&["r0: allow-two-primaries is off"])),
        row("M4 unknown", state84("primary", None), &["r0"], Refused(&["r0: cannot tell whether allow-two-primaries is on"])),
        row("M2 target Inconsistent", state84("sync-source", Some("84-dual")), &["r0"], Refused(&["r0/0: peer node2 disk Inconsistent"])),
        row("M1 StandAlone", state84("standalone", Some("84-dual")), &["r0"], Refused(&["r0: connection to node2 is StandAlone"])),
        row("M1 WFConnection", state84("outdated", Some("84-dual")), &["r0"], Refused(&["r0: connection to node2 is Connecting"])),
        row("M3 target Primary", state84("peer-primary", Some("84-dual")), &["r0"], Refused(&["r0: node2 is already Primary"])),
    ]);
}

#[test]
fn migrate_target_on_drbd9() {
    check_rows(&from("node1"), vec![
        row("T ok source Primary, dual-primary on", state9("migration-incoming", Some("to-node1-dual")), &["r0"], Allowed),
        row("T ok already Primary here (after the handover)", state9("migration-landed", None), &["r0"], Allowed),
        row(
            "T7 dual-primary off",
            state9("migration-incoming", Some("to-node1-single")),
            &["r0"],
            Refused(&["r0: Secondary here while node1 is Primary and allow-two-primaries is off"]),
        ),
        row(
            "T7 dual-primary unknown",
            state9("migration-incoming", None),
            &["r0"],
            Refused(&["r0: Secondary here while node1 is Primary and whether allow-two-primaries is on could not be read"]),
        ),
        diskless(row("T ok Diskless allowed, source Secondary", state9("diskless-client", None), &["r0"], Allowed)),
        row("T1 Diskless not allowed", state9("diskless-client", None), &["r0"], Refused(&["r0/0: local disk Diskless (diskless client) and drbd_allow_diskless is off"])),
        row("T5 source not a peer", state9("migration-incoming", Some("to-node1-dual")), &["r0", "r9"], Refused(&["r9: not configured"])),
        row(
            "T1 local Outdated while source writes",
            state9_text(&edited("migration-incoming", " disk:UpToDate client", " disk:Outdated client")),
            &["r0"],
            Refused(&["r0/0: local disk Outdated, peer node1 UpToDate: refusing to take over the migration from node1 on stale data"]),
        ),
        row(
            "T5 source disconnected",
            state9_text(&edited("migration-landed", "connection:Connected role:Secondary", "connection:Connecting role:Unknown")),
            &["r0"],
            Refused(&["r0: connection to node1 is Connecting"]),
        ),
        row(
            "T6 a third node Primary",
            state9_text(
                "exists resource name:r0 role:Primary suspended:no may_promote:no promotion_score:10103\n\
                 exists connection name:r0 peer-node-id:0 conn-name:node1 connection:Connected role:Secondary\n\
                 exists connection name:r0 peer-node-id:2 conn-name:node3 connection:Connected role:Primary\n\
                 exists device name:r0 volume:0 minor:0 disk:UpToDate client:no quorum:yes\n\
                 exists peer-device name:r0 conn-name:node1 volume:0 replication:Established peer-disk:UpToDate\n\
                 exists peer-device name:r0 conn-name:node3 volume:0 replication:Established peer-disk:UpToDate\n\
                 exists -\n",
            ),
            &["r0"],
            Refused(&["r0: peer node3 is Primary as well"]),
        ),
    ]);
    check_rows(&from("node2"), vec![
        row("T1/T5 Outdated, source disconnected", state9("outdated", None), &["r0"], Refused(&["r0/0: local disk Outdated", "r0: connection to node2 is Connecting"])),
        row("T1 SyncTarget", state9("sync-target", None), &["r0"], Refused(&["r0/0: local disk Inconsistent (SyncTarget from node2"])),
        row("T3 split brain", state9("split-brain", None), &["r0"], Refused(&["StandAlone (SplitBrain)"])),
        row("T4 no quorum", state9("no-quorum", None), &["r0"], Refused(&["r0/0: no quorum"])),
        row("T7 may_promote:no, source Secondary", state9("may-promote-no", None), &["r0"], Refused(&["r0: DRBD reports may_promote:no"])),
        row("T ok both Secondary", state9("healthy-2node", None), &["r0"], Allowed),
        row("T5 source replication paused", state9("sync-source", None), &["r0"], Refused(&["r0/0: replication with node2 is SyncSource"])),
    ]);
}

#[test]
fn migrate_target_on_drbd84() {
    check_rows(&from("node1"), vec![
        row("T ok", state84("incoming", Some("84-dual")), &["r0"], Allowed),
        row("T ok both Secondary", state84("healthy", None), &["r0"], Allowed),
        row("T7 dual-primary off", state84("incoming", Some("84-single")), &["r0"], Refused(&["allow-two-primaries is off"])),
        row("T1 Outdated", state84("outdated", Some("84-dual")), &["r0"], Refused(&["r0/0: local disk Outdated"])),
        row("T1 SyncTarget", state84("sync-target", Some("84-dual")), &["r0"], Refused(&["r0/0: local disk Inconsistent (SyncTarget"])),
        row("T3 StandAlone", state84("standalone", Some("84-dual")), &["r0"], Refused(&["StandAlone"])),
    ]);
}

#[test]
fn reasons_name_resource_volume_peer_and_state() {
    let v = decide(&state9("outdated-peer-uptodate", None), &names(&["r0"]), &start(), &GateOptions::default());
    assert_eq!(v.reasons, vec!["r0/0: local disk Outdated, peer node2 UpToDate: refusing to start on stale data".to_string()]);
    let v = decide(&state9("diskless-client", None), &names(&["r0"]), &start(), &GateOptions { allow_diskless: true, dual_primary: false });
    assert!(v.allowed);
    assert_eq!(v.notes, vec!["r0/0: local disk Diskless (diskless client), data served by peer node1 (UpToDate)".to_string()]);
}

#[test]
fn an_empty_resource_list_has_nothing_to_refuse() {
    let v = decide(&state9("outdated", None), &[], &start(), &GateOptions::default());
    assert!(v.allowed);
}

#[test]
fn a_volume_missing_from_proc_drbd_is_refused() {
    // /proc/drbd shows minor 0 only, the names say r0 also has minor 1.
    let mut state = state84("healthy", None);
    state.resources[0].missing_volumes = vec![1];
    let v = decide(&state, &names(&["r0"]), &start(), &GateOptions::default());
    assert_eq!(v.reasons, vec!["r0/1: configured but not reported by DRBD: refusing to start".to_string()]);
}
