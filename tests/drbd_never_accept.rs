//! States that must never be accepted, for every purpose, and a randomized
//! cross-check of the whole table against an independent statement of it.

mod support;

use support::{edited, names, state9_text, XorShift};
use virtguard::drbd::model::{ConnState, DiskState, DrbdState, Peer, PeerVolume, ReplState, Resource, Role, StateOrigin, Volume};
use virtguard::drbd::{decide, GateOptions, Purpose};

fn purposes() -> [Purpose; 3] {
    [
        Purpose::Start,
        Purpose::MigrateTarget { source: "node2".into() },
        Purpose::MigrateSource { target: "node2".into() },
    ]
}

fn refused(state: &DrbdState, purpose: &Purpose, allow_diskless: bool) -> bool {
    [false, true].iter().all(|&dual_primary| !decide(state, &names(&["r0"]), purpose, &GateOptions { allow_diskless, dual_primary }).allowed)
}

/// The data this node would use (start, migrate-target) in each stale state.
#[test]
fn stale_local_data_is_never_used() {
    for disk in DiskState::ALL.iter().filter(|d| **d != DiskState::UpToDate) {
        let text = edited("healthy-2node", " disk:UpToDate client:no", &format!(" disk:{disk} client:no"));
        let state = state9_text(&text);
        for purpose in [Purpose::Start, Purpose::MigrateTarget { source: "node2".into() }] {
            assert!(refused(&state, &purpose, false), "{disk} accepted for {purpose}");
            if *disk != DiskState::Diskless {
                assert!(refused(&state, &purpose, true), "{disk} accepted for {purpose} with allow_diskless");
            }
        }
    }
}

/// The data the target would use, judged on the source before memory moves.
#[test]
fn a_stale_target_never_receives_a_guest() {
    for disk in DiskState::ALL.iter().filter(|d| **d != DiskState::UpToDate) {
        let text = edited("running-primary", "peer-disk:UpToDate", &format!("peer-disk:{disk}"));
        let mut state = state9_text(&text);
        state.resources[0].peers[0].allow_two_primaries = Some(true);
        assert!(refused(&state, &Purpose::MigrateSource { target: "node2".into() }, false), "target {disk} accepted");
    }
    for repl in ReplState::ALL.iter().filter(|r| !r.is_replicating()) {
        let text = edited("running-primary", "replication:Established", &format!("replication:{repl}"));
        let mut state = state9_text(&text);
        state.resources[0].peers[0].allow_two_primaries = Some(true);
        assert!(refused(&state, &Purpose::MigrateSource { target: "node2".into() }, true), "replication {repl} accepted");
    }
}

#[test]
fn resync_towards_this_node_is_never_accepted() {
    for repl in ReplState::ALL.iter().filter(|r| r.is_sync_target()) {
        for disk in ["UpToDate", "Inconsistent", "Outdated"] {
            let text = edited("healthy-2node", "replication:Established", &format!("replication:{repl}"))
                .replace(" disk:UpToDate client", &format!(" disk:{disk} client"));
            let state = state9_text(&text);
            for purpose in [Purpose::Start, Purpose::MigrateTarget { source: "node2".into() }] {
                assert!(refused(&state, &purpose, true), "{repl}/{disk} accepted for {purpose}");
            }
        }
    }
}

#[test]
fn no_quorum_split_brain_and_suspension_are_never_accepted() {
    let cases = [
        edited("healthy-2node", "quorum:yes", "quorum:no"),
        edited("healthy-2node", "connection:Connected", "connection:StandAlone"),
        edited("healthy-2node", "role:Secondary suspended:no", "role:Secondary suspended:fencing"),
        edited("healthy-2node", "role:Secondary suspended:no", "role:Secondary suspended:no-data"),
        edited("healthy-2node", "force-io-failures:no", "force-io-failures:yes"),
    ];
    for text in &cases {
        let state = state9_text(text);
        for purpose in [Purpose::Start, Purpose::MigrateTarget { source: "node2".into() }] {
            assert!(refused(&state, &purpose, true), "accepted for {purpose}:\n{text}");
        }
    }
    for text in &cases[1..] {
        let mut state = state9_text(&text.replace("role:Secondary suspended", "role:Primary suspended"));
        state.resources[0].peers[0].allow_two_primaries = Some(true);
        assert!(refused(&state, &Purpose::MigrateSource { target: "node2".into() }, true), "accepted:\n{text}");
    }
}

#[test]
fn a_peer_primary_blocks_a_plain_start_on_every_peer_count() {
    for fixture in ["peer-primary", "healthy-3node"] {
        let text = support::fixture_text(&format!("{fixture}.events2")).replace(
            "conn-name:node2 connection:Connected role:Secondary",
            "conn-name:node2 connection:Connected role:Primary",
        );
        assert!(refused(&state9_text(&text), &Purpose::Start, true), "{fixture}");
    }
}

#[test]
fn diskless_needs_permission_for_every_purpose_that_uses_local_data() {
    let state = support::state9("diskless-client", None);
    for purpose in purposes().iter().take(2) {
        assert!(refused(&state, purpose, false), "{purpose}");
    }
}

// ---- randomized cross-check -------------------------------------------------

