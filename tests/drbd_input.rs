//! Bad input: truncated, empty, garbage, unknown fields, and a few thousand
//! randomly mutated captures. Never a panic; garbage is an error, never "allow".

mod support;

use support::{fixture_text, fixtures, names, XorShift};
use virtguard::drbd::model::{ConnState, DiskState, DrbdState, Role, StateOrigin};
use virtguard::drbd::{decide, events2, proc84, show, GateOptions, Purpose};

fn valid_events2_fixtures() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("events2") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if events2::parse(&text).is_ok() {
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), text));
        }
    }
    out.sort();
    assert!(out.len() >= 20, "fixtures missing: {}", out.len());
    out
}

#[test]
fn the_bad_fixtures_are_errors_and_the_odd_good_ones_are_not() {
    for bad in ["truncated", "empty", "garbage", "unknown-disk-state"] {
        let err = events2::parse(&fixture_text(&format!("{bad}.events2"))).unwrap_err();
        assert!(!err.to_string().is_empty(), "{bad}");
    }
    assert!(events2::parse(&fixture_text("truncated.events2")).unwrap_err().to_string().contains("truncated"));
    assert!(events2::parse(&fixture_text("unknown-disk-state.events2")).unwrap_err().to_string().contains("unknown disk state 'Fresh'"));
    let unknown = events2::parse(&fixture_text("unknown-fields.events2")).unwrap();
    let healthy = events2::parse(&fixture_text("healthy-2node.events2")).unwrap();
    assert_eq!(unknown, healthy, "unknown keys must change nothing");
    let stats = events2::parse(&fixture_text("healthy-statistics.events2")).unwrap();
    assert_eq!(stats, healthy, "statistics must change nothing");
}

#[test]
fn every_prefix_that_lacks_the_end_marker_is_an_error() {
    for (name, text) in valid_events2_fixtures() {
        let marker = text.rfind("exists -").unwrap();
        for cut in (0..=marker + "exists ".len()).filter(|c| text.is_char_boundary(*c)) {
            assert!(events2::parse(&text[..cut]).is_err(), "{name} cut at {cut} accepted");
        }
    }
}

/// Keys whose values the gate interprets, and a spelling outside each set.
const INTERPRETED: &[&str] = &[
    "name", "role", "disk", "peer-disk", "connection", "replication", "quorum", "may_promote", "minor", "volume",
    "suspended", "client", "peer-client", "peer-node-id", "promotion_score", "force-io-failures", "conn-name",
];

fn junk(rng: &mut XorShift) -> String {
    const ALPHABET: &[u8] = b"abcXYZ019-_.,;!%/\\\"'\x01\x7f";
    let len = rng.below(6);
    let mut s: String = (0..len).map(|_| *rng.pick(ALPHABET) as char).collect();
    if rng.below(4) == 0 {
        s.push('\u{e9}');
    }
    s
}

/// Replaces the value of one interpreted key with junk: must be an error.
fn corrupt_known_value(text: &str, rng: &mut XorShift) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let candidates: Vec<(usize, usize)> = lines
        .iter()
        .enumerate()
        .flat_map(|(l, line)| {
            let interpreted = line.starts_with("exists resource")
                || line.starts_with("exists connection")
                || line.starts_with("exists device")
                || line.starts_with("exists peer-device");
            line.split_whitespace()
                .enumerate()
                .filter(move |(_, w)| interpreted && w.split_once(':').is_some_and(|(k, _)| INTERPRETED.contains(&k)))
                .map(move |(i, _)| (l, i))
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let (l, w) = *rng.pick(&candidates);
    let mut words: Vec<String> = lines[l].split_whitespace().map(str::to_owned).collect();
    let key = words[w].split_once(':').unwrap().0.to_owned();
    // Names are free text, so only an empty one is wrong; every other
    // interpreted value is a number, yes/no or a state name, none of which
    // starts with 'x'.
    let value = if key == "name" || key == "conn-name" { String::new() } else { format!("x{}", junk(rng)) };
    words[w] = format!("{key}:{value}");
    let mut out: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    out[l] = words.join(" ");
    Some(out.join("\n") + "\n")
}

fn mutate(text: &str, rng: &mut XorShift) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for _ in 0..1 + rng.below(3) {
        if lines.is_empty() {
            break;
        }
        let l = rng.below(lines.len());
        match rng.below(8) {
            0 => {
                lines.remove(l);
            }
            1 => {
                let copy = lines[l].clone();
                lines.insert(l, copy);
            }
            2 => {
                let m = rng.below(lines.len());
                lines.swap(l, m);
            }
            3 => {
                let chars: Vec<char> = lines[l].chars().collect();
                let cut = rng.below(chars.len() + 1);
                lines[l] = chars[..cut].iter().collect();
            }
            4 => {
                let mut chars: Vec<char> = lines[l].chars().collect();
                let at = rng.below(chars.len() + 1);
                for c in junk(rng).chars() {
                    chars.insert(at.min(chars.len()), c);
                }
                lines[l] = chars.into_iter().collect();
            }
            5 => {
                let mut chars: Vec<char> = lines[l].chars().collect();
                if !chars.is_empty() {
                    let at = rng.below(chars.len());
                    chars[at] = if chars[at].is_ascii_uppercase() { chars[at].to_ascii_lowercase() } else { chars[at].to_ascii_uppercase() };
                }
                lines[l] = chars.into_iter().collect();
            }
            6 => {
                // A value from another key's vocabulary.
                let values = ["Primary", "Secondary", "UpToDate", "Outdated", "Connected", "StandAlone", "SyncTarget", "no", "yes", "7"];
                let mut words: Vec<String> = lines[l].split_whitespace().map(str::to_owned).collect();
                if words.len() > 2 {
                    let w = 2 + rng.below(words.len() - 2);
                    if let Some((k, _)) = words[w].clone().split_once(':') {
                        words[w] = format!("{k}:{}", rng.pick(&values));
                    }
                }
                lines[l] = words.join(" ");
            }
            _ => {
                let cut = rng.below(lines.len() + 1);
                lines.truncate(cut);
            }
        }
    }
    let mut out = lines.join("\n");
    if rng.below(2) == 0 {
        out.push('\n');
    }
    out
}

