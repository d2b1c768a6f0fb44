//! Issue 23, the built agent against one real running guest: a random
//! sample of (parameters, monitor depth, config, memory, action) states,
//! checked against the safety rules of src/vdomain/invariants.rs that a
//! running guest can show: (1) no action answers 7 while the guest runs,
//! (3) nothing but stop stops it, and a stop answers 0 only with it gone,
//! (5) probe and recurring monitor give the same answer. The in-process
//! property test covers the cross product on the fake; this sample is what
//! the fake cannot show (libvirt's own answers, the process, the files).
//!
//! VG_PROBE_SEED=<n> replays a sample; VG_PROBE_STATES sets its size.

mod support;

use std::time::Instant;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::{
    agent, ensure_libvirtd, firmware_guest, process_alive, rsctmp_for_this_test, virsh, wait_for, ConfigAway, Frozen,
    GuestGuard, PrivateHypervisor, XorShift, HOST_URI,
};

/// Per parameter: values that are valid, and values that are not.
/// `/bin/false` as a monitor script is valid and fails: a failure (1), the
/// same for probe and monitor.
const VALUES: &[(&str, &[&str], &[&str])] = &[
    ("force_stop", &["false"], &["maybe"]),
    ("migration_transport", &["ssh"], &["bogus"]),
    ("migration_user", &["root"], &["bad user"]),
    ("migration_downtime", &["200"], &["-1"]),
    ("migration_speed", &["100"], &["fast"]),
    ("migrate_options", &["--auto-converge"], &["--bogus-flag"]),
    ("monitor_scripts", &["/bin/true", "/bin/false"], &["/nonexistent/check"]),
    ("guest_agent_grace", &["10"], &["-5"]),
    ("wait_for_guest_agent", &["false"], &["maybe", "true"]),
    ("autoset_utilization_cpu", &["false"], &["perhaps"]),
    ("migrateport", &["49152"], &["70000"]),
    ("remoteuri", &["qemu+ssh://%n/system"], &["node2"]),
    ("save_config_on_stop", &["false"], &["sometimes"]),
    ("sync_config_on_stop", &["false"], &["true"]),
    ("snapshot", &[], &["/nonexistent-snapshots"]),
    ("backingfile", &[], &["/nonexistent.qcow2"]),
    ("stateless", &["false"], &["true"]),
    ("shutdown_mode", &["acpi"], &["bogus"]),
    ("start_resources", &["false"], &["x"]),
];

/// OCF_CHECK_LEVEL, 0 half of the time (10 and 20 ask for the guest agent
/// channel the firmware guest lacks: degraded).
const LEVELS: [&str; 4] = ["0", "0", "10", "20"];

/// libvirt's id of the running domain: a new one at every start, so an
/// unchanged id means the guest was neither stopped nor started again.
fn domain_id(name: &str) -> Option<String> {
    let out = virsh(HOST_URI, &["domid", name]);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !id.is_empty() && id != "-").then_some(id)
}