fn random_state(rng: &mut XorShift) -> DrbdState {
    let volumes: Vec<u32> = (0..1 + rng.below(3) as u32).collect();
    let peer_names = ["node2", "node3", "node4"];
    let peers = (0..rng.below(4))
        .map(|i| Peer {
            name: Some(peer_names[i].to_owned()),
            node_id: Some(i as u32 + 1),
            connection: *rng.pick(&[ConnState::Connected, ConnState::Connected, ConnState::Connecting, ConnState::StandAlone, ConnState::NetworkFailure]),
            role: *rng.pick(Role::ALL),
            sync_state: None,
            allow_two_primaries: *rng.pick(&[None, Some(true), Some(false)]),
            volumes: volumes
                .iter()
                .map(|&number| PeerVolume {
                    number,
                    replication: rng.mostly(ReplState::Established, ReplState::ALL),
                    peer_disk: rng.mostly(DiskState::UpToDate, DiskState::ALL),
                    peer_client: None,
                    done: None,
                })
                .collect(),
        })
        .collect();
    let resource = Resource {
        name: "r0".into(),
        role: *rng.pick(Role::ALL),
        suspended: if rng.below(10) == 0 { vec!["quorum".into()] } else { vec![] },
        force_io_failures: *rng.pick(&[None, Some(false), Some(false), Some(true)]),
        may_promote: *rng.pick(&[None, Some(true), Some(false)]),
        promotion_score: None,
        missing_volumes: vec![],
        volumes: volumes
            .iter()
            .map(|&number| Volume {
                number,
                minor: number,
                disk: rng.mostly(DiskState::UpToDate, DiskState::ALL),
                client: None,
                quorum: *rng.pick(&[None, Some(true), Some(true), Some(false)]),
                backing_dev: None,
            })
            .collect(),
        peers,
    };
    DrbdState { origin: StateOrigin::Events2 { from: "random".into() }, resources: vec![resource], unnamed_minors: vec![] }
}

/// The table restated as one predicate per purpose.
fn expected_allowed(r: &Resource, purpose: &Purpose, allow_diskless: bool, dual_primary: bool) -> bool {
    let base = r.suspended.is_empty() && r.force_io_failures != Some(true) && !r.volumes.is_empty();
    let served = |number: u32| {
        r.peers.iter().any(|p| {
            p.connection == ConnState::Connected
                && p.volume(number).is_some_and(|pv| pv.peer_disk == DiskState::UpToDate && pv.replication.is_replicating())
        })
    };
    let data_here = r.volumes.iter().all(|v| {
        (v.disk == DiskState::UpToDate || (v.disk == DiskState::Diskless && allow_diskless && served(v.number)))
            && v.quorum != Some(false)
            && r.peers.iter().all(|p| !p.volume(v.number).unwrap().replication.is_sync_target())
    }) && r.peers.iter().all(|p| p.connection != ConnState::StandAlone);
    let named = |node: &str| r.peers.iter().find(|p| p.name.as_deref() == Some(node));
    match purpose {
        Purpose::Start => {
            let primaries: Vec<&Peer> = r.peers.iter().filter(|p| p.role == Role::Primary).collect();
            let one_writer = match primaries.as_slice() {
                [] => true,
                [peer] => dual_primary && peer.allow_two_primaries == Some(true),
                _ => false,
            };
            base && data_here && one_writer && !(r.role == Role::Secondary && r.may_promote == Some(false))
        }
        Purpose::MigrateTarget { source } => {
            let Some(src) = named(source) else { return false };
            let promotable = r.role == Role::Primary
                || if src.role == Role::Primary { src.allow_two_primaries == Some(true) } else { r.may_promote != Some(false) };
            base && data_here
                && src.connection == ConnState::Connected
                && r.volumes.iter().all(|v| src.volume(v.number).unwrap().replication.is_replicating())
                && r.peers.iter().all(|p| p.role != Role::Primary || p.name == src.name)
                && promotable
        }
        Purpose::MigrateSource { target } => {
            let Some(t) = named(target) else { return false };
            base && t.connection == ConnState::Connected
                && r.volumes.iter().all(|v| {
                    let pv = t.volume(v.number).unwrap();
                    (pv.peer_disk == DiskState::UpToDate
                        || (pv.peer_disk == DiskState::Diskless && allow_diskless && v.disk == DiskState::UpToDate))
                        && pv.replication.is_replicating()
                })
                && r.peers.iter().all(|p| {
                    p.role != Role::Primary || (p.name == t.name && dual_primary && t.allow_two_primaries == Some(true))
                })
                && (r.role != Role::Primary || t.allow_two_primaries == Some(true))
        }
    }
}

#[test]
fn random_states_agree_with_the_restated_table() {
    let mut checked = 0;
    let mut allowed = [0usize; 3];
    for seed in [1u64, 0x5eed, 0xdeadbeef, 42] {
        let mut rng = XorShift::new(seed);
        for _ in 0..5000 {
            let state = random_state(&mut rng);
            let allow_diskless = rng.below(2) == 0;
            let dual_primary = rng.below(2) == 0;
            for (i, purpose) in purposes().iter().enumerate() {
                let verdict = decide(&state, &names(&["r0"]), purpose, &GateOptions { allow_diskless, dual_primary });
                let expected = expected_allowed(&state.resources[0], purpose, allow_diskless, dual_primary);
                assert_eq!(
                    verdict.allowed, expected,
                    "seed {seed}, {purpose}, allow_diskless {allow_diskless}, dual_primary {dual_primary}: reasons {:?}\n{:#?}",
                    verdict.reasons, state.resources[0]
                );
                assert_eq!(verdict.allowed, verdict.reasons.is_empty());
                allowed[i] += verdict.allowed as usize;
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 60_000);
    // The generator must reach the allowed side of every purpose, or the test proves little.
    assert!(allowed.iter().all(|&n| n > 50), "allowed counts {allowed:?}");
}