/// What any allowed start must satisfy, however the input was produced.
fn start_is_safe(state: &DrbdState, resources: &[String]) -> bool {
    resources.iter().all(|name| {
        let Some(r) = state.resource(name) else { return false };
        !r.volumes.is_empty()
            && r.suspended.is_empty()
            && r.volumes.iter().all(|v| v.disk == DiskState::UpToDate && v.quorum != Some(false))
            && r.peers.iter().all(|p| {
                p.role != Role::Primary
                    && p.connection != ConnState::StandAlone
                    && p.volumes.iter().all(|pv| !pv.replication.is_sync_target())
            })
    })
}

#[test]
fn mutated_captures_never_panic_and_never_allow_an_unsafe_start() {
    let corpus = valid_events2_fixtures();
    let purposes = [
        Purpose::Start,
        Purpose::MigrateSource { target: "node2".into() },
        Purpose::MigrateTarget { source: "node1".into() },
    ];
    let mut parsed_ok = 0;
    let mut errors = 0;
    for seed in [7u64, 1234, 0xfeed_f00d, 99] {
        let mut rng = XorShift::new(seed);
        for _ in 0..1000 {
            let (name, text) = rng.pick(&corpus).clone();
            let mutated = mutate(&text, &mut rng);
            match events2::parse(&mutated) {
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    errors += 1;
                }
                Ok(resources) => {
                    parsed_ok += 1;
                    let state = DrbdState { origin: StateOrigin::Events2 { from: name.clone() }, resources, unnamed_minors: vec![] };
                    let wanted = names(&["r0", "web"][..1 + rng.below(2)]);
                    for purpose in &purposes {
                        let v = decide(&state, &wanted, purpose, &GateOptions::default());
                        if v.allowed && matches!(purpose, Purpose::Start) {
                            assert!(start_is_safe(&state, &wanted), "seed {seed}: unsafe start allowed from {name}:\n{mutated}");
                        }
                    }
                }
            }
        }
    }
    assert_eq!(parsed_ok + errors, 4000);
    assert!(errors > 1000 && parsed_ok > 100, "mutations too weak or too strong: {parsed_ok} ok, {errors} errors");
}

#[test]
fn a_corrupted_interpreted_value_is_always_an_error() {
    let corpus = valid_events2_fixtures();
    let mut tried = 0;
    for seed in [3u64, 77, 0xabcdef] {
        let mut rng = XorShift::new(seed);
        for _ in 0..700 {
            let (name, text) = rng.pick(&corpus).clone();
            let Some(bad) = corrupt_known_value(&text, &mut rng) else { continue };
            tried += 1;
            assert!(events2::parse(&bad).is_err(), "seed {seed}: corrupted {name} accepted:\n{bad}");
        }
    }
    assert!(tried > 1500);
}