fn seed() -> u64 {
    std::env::var("VG_PROBE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    })
}

/// One sampled state, as the environment the agent gets.
#[derive(Debug)]
struct Sampled {
    params: Vec<(String, String)>,
    check_level: &'static str,
    config_missing: bool,
    memory_gone: bool,
}

fn sample(rng: &mut XorShift) -> Sampled {
    let mut params = Vec::new();
    // Mostly one or two parameters, so that each bad value is seen alone.
    for _ in 0..rng.below(3) + usize::from(rng.below(4) == 0) {
        let (name, valid, invalid) = rng.pick(VALUES);
        let values: Vec<&str> = valid.iter().chain(invalid.iter()).copied().collect();
        params.push(((*name).to_owned(), (*rng.pick(&values)).to_owned()));
    }
    Sampled {
        params,
        check_level: LEVELS[rng.below(LEVELS.len())],
        config_missing: rng.below(8) == 0,
        memory_gone: rng.below(6) == 0,
    }
}

fn env_of(guest: &GuestGuard, s: &Sampled, rsctmp: &str) -> Vec<(String, String)> {
    let mut env = vec![
        ("OCF_RESKEY_config".to_owned(), guest.xml.to_string_lossy().into_owned()),
        ("OCF_RESKEY_hypervisor".to_owned(), HOST_URI.to_owned()),
        ("OCF_RESKEY_CRM_meta_timeout".to_owned(), "20000".to_owned()),
        ("OCF_RESOURCE_INSTANCE".to_owned(), guest.name.clone()),
        ("OCF_CHECK_LEVEL".to_owned(), s.check_level.to_owned()),
        ("HA_RSCTMP".to_owned(), rsctmp.to_owned()),
    ];
    for (name, value) in &s.params {
        env.push((format!("OCF_RESKEY_{name}"), value.clone()));
    }
    env
}

fn call(action: &str, env: &[(String, String)], extra: &[(&str, &str)]) -> support::AgentRun {
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.extend_from_slice(extra);
    agent(action, &all)
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn a_random_sample_of_states_never_hides_or_stops_the_running_guest() {
    ensure_libvirtd();
    let seed = seed();
    let states: usize = std::env::var("VG_PROBE_STATES").ok().and_then(|n| n.parse().ok()).unwrap_or(400);
    eprintln!("agent_probe_invariants: seed {seed} (VG_PROBE_SEED={seed} replays), {states} states");
    let mut rng = XorShift::new(seed);

    let guest = firmware_guest("vg-probe-inv");
    let remembered = rsctmp_for_this_test().to_string_lossy().into_owned();
    let nothing_remembered = rsctmp_for_this_test().join("empty");
    std::fs::create_dir_all(&nothing_remembered).unwrap();
    let nothing_remembered = nothing_remembered.to_string_lossy().into_owned();

    let valid = Sampled { params: Vec::new(), check_level: "0", config_missing: false, memory_gone: false };
    let start = call("start", &env_of(&guest, &valid, &remembered), &[]);
    assert_eq!(start.code, 0, "start: {}", start.stderr);
    let id = domain_id(&guest.name).expect("the guest runs after start");

    let began = Instant::now();
    let (mut calls, mut codes) = (0, std::collections::BTreeMap::<(String, i32), usize>::new());
    for n in 0..states {
        let s = sample(&mut rng);
        // A node that remembers nothing: emptied before every use, as the
        // monitor of a found guest remembers it there.
        let _ = std::fs::remove_dir_all(&nothing_remembered);
        std::fs::create_dir_all(&nothing_remembered).unwrap();
        let rsctmp = if s.memory_gone { &nothing_remembered } else { &remembered };
        let env = env_of(&guest, &s, rsctmp);
        let away = s.config_missing.then(|| ConfigAway::new(&guest.xml));
        let context = |what: &str, run: &support::AgentRun| format!("seed {seed}, state {n} {s:?}: {what} answered {}: {}", run.code, run.stderr);

        let probe = call("monitor", &env, &[]);
        let recurring = call("monitor", &env, &[("OCF_RESKEY_CRM_meta_interval", "10000")]);
        let validate = call("validate-all", &env, &[]);
        let start = call("start", &env, &[]);
        calls += 4;
        for (what, run) in [("probe", &probe), ("recurring monitor", &recurring), ("validate-all", &validate), ("start", &start)] {
            *codes.entry((what.to_owned(), run.code)).or_default() += 1;
            assert_ne!(run.code, 7, "rule 1: {}", context(what, run));
            assert_eq!(run.signal, None, "killed: {}", context(what, run));
        }
        assert_eq!(probe.code, recurring.code, "rule 5: {} / {}", context("probe", &probe), context("monitor", &recurring));
        assert!([0, 1, 190].contains(&probe.code), "{}", context("probe", &probe));
        if probe.code != 0 {
            assert!(probe.exit_reason().is_some(), "a probe that is not plain 0 says why: {}", context("probe", &probe));
        }
        drop(away);
        assert_eq!(domain_id(&guest.name).as_deref(), Some(id.as_str()), "rule 3: only stop may stop the guest; seed {seed}, state {n} {s:?}");
    }
    let took = began.elapsed();
    eprintln!("agent_probe_invariants: {states} states, {calls} agent calls in {:.0}s; answers {codes:?}", took.as_secs_f64());

    // Rule 3 the other way: a stop with whatever parameters stops it, and says so.
    let s = sample(&mut rng);
    let stop = call("stop", &env_of(&guest, &s, &remembered), &[]);
    assert_eq!(stop.code, 0, "seed {seed}: stop with {s:?}: {}", stop.stderr);
    assert_eq!(domain_id(&guest.name), None, "seed {seed}: stop answered 0 and the guest runs: {}", stop.stderr);
}

/// What the property test cannot model: the guest's emulator alive while
/// libvirtd is frozen, then gone. The guest is found in /proc; a bad
/// parameter still never makes it look stopped, probe and recurring monitor
/// agree, and a stop under the same bad parameters kills the emulator.
#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn with_libvirtd_frozen_or_down_a_bad_parameter_still_never_hides_the_guest() {
    ensure_libvirtd();
    let hv = PrivateHypervisor::start("probe-inv");
    let mut guest = firmware_guest("vg-probe-nolv");
    guest.track(&hv.uri);
    let config = guest.xml.to_string_lossy().into_owned();
    let base = [
        ("OCF_RESKEY_config", config.as_str()),
        ("OCF_RESKEY_hypervisor", hv.uri.as_str()),
        ("OCF_RESKEY_CRM_meta_timeout", "8000"),
        ("OCF_RESOURCE_INSTANCE", guest.name.as_str()),
    ];
    let start = agent("start", &base);
    assert_eq!(start.code, 0, "start: {}", start.stderr);
    let qemu = hv.qemu_pid(&guest.name).expect("qemu pid of the started guest");
    let bad: Vec<(&str, &str)> = base.iter().copied().chain([("OCF_RESKEY_migration_transport", "bogus")]).collect();
    let recurring: Vec<(&str, &str)> = bad.iter().copied().chain([("OCF_RESKEY_CRM_meta_interval", "10000")]).collect();

    let daemon = hv.libvirtd_pid().expect("libvirtd pid") as i32;
    kill(Pid::from_raw(daemon), Signal::SIGSTOP).unwrap();
    let frozen = Frozen(daemon);
    let probe = agent("monitor", &bad);
    let monitor = agent("monitor", &recurring);
    assert_eq!(probe.code, 190, "libvirtd frozen, the watchdog answers from /proc and keeps the problem: {}", probe.stderr);
    assert_eq!(probe.code, monitor.code, "probe {} / monitor {}", probe.stderr, monitor.stderr);
    assert!(probe.elapsed < std::time::Duration::from_secs(8), "{:?}", probe.elapsed);
    drop(frozen);

    hv.kill_daemon();
    assert!(process_alive(qemu), "killing libvirtd leaves the guest running");
    let probe = agent("monitor", &bad);
    let monitor = agent("monitor", &recurring);
    assert_eq!(probe.code, 190, "libvirtd down, the emulator in /proc: {}", probe.stderr);
    assert_eq!(monitor.code, 190, "{}", monitor.stderr);
    assert!(probe.exit_reason().unwrap_or_default().contains("migration_transport"), "{}", probe.stderr);

    let stop = agent("stop", &bad);
    assert_eq!(stop.code, 0, "{}", stop.stderr);
    assert!(wait_for(std::time::Duration::from_secs(5), std::time::Duration::from_millis(50), || !process_alive(qemu)), "qemu {qemu} survived the stop");
    assert_eq!(agent("monitor", &bad).code, 7, "stopped: now the probe may say not running");
}
