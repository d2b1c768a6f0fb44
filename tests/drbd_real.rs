//! The DRBD gate against the real DRBD 8.4 kernel module: two emulated nodes
//! (tests/lab/drbd-nodes.sh: TCG, the Debian cloud kernel, drbd-utils 9.22,
//! this build of virtguard inside each node) are booted once and walked
//! through every state a gate rule names; in each, `virtguard drbd check`
//! runs in the node against its own kernel and must decide as the rule says.
//!
//! Rule F1 (the fencing policy) is walked too: the pair reconfigured without
//! `fencing`, and the replication cable cut under a writing Primary, which
//! leaves the survivor's older data UpToDate.
//!
//! Each state's outputs (`/proc/drbd`, `drbdsetup events2 --now all`,
//! `drbdsetup show all`) are compared with tests/fixtures/drbd84-real, so
//! the fixtures the parser tests use stay what the kernel prints. With
//! `VIRTGUARD_DRBD_CAPTURE=1` they are written there instead.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "support/command_port.rs"]
mod command_port;
#[path = "support/emulated_lab.rs"]
mod emulated_lab;
use command_port::{CommandPort, Reply};

const ALPHA: &str = "alpha";
const BETA: &str = "beta";
/// Under TCG on a shared 2-core machine DRBD's state changes take seconds.
const STATE_TIMEOUT: Duration = Duration::from_secs(90);
/// One command in a node; drbdadm answers in well under that.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/drbd-nodes.sh")
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drbd84-real")
}

/// The booted pair. Dropping it stops both emulators (by their pids), also
/// when a test panics half-way.
struct DrbdLab {
    dir: PathBuf,
    ports: Vec<CommandPort>,
}