#[test]
fn random_noise_is_never_a_state() {
    let mut rng = XorShift::new(0x0dd_ba11);
    for _ in 0..2000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| (rng.next_u64() & 0xff) as u8).collect();
        let text = String::from_utf8_lossy(&bytes);
        assert!(events2::parse(&text).is_err(), "{text:?}");
        let _ = proc84::parse(&text);
        let _ = show::parse(&text);
    }
}

#[test]
fn mutated_proc_drbd_and_show_never_panic() {
    let inputs: Vec<String> = ["84-multi-volume.proc", "84-sync-target.proc", "84-suspended.proc", "to-node2-dual.show", "84-dual.show", "3node-dual.show"]
        .iter()
        .map(|f| fixture_text(f))
        .collect();
    let mut rng = XorShift::new(0x84);
    for _ in 0..2000 {
        let input = rng.pick(&inputs).clone();
        let text = mutate(&input, &mut rng);
        if let Ok(p) = proc84::parse(&text) {
            let mut names = proc84::MinorNames::new();
            names.insert(0, ("r0".into(), 0));
            names.insert(1, ("r0".into(), 1));
            let state = proc84::to_state(&p, &names, "fuzz");
            let v = decide(&state, &names_of(&["r0"]), &Purpose::Start, &GateOptions::default());
            if v.allowed {
                assert!(start_is_safe(&state, &names_of(&["r0"])), "{text}");
            }
        }
        let _ = show::parse(&text);
    }
}

fn names_of(list: &[&str]) -> Vec<String> {
    names(list)
}

#[test]
fn proc_drbd_garbage_and_truncation() {
    assert!(proc84::parse("").is_err());
    assert!(proc84::parse("version: 8.4.11 (api:1/proto:86-101)\n 0: cs:Conn").is_err(), "a cut minor line is an error");
    assert!(proc84::parse("version: 8.4.11 (api:1/proto:86-101)\n 0: cs:Connected ro:Primary/Sec").is_err());
    let ok = proc84::parse(&fixture_text("84-healthy.proc")).unwrap();
    assert_eq!(ok.minors.len(), 1);
}

/// Every capture of the real 8.4.11 kernel (tests/fixtures/drbd84-real): the
/// parsers read it, and /proc/drbd and events2, read by their own parsers,
/// tell the same story (roles, disks, connection, replication), so either
/// source gives the gate the same state. `show` yields the one unnamed peer
/// whose allow-two-primaries the configuration sets.
#[test]
fn real_84_captures_parse_and_agree_between_proc_drbd_and_events2() {
    let dir = fixtures().parent().unwrap().join("drbd84-real");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(state) = path.file_name().unwrap().to_str().and_then(|n| n.strip_suffix(".events2")).map(str::to_owned) else {
            continue;
        };
        let read = |kind: &str| std::fs::read_to_string(dir.join(format!("{state}.{kind}"))).unwrap();
        let from_events2 = events2::parse(&read("events2")).unwrap_or_else(|e| panic!("{state}.events2: {e:#}"));
        let proc = proc84::parse(&read("proc")).unwrap_or_else(|e| panic!("{state}.proc: {e:#}"));
        assert_eq!(proc.version, "8.4.11", "{state}");
        let mut names = proc84::MinorNames::new();
        let line = read("drbdadm");
        let (res, device) = line.trim().split_once(' ').unwrap();
        proc84::parse_sh_dev(res, device, &mut names).unwrap();
        let from_proc = proc84::to_state(&proc, &names, "fixture");
        let (a, b) = (&from_events2[0], &from_proc.resources[0]);
        assert_eq!((a.name.as_str(), a.role), (b.name.as_str(), b.role), "{state}");
        assert_eq!(a.volumes[0].disk, b.volumes[0].disk, "{state}");
        assert_eq!(a.volumes[0].minor, b.volumes[0].minor, "{state}");
        let (pa, pb) = (&a.peers[0], &b.peers[0]);
        assert_eq!((pa.connection, pa.role), (pb.connection, pb.role), "{state}");
        assert_eq!(pa.volumes[0].peer_disk, pb.volumes[0].peer_disk, "{state}");
        assert_eq!(pa.volumes[0].replication, pb.volumes[0].replication, "{state}");
        let options = show::parse(&read("show")).unwrap_or_else(|e| panic!("{state}.show: {e:#}"));
        assert_eq!(options.len(), 1, "{state}");
        assert_eq!(options[0].connection, None, "{state}: 8.4 names no connection");
        assert_eq!(options[0].allow_two_primaries, state.contains("a2p") || state.starts_with("dual-primary"), "{state}");
        seen += 1;
    }
    assert!(seen >= 14, "only {seen} real captures in {}", dir.display());
}
