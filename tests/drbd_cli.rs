//! Black-box: the built binary's `drbd status` and `drbd check`, with the
//! fake drbdsetup/drbdadm first on PATH replaying captured output, and
//! /proc/drbd (when the case has one) given in a private mount namespace.

mod support;

use std::process::{Command, Output};

use support::{drbd_node, fixtures, XorShift};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// In a case's `env`: the node's /proc/drbd is this file (without it the
/// node has none).
const PROC_DRBD: &str = "/proc/drbd";

/// The binary with a clean DRBD environment: the fakes first on PATH, no
/// /proc/drbd, an empty /dev/drbd; `env` adds to that.
fn virtguard(args: &[&str], env: &[(&str, String)]) -> Run {
    let path = format!("{}:{}", fixtures().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let proc_drbd = env.iter().find(|(k, _)| *k == PROC_DRBD).map(|(_, file)| file.as_str());
    let node = drbd_node(proc_drbd);
    let mut command = Command::new(&node[0]);
    command.args(&node[1..]).arg(env!("CARGO_BIN_EXE_virtguard")).args(args).env("PATH", path);
    for var in ["VIRTGUARD_FAKE_DRBD_FIXTURE", "VIRTGUARD_FAKE_DRBD_SHOW", "VIRTGUARD_FAKE_DRBD_LOG", "VIRTGUARD_FAKE_DRBD_SLEEP"] {
        command.env_remove(var);
    }
    for (k, v) in env.iter().filter(|(k, _)| *k != PROC_DRBD) {
        command.env(k, v);
    }
    let Output { status, stdout, stderr } = command.output().expect("run virtguard");
    Run {
        code: status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

fn fake(fixture: &str) -> Vec<(&'static str, String)> {
    vec![("VIRTGUARD_FAKE_DRBD_FIXTURE", fixture.to_owned())]
}

fn fixture_path(file: &str) -> String {
    fixtures().join(file).to_string_lossy().into_owned()
}

fn check(fixture: &str, args: &[&str]) -> Run {
    let mut all = vec!["drbd", "check"];
    all.extend_from_slice(args);
    virtguard(&all, &fake(fixture))
}

#[test]
fn status_prints_a_table() {
    let mut env = fake("healthy-2node");
    env.push(("VIRTGUARD_FAKE_DRBD_SHOW", "to-node2-dual".into()));
    let r = virtguard(&["drbd", "status"], &env);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("# DRBD 9 (drbdsetup events2 --now all)\n"), "{}", r.stdout);
    assert!(r.stdout.contains("r0  role:Secondary  suspended:no  may_promote:yes\n"), "{}", r.stdout);
    assert!(r.stdout.contains("  volume:0  minor:0  disk:UpToDate  quorum:yes  backing:/dev/vg0/r0\n"), "{}", r.stdout);
    assert!(r.stdout.contains("  peer:node2 (node-id 1)  connection:Connected  role:Secondary  allow-two-primaries:yes\n"), "{}", r.stdout);
    assert!(r.stdout.contains("    volume:0  replication:Established  peer-disk:UpToDate\n"), "{}", r.stdout);
}

#[test]
fn status_json_carries_the_model() {
    let r = virtguard(&["drbd", "status", "web", "--json"], &fake("multi-volume"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["origin"]["kind"], "events2");
    let resources = v["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0]["name"], "web");
    assert_eq!(resources[0]["volumes"][0]["minor"], 10);
    assert_eq!(resources[0]["volumes"][0]["disk"], "UpToDate");
    assert_eq!(resources[0]["peers"][0]["name"], "node2");
    assert_eq!(resources[0]["peers"][0]["volumes"][0]["replication"], "Established");

    let r = virtguard(&["drbd", "status", "--json"], &fake("sync-target"));
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["resources"][0]["peers"][0]["volumes"][0]["done"], 37.21);
}

#[test]
fn status_of_an_unknown_resource_or_unreadable_state() {
    let r = virtguard(&["drbd", "status", "r9"], &fake("healthy-2node"));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("r9: no such DRBD resource on this node"), "{}", r.stderr);
    for fixture in ["garbage", "truncated", "empty", "no-such-fixture"] {
        let r = virtguard(&["drbd", "status"], &fake(fixture));
        assert_eq!(r.code, 2, "{fixture}: {}", r.stdout);
        assert!(r.stderr.starts_with("cannot read DRBD state: "), "{fixture}: {}", r.stderr);
    }
    // No fixture at all: the fake fails like drbdsetup without the kernel module.
    let r = virtguard(&["drbd", "status"], &[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("Failed to modprobe drbd"), "{}", r.stderr);
}

#[test]
fn check_exit_codes_follow_the_table() {
    let r = check("healthy-2node", &["r0", "--for", "start"]);
    assert_eq!((r.code, r.stderr.as_str()), (0, ""));
    // This fixture has no `drbdsetup show` text: F1 cannot read the fencing policy.
    let (warning, allowed) = r.stdout.split_once('\n').unwrap();
    assert!(warning.starts_with("warning: r0: fencing policy unknown (drbdsetup show: "), "{}", r.stdout);
    assert_eq!(allowed, "r0: start allowed (DRBD 9 (drbdsetup events2 --now all))\n");

    let r = check("outdated-peer-uptodate", &["r0", "--for", "start"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "r0/0: local disk Outdated, peer node2 UpToDate: refusing to start on stale data\n");

    let r = check("multi-volume-one-outdated", &["r0", "--for", "start"]);
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.lines().count(), 2, "one line per reason: {}", r.stderr);

    for (fixture, code) in [
        ("sync-target", 1),
        ("inconsistent", 1),
        ("failed", 1),
        ("no-quorum", 1),
        ("peer-primary", 1),
        ("split-brain", 1),
        ("may-promote-no", 1),
        ("diskless-client", 1),
        ("healthy-3node", 0),
        ("unknown-fields", 0),
        ("healthy-statistics", 0),
    ] {
        let r = check(fixture, &["r0", "--for", "start"]);
        assert_eq!(r.code, code, "{fixture}: {}{}", r.stdout, r.stderr);
    }
    assert_eq!(check("diskless-client", &["r0", "--for", "start", "--allow-diskless"]).code, 0);
    assert_eq!(check("multi-volume", &["r0", "web", "--for", "start"]).code, 0);
    assert_eq!(check("multi-volume", &["r0", "r9", "--for", "start"]).code, 1);
}

#[test]
fn check_never_succeeds_on_unreadable_input() {
    for fixture in ["garbage", "truncated", "empty", "unknown-disk-state", "no-such-fixture"] {
        for purpose in ["start", "migrate-source", "migrate-target"] {
            let r = check(fixture, &["r0", "--for", purpose, "--peer", "node2"]);
            assert_eq!(r.code, 2, "{fixture} {purpose}: {}", r.stdout);
            assert!(r.stdout.is_empty());
        }
    }
    // Random noise, as drbdsetup's output.
    let dir = std::env::temp_dir().join(format!("virtguard-drbd-cli-noise-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = XorShift::new(2024);
    for i in 0..15 {
        let bytes: Vec<u8> = (0..rng.below(300)).map(|_| (rng.next_u64() & 0xff) as u8).collect();
        let recording = dir.join(format!("noise-{i}"));
        std::fs::write(recording.with_extension("events2"), &bytes).unwrap();
        let r = virtguard(&["drbd", "check", "r0", "--for", "start"], &fake(&recording.to_string_lossy()));
        assert_eq!(r.code, 2, "noise {i}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn migration_checks_read_allow_two_primaries_from_drbdsetup_show() {
    let log = std::env::temp_dir().join(format!("virtguard-drbd-cli-log-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut env = fake("running-primary");
    env.push(("VIRTGUARD_FAKE_DRBD_SHOW", "to-node2-dual".into()));
    env.push(("VIRTGUARD_FAKE_DRBD_LOG", log.to_string_lossy().into_owned()));
    let r = virtguard(&["drbd", "check", "r0", "--for", "migrate-source", "--peer", "node2"], &env);
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "r0: live migration to node2 allowed (DRBD 9 (drbdsetup events2 --now all))\n");
    assert_eq!(calls, "drbdsetup events2 --now all\ndrbdsetup show all\n");

    env[1].1 = "to-node2-single".into();
    let r = virtguard(&["drbd", "check", "r0", "--for", "migrate-source", "--peer", "node2"], &env[..2]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("allow-two-primaries is off on the connection to node2"), "{}", r.stderr);

    let r = virtguard(&["drbd", "check", "r0", "--for", "migrate-source", "--peer", "node3"], &env[..2]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("no connection to node3"), "{}", r.stderr);

    let mut env = fake("migration-incoming");
    env.push(("VIRTGUARD_FAKE_DRBD_SHOW", "to-node1-dual".into()));
    assert_eq!(virtguard(&["drbd", "check", "r0", "--for", "migrate-target", "--peer", "node1"], &env).code, 0);
    env[1].1 = "to-node1-single".into();
    assert_eq!(virtguard(&["drbd", "check", "r0", "--for", "migrate-target", "--peer", "node1"], &env).code, 1);
}

/// A start reads the configuration too, for the fencing policy (rule F1).
#[test]
fn start_checks_read_the_state_and_the_configuration() {
    let log = std::env::temp_dir().join(format!("virtguard-drbd-cli-start-log-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut env = fake("healthy-2node");
    env.push(("VIRTGUARD_FAKE_DRBD_LOG", log.to_string_lossy().into_owned()));
    assert_eq!(virtguard(&["drbd", "check", "r0", "--for", "start"], &env).code, 0);
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert_eq!(calls, "drbdsetup events2 --now all\ndrbdsetup show all\n");
}

#[test]
fn migration_purposes_need_the_peer() {
    let r = check("healthy-2node", &["r0", "--for", "migrate-source"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("--peer"), "{}", r.stderr);
    let r = check("healthy-2node", &["--for", "start"]);
    assert_ne!(r.code, 0, "resources are required");
    let r = check("healthy-2node", &["r0", "--for", "stop"]);
    assert_ne!(r.code, 0);
}

#[test]
fn drbd84_through_proc_drbd_and_drbdadm() {
    let log = std::env::temp_dir().join(format!("virtguard-drbd-cli-84-log-{}", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let env = |name: &str| {
        vec![
            ("VIRTGUARD_FAKE_DRBD_FIXTURE", format!("84-{name}")),
            (PROC_DRBD, fixture_path(&format!("84-{name}.proc"))),
            ("VIRTGUARD_FAKE_DRBD_LOG", log.to_string_lossy().into_owned()),
        ]
    };
    let r = virtguard(&["drbd", "check", "r0", "--for", "start"], &env("healthy"));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(calls, "drbdsetup events2 --now all\ndrbdadm sh-resources\ndrbdadm sh-dev r0\ndrbdsetup show all\n");

    let r = virtguard(&["drbd", "check", "r0", "--for", "start"], &env("outdated"));
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr, "r0/0: local disk Outdated, no peer known UpToDate: refusing to start on stale data\n");
    for (name, code) in [("sync-target", 1), ("standalone", 1), ("peer-primary", 1), ("diskless", 1), ("failed", 1), ("suspended", 1), ("sync-source", 0)] {
        assert_eq!(virtguard(&["drbd", "check", "r0", "--for", "start"], &env(name)).code, code, "84-{name}");
    }
    assert_eq!(virtguard(&["drbd", "check", "r0", "web", "--for", "start"], &env("multi-volume")).code, 0);

    let r = virtguard(&["drbd", "status", "--json"], &env("multi-volume"));
    let _ = std::fs::remove_file(&log);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["origin"]["kind"], "proc-drbd");
    assert_eq!(v["origin"]["version"], "8.4.11");
    assert_eq!(v["resources"][0]["name"], "r0");
    assert_eq!(v["resources"][0]["volumes"].as_array().unwrap().len(), 2);
    assert_eq!(v["resources"][1]["volumes"][0]["minor"], 2);
}

#[test]
fn no_drbd_at_all_is_never_success() {
    // drbdsetup missing from PATH and no /proc/drbd.
    let r = virtguard(&["drbd", "check", "r0", "--for", "start"], &[("PATH", "/nonexistent-virtguard-path".into())]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stderr.contains("drbdsetup is not on PATH"), "{}", r.stderr);
    // DRBD 9 loaded but drbdsetup failing.
    let r = virtguard(&["drbd", "check", "r0", "--for", "start"], &[(PROC_DRBD, fixture_path("9-loaded.proc"))]);
    assert_eq!(r.code, 2);
    // /proc/drbd that is not /proc/drbd.
    let r = virtguard(&["drbd", "check", "r0", "--for", "start"], &[(PROC_DRBD, fixture_path("garbage.events2"))]);
    assert_eq!(r.code, 2);
}


/// The real DRBD 8.4.11 kernel's outputs (tests/fixtures/drbd84-real) as
/// Debian 12's drbd-utils 9.22 gives them: `drbdsetup events2` answers on
/// 8.4 (through drbdsetup-84), so the fake answers too, with the kernel's
/// own text, and /proc/drbd says 8.4.11. The verdicts are those drbd_real
/// saw in the emulated nodes.
#[test]
fn drbd84_through_events2_as_drbd_utils_9_reads_it() {
    let real = |state: &str| fixtures().parent().unwrap().join("drbd84-real").join(state).to_string_lossy().into_owned();
    let env = |state: &str| {
        vec![
            ("VIRTGUARD_FAKE_DRBD_FIXTURE", real(state)),
            (PROC_DRBD, format!("{}.proc", real(state))),
        ]
    };
    let check = |state: &str, args: &[&str]| {
        let mut all = vec!["drbd", "check", "r0"];
        all.extend_from_slice(args);
        virtguard(&all, &env(state))
    };
    let start = ["--for", "start"];
    let to_beta = ["--for", "migrate-source", "--peer", "beta"];
    let from_alpha = ["--for", "migrate-target", "--peer", "alpha"];

    let r = check("primary-a2p.alpha", &to_beta);
    assert_eq!((r.code, r.stdout.as_str()), (0, "r0: live migration to beta allowed (DRBD 8.4.11 (drbdsetup events2 --now all))\n"), "{}", r.stderr);
    let r = check("peer-primary-a2p.beta", &from_alpha);
    assert_eq!(r.code, 0, "the migration source is the one peer, not a third Primary: {}", r.stderr);
    assert_eq!(check("dual-primary.beta", &from_alpha).code, 0);
    let r = check("primary.alpha", &to_beta);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("allow-two-primaries is off on the connection to beta"), "{}", r.stderr);
    let r = check("standalone.beta", &start);
    assert_eq!(r.code, 1, "StandAlone without conn-name is a refusal, not unreadable: {}", r.stderr);
    assert!(r.stderr.contains("r0: connection to the peer is StandAlone"), "{}", r.stderr);
    for (state, args, code) in [
        ("healthy.alpha", &start[..], 0),
        ("new-inconsistent.alpha", &start, 1),
        ("sync-source.alpha", &start, 0),
        ("sync-source.alpha", &to_beta, 1),
        ("sync-target.beta", &start, 1),
        ("sync-target.beta", &from_alpha, 1),
        ("peer-primary.beta", &start, 1),
        ("peer-primary.beta", &from_alpha, 1),
        ("standalone-outdated.beta", &start, 1),
        ("peer-outdated.alpha", &start, 0),
        ("peer-outdated.alpha", &to_beta, 1),
        ("diskless.beta", &start, 1),
        ("peer-diskless.alpha", &to_beta, 1),
        ("split-brain.alpha", &start, 1),
    ] {
        let r = check(state, args);
        assert_eq!(r.code, code, "{state} {args:?}: {}{}", r.stdout, r.stderr);
    }
    let r = virtguard(&["drbd", "check", "r0", "--for", "start", "--allow-diskless"], &env("diskless.beta"));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// `--dual-primary` (the agent's drbd_dual_primary) on the real kernel's
/// outputs: both nodes Primary with allow-two-primaries is the setup, not a
/// second writer (S5, M3); a Primary peer without allow-two-primaries still is.
#[test]
fn dual_primary_by_design_accepts_the_primary_peer_that_allow_two_primaries_explains() {
    let real = |state: &str| fixtures().parent().unwrap().join("drbd84-real").join(state).to_string_lossy().into_owned();
    let check = |state: &str, args: &[&str]| {
        let mut all = vec!["drbd", "check", "r0"];
        all.extend_from_slice(args);
        virtguard(&all, &[("VIRTGUARD_FAKE_DRBD_FIXTURE", real(state)), (PROC_DRBD, format!("{}.proc", real(state)))])
    };
    let r = check("dual-primary.beta", &["--for", "start"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("r0: the peer is Primary: refusing to start a second writer"), "{}", r.stderr);
    let r = check("dual-primary.beta", &["--for", "start", "--dual-primary"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("note: r0: the peer is Primary as well, as drbd_dual_primary expects"), "{}", r.stdout);
    let r = check("dual-primary.beta", &["--for", "migrate-source", "--peer", "alpha"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("r0: alpha is already Primary: refusing to migrate to alpha"), "{}", r.stderr);
    let r = check("dual-primary.beta", &["--for", "migrate-source", "--peer", "alpha", "--dual-primary"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = check("peer-primary.beta", &["--for", "start", "--dual-primary"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("allow-two-primaries is off on that connection, which drbd_dual_primary needs"), "{}", r.stderr);
}

/// Rule F1 by hand: a resource whose fencing policy is `dont-care` (or
/// cannot be read) is a warning for a start, a refusal with
/// `--require-fencing`; a fenced one passes either way; migrations do not
/// ask (both copies are connected and UpToDate, M2/T5).
#[test]
fn start_warns_about_a_resource_without_fencing_and_refuses_it_when_required() {
    let real = |state: &str| fixtures().parent().unwrap().join("drbd84-real").join(state).to_string_lossy().into_owned();
    let env = |state: &str, show: String| {
        vec![
            ("VIRTGUARD_FAKE_DRBD_FIXTURE", real(state)),
            ("VIRTGUARD_FAKE_DRBD_SHOW", show),
            (PROC_DRBD, format!("{}.proc", real(state))),
        ]
    };
    let start = ["drbd", "check", "r0", "--for", "start"];
    let start_requiring = ["drbd", "check", "r0", "--for", "start", "--require-fencing"];
    let allowed = "r0: start allowed (DRBD 8.4.11 (drbdsetup events2 --now all))\n";

    // The lab's drbd.conf: fencing resource-only, as the kernel printed it.
    for args in [&start[..], &start_requiring] {
        let r = virtguard(args, &env("healthy.alpha", real("healthy.alpha")));
        assert_eq!((r.code, r.stdout.as_str(), r.stderr.as_str()), (0, allowed, ""), "{args:?}");
    }

    // The same pair after `fencing dont-care` was adjusted into the kernel.
    let unfenced = || env("no-fencing.alpha", real("no-fencing.alpha"));
    let r = virtguard(&start, &unfenced());
    assert_eq!((r.code, r.stderr.as_str()), (0, ""), "{}", r.stdout);
    let (warning, rest) = r.stdout.split_once('\n').unwrap();
    assert!(warning.starts_with("warning: r0: fencing dont-care (volume 0) (rule F1): "), "{}", r.stdout);
    assert!(warning.contains("older data") && warning.ends_with("(drbd_require_fencing makes this a refusal)"), "{warning}");
    assert_eq!(rest, allowed);

    let r = virtguard(&start_requiring, &unfenced());
    assert_eq!((r.code, r.stdout.as_str()), (1, ""), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.starts_with("r0: fencing dont-care (volume 0) (rule F1): refusing to start: "), "{}", r.stderr);
    assert!(r.stderr.contains("older data") && r.stderr.trim_end().ends_with("configure fencing resource-only with the crm-fence-peer handlers"), "{}", r.stderr);

    // The cable cut under a writing Primary, no fencing: beta's older data
    // still says UpToDate, the peer Unknown. Only F1 speaks.
    let cut = || env("cut-no-fencing.beta", real("cut-no-fencing.beta"));
    let r = virtguard(&start, &cut());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("warning: r0: fencing dont-care (volume 0) (rule F1): "), "{}", r.stdout);
    let r = virtguard(&start_requiring, &cut());
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(r.stderr.lines().count(), 1, "F1 is the only reason: {}", r.stderr);
    assert!(r.stderr.starts_with("r0: fencing dont-care (volume 0) (rule F1): refusing to start"), "{}", r.stderr);

    // F1 adds to the state's own reasons rather than replacing them.
    let r = virtguard(&start_requiring, &env("standalone-outdated.beta", fixture_path("84-single")));
    assert_eq!(r.code, 1);
    assert!(r.stderr.lines().any(|l| l.starts_with("r0/0: local disk Outdated")), "{}", r.stderr);
    assert!(r.stderr.lines().any(|l| l.starts_with("r0: fencing dont-care")), "{}", r.stderr);

    // DRBD 9: per connection.
    let mut nine = fake("healthy-2node");
    nine.push(("VIRTGUARD_FAKE_DRBD_SHOW", "to-node2-single".into()));
    let r = virtguard(&start, &nine);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("warning: r0: fencing dont-care (connection to node2) (rule F1): "), "{}", r.stdout);
    let r = virtguard(&start_requiring, &nine);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.starts_with("r0: fencing dont-care (connection to node2) (rule F1): refusing to start"), "{}", r.stderr);

    // The policy cannot be read: unknown is no fencing.
    let r = virtguard(&start_requiring, &fake("healthy-2node"));
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.starts_with("r0: fencing policy unknown (drbdsetup show: "), "{}", r.stderr);

    // Migrations: F1 is not asked, the flag changes nothing.
    let r = virtguard(&["drbd", "check", "r0", "--for", "migrate-source", "--peer", "beta", "--require-fencing"], &env("primary-a2p.alpha", fixture_path("84-dual")));
    assert_eq!((r.code, r.stdout.as_str()), (0, "r0: live migration to beta allowed (DRBD 8.4.11 (drbdsetup events2 --now all))\n"), "{}", r.stderr);
}