impl DrbdLab {
    fn boot() -> DrbdLab {
        for program in ["qemu-system-x86_64", "python3", "cpio", "drbdadm"] {
            let found = std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
                .unwrap_or(false)
                || Path::new("/usr/sbin").join(program).is_file();
            assert!(found, "the DRBD lab needs {program} (qemu-system-x86, python3, cpio, drbd-utils), which is not installed");
        }
        let root = std::env::temp_dir().join("virtguard-tests");
        std::fs::create_dir_all(&root).unwrap_or_else(|e| panic!("creating {}: {e}", root.display()));
        emulated_lab::sweep_stale(&root, "drbd-real-", &script());
        let dir = root.join(format!("drbd-real-{}", std::process::id()));
        // The guard exists before anything starts, so a failed `up` is cleaned too.
        let ports = [ALPHA, BETA].map(|node| CommandPort::new(node, dir.join(format!("{node}.ctl")), COMMAND_TIMEOUT)).into();
        let lab = DrbdLab { dir, ports };
        let started = Instant::now();
        let output = Command::new("sh")
            .arg(script())
            .arg("up")
            .arg(&lab.dir)
            .arg(env!("CARGO_BIN_EXE_virtguard"))
            .output()
            .expect("running drbd-nodes.sh up");
        assert!(
            output.status.success(),
            "drbd-nodes.sh up failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        eprintln!("DRBD lab: both nodes answer after {:.1}s", started.elapsed().as_secs_f64());
        lab
    }

    /// Runs `command` (one line of sh) in `node`: its exit code and output.
    fn run(&self, node: &str, command: &str) -> Reply {
        let index = [ALPHA, BETA].iter().position(|n| *n == node).unwrap_or_else(|| panic!("no node {node}"));
        self.ports[index].run(command)
    }

    /// Runs `command` and panics unless it succeeds; its stdout.
    fn ok(&self, node: &str, command: &str) -> String {
        let r = self.run(node, command);
        assert_eq!(r.rc, 0, "{node}: '{command}' failed ({}): {}{}", r.rc, r.stdout, r.stderr);
        r.stdout
    }

    /// Waits until `/proc/drbd` of `node` contains every one of `words`.
    fn wait_proc(&self, node: &str, words: &[&str]) {
        let started = Instant::now();
        loop {
            let proc = self.ok(node, "cat /proc/drbd");
            if words.iter().all(|w| proc.contains(w)) {
                return;
            }
            assert!(started.elapsed() < STATE_TIMEOUT, "{node}: /proc/drbd never showed {words:?}; last:\n{proc}");
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Both sides agree: each /proc/drbd shows `words` (the two nodes see a
    /// state change a moment apart, and a capture must not fall in between).
    fn wait_both(&self, words: &[&str]) {
        self.wait_proc(ALPHA, words);
        self.wait_proc(BETA, words);
    }

    /// `virtguard drbd check r0 <args>` in `node`, against its own kernel.
    fn check(&self, node: &str, args: &str) -> Reply {
        self.run(node, &format!("virtguard drbd check r0 {args}"))
    }

    fn allowed(&self, node: &str, args: &str) {
        let r = self.check(node, args);
        assert_eq!(r.rc, 0, "{node}: check {args} should allow: {}{}\n{}", r.stdout, r.stderr, self.state_of(node));
    }

    /// Refused (exit 1, not the "unreadable" 2) with a reason that says `why`.
    fn refused(&self, node: &str, args: &str, why: &str) {
        let r = self.check(node, args);
        assert_eq!(r.rc, 1, "{node}: check {args} should refuse ({why}): {}{}\n{}", r.stdout, r.stderr, self.state_of(node));
        assert!(r.stderr.contains(why), "{node}: check {args}: the reason should say '{why}': {}\n{}", r.stderr, self.state_of(node));
    }

    /// `virtguard drbd check r0 <args>` allows, with F1's warning that the
    /// resource has no fencing policy.
    fn allowed_warning_of_no_fencing(&self, node: &str, args: &str) {
        let r = self.check(node, args);
        assert_eq!(r.rc, 0, "{node}: check {args} should allow: {}{}\n{}", r.stdout, r.stderr, self.state_of(node));
        assert!(
            r.stdout.starts_with("warning: r0: fencing dont-care (volume 0) (rule F1): "),
            "{node}: check {args} should warn of the missing fencing: {}{}",
            r.stdout,
            r.stderr
        );
    }

    /// Pulls (`up` false) or restores the replication cable of `node`:
    /// QEMU's `set_link` on its netdev, through the node's HMP monitor. The
    /// kernel sees a dead link, not a clean disconnect, as in a real cut.
    fn set_link(&self, node: &str, up: bool) {
        let path = self.dir.join(format!("{node}.monitor"));
        let mut monitor = UnixStream::connect(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        monitor.set_read_timeout(Some(COMMAND_TIMEOUT)).unwrap();
        let until_prompt = |monitor: &mut UnixStream| {
            let mut seen = Vec::new();
            let mut chunk = [0; 512];
            while !seen.ends_with(b"(qemu) ") {
                let n = monitor.read(&mut chunk).unwrap_or_else(|e| panic!("{node} monitor: {e}"));
                assert!(n > 0, "{node} monitor closed: {}", String::from_utf8_lossy(&seen));
                seen.extend_from_slice(&chunk[..n]);
            }
            String::from_utf8_lossy(&seen).into_owned()
        };
        until_prompt(&mut monitor);
        let command = format!("set_link repl {}\n", if up { "on" } else { "off" });
        monitor.write_all(command.as_bytes()).unwrap_or_else(|e| panic!("{node} monitor: {e}"));
        let reply = until_prompt(&mut monitor);
        assert!(!reply.contains("not found") && !reply.contains("rror"), "{node}: {command}: {reply}");
    }

    fn state_of(&self, node: &str) -> String {
        self.run(node, "cat /proc/drbd; drbdsetup events2 --now all").stdout
    }

    /// The outputs virtguard reads in this state, compared with (or, with
    /// VIRTGUARD_DRBD_CAPTURE, written to) `drbd84-real/<state>.<node>.*`.
    fn capture(&self, state: &str, node: &str) {
        let outputs = [
            ("proc", self.ok(node, "cat /proc/drbd")),
            ("events2", self.ok(node, "drbdsetup events2 --now all")),
            ("show", self.ok(node, "drbdsetup show all")),
            ("drbdadm", format!("r0 {}", self.ok(node, "drbdadm sh-dev r0").trim())),
        ];
        let capturing = std::env::var_os("VIRTGUARD_DRBD_CAPTURE").is_some_and(|v| !v.is_empty() && v != "0");
        for (kind, text) in outputs {
            let path = fixture_dir().join(format!("{state}.{node}.{kind}"));
            if capturing {
                std::fs::create_dir_all(fixture_dir()).unwrap();
                std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                continue;
            }
            let fixture = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (capture with VIRTGUARD_DRBD_CAPTURE=1)", path.display()));
            // Counters and resync progress move; the states must not.
            assert_eq!(comparable(kind, &fixture), comparable(kind, &text), "{}: the kernel now prints\n{text}", path.display());
        }
    }
}

/// What of an output must match its fixture: events2 and show have no
/// counters in 8.4 (whole text); of /proc/drbd the cs/ro/ds words.
fn comparable(kind: &str, text: &str) -> String {
    match kind {
        "proc" => text
            .lines()
            .filter_map(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.first().filter(|w| w.ends_with(':') && w[..w.len() - 1].parse::<u32>().is_ok())?;
                Some(words.iter().filter(|w| ["cs:", "ro:", "ds:"].iter().any(|p| w.starts_with(p))).copied().collect::<Vec<_>>().join(" "))
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => text.to_owned(),
    }
}

impl Drop for DrbdLab {
    fn drop(&mut self) {
        emulated_lab::take_down(&script(), &self.dir, &self.ports);
    }
}


/// drbd.conf's `fencing` set to `policy` and adjusted into the running kernel.
fn set_fencing(lab: &DrbdLab, policy: &str) {
    both(lab, &format!("sed -i 's/fencing [a-z-]*;/fencing {policy};/' /etc/drbd.conf && grep -q 'fencing {policy};' /etc/drbd.conf && drbdadm adjust r0"));
}

fn both(lab: &DrbdLab, command: &str) {
    for node in [ALPHA, BETA] {
        lab.ok(node, command);
    }
}

#[test]
#[cfg_attr(not(feature = "lab"), ignore = "needs the real lab (libvirtd, QEMU): the lab feature is on by default")]
fn the_gate_decides_as_its_rules_say_against_the_real_drbd_84_kernel() {
    let started = Instant::now();
    let lab = DrbdLab::boot();
    both(&lab, "drbdadm create-md --force r0 && drbdadm up r0");
    lab.wait_proc(ALPHA, &["cs:Connected", "ds:Inconsistent/Inconsistent"]);
    lab.capture("new-inconsistent", ALPHA);
    lab.refused(ALPHA, "--for start", "local disk Inconsistent");

    // Resync at 2 MiB/s: slow enough to be seen from both sides.
    lab.ok(ALPHA, "drbdadm primary --force r0");
    lab.wait_proc(ALPHA, &["cs:SyncSource"]);
    lab.wait_proc(BETA, &["cs:SyncTarget"]);
    lab.capture("sync-source", ALPHA);
    lab.capture("sync-target", BETA);
    lab.refused(BETA, "--for start", "local disk Inconsistent (SyncTarget");
    lab.refused(BETA, "--for migrate-target --peer alpha", "local disk Inconsistent");
    lab.refused(ALPHA, "--for migrate-source --peer beta", "peer beta disk Inconsistent");
    lab.allowed(ALPHA, "--for start");

    both(&lab, "drbd-rate 200M");
    lab.wait_both(&["cs:Connected", "ds:UpToDate/UpToDate"]);
    lab.capture("primary", ALPHA);
    lab.capture("peer-primary", BETA);
    lab.refused(BETA, "--for start", "is Primary");
    lab.refused(BETA, "--for start --dual-primary", "allow-two-primaries is off on that connection");
    lab.refused(ALPHA, "--for migrate-source --peer beta", "allow-two-primaries is off");
    lab.refused(BETA, "--for migrate-target --peer alpha", "allow-two-primaries is off");

    // Dual-primary allowed: a live migration may pass the gate on both sides.
    both(&lab, "drbd-a2p yes");
    lab.capture("primary-a2p", ALPHA);
    lab.capture("peer-primary-a2p", BETA);
    lab.allowed(ALPHA, "--for migrate-source --peer beta");
    lab.allowed(BETA, "--for migrate-target --peer alpha");
    lab.refused(BETA, "--for start", "is Primary");
    // The target promoted, the source still Primary: the migration's own window.
    lab.ok(BETA, "drbdadm primary r0");
    lab.wait_both(&["ro:Primary/Primary"]);
    lab.capture("dual-primary", BETA);
    lab.allowed(BETA, "--for migrate-target --peer alpha");
    lab.refused(ALPHA, "--for start", "is Primary");
    // Both Primary by design (drbd_dual_primary, promoted-max=2): S5 and M3 accept the one peer.
    lab.allowed(ALPHA, "--for start --dual-primary");
    lab.refused(ALPHA, "--for migrate-source --peer beta", "beta is already Primary");
    lab.allowed(ALPHA, "--for migrate-source --peer beta --dual-primary");
    lab.ok(BETA, "drbdadm secondary r0");
    both(&lab, "drbd-a2p no");
    lab.ok(ALPHA, "drbdadm secondary r0");
    lab.wait_both(&["ro:Secondary/Secondary", "ds:UpToDate/UpToDate"]);
    lab.capture("healthy", ALPHA);
    // `status` names where the state came from and leaves the one 8.4 peer unnamed.
    let status = lab.ok(ALPHA, "virtguard drbd status --json r0");
    let status: serde_json::Value = serde_json::from_str(&status).unwrap_or_else(|e| panic!("{e}: {status}"));
    assert_eq!(status["origin"]["kind"], "events2-drbd84", "{status}");
    assert_eq!(status["origin"]["version"], "8.4.11", "{status}");
    assert_eq!(status["resources"][0]["peers"][0]["name"], serde_json::Value::Null, "{status}");
    assert_eq!(status["resources"][0]["peers"][0]["connection"], "Connected", "{status}");
    lab.allowed(ALPHA, "--for start");
    lab.allowed(BETA, "--for start");

    // Rule F1. The lab's drbd.conf has `fencing resource-only`: not a word.
    let r = lab.check(ALPHA, "--for start --require-fencing");
    assert_eq!((r.rc, r.stderr.as_str()), (0, ""), "{}", r.stdout);
    assert!(!r.stdout.contains("warning"), "{}", r.stdout);
    let f1_started = Instant::now();
    // The same pair configured without a fencing policy (dont-care, DRBD's default).
    set_fencing(&lab, "dont-care");
    lab.capture("no-fencing", ALPHA);
    lab.allowed_warning_of_no_fencing(ALPHA, "--for start");
    lab.refused(ALPHA, "--for start --require-fencing", "r0: fencing dont-care (volume 0) (rule F1): refusing to start");
    // Why: the cable cut while alpha is Primary and writes on. Nobody marks
    // beta Outdated, so beta's older data still says UpToDate and the peer's
    // role Unknown: every state rule lets a start through there, only F1 speaks.
    lab.ok(ALPHA, "drbdadm primary r0");
    lab.wait_proc(BETA, &["ro:Secondary/Primary"]);
    lab.set_link(ALPHA, false);
    lab.wait_proc(ALPHA, &["cs:WFConnection"]);
    lab.ok(ALPHA, "dd if=/dev/urandom of=/dev/drbd0 bs=4096 count=4 oflag=direct conv=fsync 2>/dev/null");
    lab.wait_proc(BETA, &["cs:WFConnection", "ro:Secondary/Unknown", "ds:UpToDate/DUnknown"]);
    lab.capture("cut-no-fencing", BETA);
    lab.allowed_warning_of_no_fencing(BETA, "--for start");
    lab.refused(BETA, "--for start --require-fencing", "r0: fencing dont-care (volume 0) (rule F1): refusing to start");
    // Back: the cable restored, beta resyncs what alpha wrote, fencing on again.
    lab.set_link(ALPHA, true);
    lab.wait_both(&["cs:Connected", "ds:UpToDate/UpToDate"]);
    lab.ok(ALPHA, "drbdadm secondary r0");
    set_fencing(&lab, "resource-only");
    lab.wait_both(&["ro:Secondary/Secondary", "ds:UpToDate/UpToDate"]);
    lab.allowed(BETA, "--for start --require-fencing");
    eprintln!("F1 against the real kernel (no fencing, a cut, back): {:.1}s", f1_started.elapsed().as_secs_f64());

    // The secondary leaves: StandAlone there. With `fencing resource-only`
    // the kernel marks the peer Outdated on the primary by itself when the
    // secondary disconnects cleanly (seen here: no fence-peer call).
    lab.ok(ALPHA, "drbdadm primary r0");
    lab.wait_proc(BETA, &["ro:Secondary/Primary"]);
    lab.ok(BETA, "drbdadm disconnect r0");
    lab.wait_proc(BETA, &["cs:StandAlone"]);
    lab.capture("standalone", BETA);
    lab.refused(BETA, "--for start", "StandAlone");
    lab.ok(BETA, "drbdadm outdate r0");
    lab.wait_proc(BETA, &["ds:Outdated/DUnknown"]);
    lab.capture("standalone-outdated", BETA);
    lab.refused(BETA, "--for start", "local disk Outdated");
    lab.wait_proc(ALPHA, &["ds:UpToDate/Outdated"]);
    lab.capture("peer-outdated", ALPHA);
    lab.allowed(ALPHA, "--for start");
    lab.refused(ALPHA, "--for migrate-source --peer beta", "connection to beta is");
    lab.ok(BETA, "drbdadm connect r0");
    lab.wait_both(&["cs:Connected", "ds:UpToDate/UpToDate"]);
    lab.ok(ALPHA, "drbdadm secondary r0");

    // Detached: Diskless, served by the connected UpToDate peer only when allowed.
    lab.ok(BETA, "drbdadm detach r0");
    lab.wait_proc(BETA, &["ds:Diskless/UpToDate"]);
    lab.wait_proc(ALPHA, &["ds:UpToDate/Diskless"]);
    lab.capture("diskless", BETA);
    lab.capture("peer-diskless", ALPHA);
    lab.refused(BETA, "--for start", "local disk Diskless");
    lab.allowed(BETA, "--for start --allow-diskless");
    lab.refused(ALPHA, "--for migrate-source --peer beta", "peer beta disk Diskless");
    lab.ok(BETA, "drbdadm attach r0");
    lab.wait_both(&["cs:Connected", "ds:UpToDate/UpToDate"]);

    // Split brain: both sides written while apart; DRBD refuses to reconnect.
    both(&lab, "drbdadm disconnect r0");
    // Promoting without the peer asks fence-peer: "unreachable" (5).
    both(&lab, "echo 5 > /run/lab-fence-answer && drbdadm primary r0 && dd if=/dev/urandom of=/dev/drbd0 bs=4096 count=4 conv=fsync 2>/dev/null && drbdadm secondary r0");
    both(&lab, "drbdadm connect r0");
    for node in [ALPHA, BETA] {
        let since = Instant::now();
        while lab.run(node, "dmesg | grep -q 'Split-Brain detected'").rc != 0 {
            assert!(since.elapsed() < STATE_TIMEOUT, "{node}: no split brain reported:\n{}", lab.state_of(node));
            std::thread::sleep(Duration::from_millis(300));
        }
        lab.wait_proc(node, &["cs:StandAlone"]);
    }
    lab.capture("split-brain", ALPHA);
    // Promoting without the peer went through the fence-peer handler, whose
    // "unreachable" made the kernel mark the peer Outdated (ds:UpToDate/Outdated).
    let fenced = lab.ok(ALPHA, "cat /run/lab-fence-peer.log");
    assert!(fenced.contains("fence-peer answers 5"), "{fenced}");
    lab.refused(ALPHA, "--for start", "StandAlone");
    lab.refused(BETA, "--for start", "StandAlone");
    eprintln!("DRBD truth table against the real kernel: {:.1}s", started.elapsed().as_secs_f64());
}
