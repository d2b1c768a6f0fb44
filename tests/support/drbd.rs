//! The DRBD tests' helpers: fixtures, parsed states, a node whose
//! /proc/drbd is a fixture, a small PRNG.

use std::path::PathBuf;

use virtguard::drbd::model::{DrbdState, StateOrigin};
use virtguard::drbd::{events2, proc84, show};

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/drbd")
}

pub fn fixture_text(file: &str) -> String {
    let path = fixtures().join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Gives a command its own view of the node's DRBD kernel files, in a
/// private mount namespace: `/proc/drbd` is the file passed first (or
/// absent when that is empty) and `/dev/drbd` is empty. Everything else of
/// /proc that the agent reads (`sys`: the hostname) stays visible. Only
/// this namespace sees the change; when the node has no /proc/drbd to hide
/// and none is given, the command runs as it is.
const DRBD_NODE_SCRIPT: &str = r#"
set -e
proc_drbd=$1
shift
# The case's PATH may hold no tools (or stand-ins); the program gets it back.
case_path=$PATH
PATH=/usr/sbin:/usr/bin:/sbin:/bin
if [ -n "$proc_drbd" ] || [ -e /proc/drbd ]; then
    staged=$(mktemp -d /tmp/virtguard-proc-XXXXXX)
    mount -t tmpfs -o size=1m,mode=0555 virtguard-proc "$staged"
    mkdir "$staged/sys"
    mount --rbind /proc/sys "$staged/sys"
    if [ -n "$proc_drbd" ]; then cp "$proc_drbd" "$staged/drbd"; fi
    mount --move "$staged" /proc
    rmdir "$staged"
fi
if [ -d /dev/drbd ]; then mount -t tmpfs -o size=1m virtguard-dev-drbd /dev/drbd; fi
PATH=$case_path exec "$@"
"#;

/// The words that run a program (appended to them) on a node whose
/// /proc/drbd is `proc_drbd`, or has none (see [`DRBD_NODE_SCRIPT`]).
pub fn drbd_node(proc_drbd: Option<&str>) -> Vec<String> {
    let unshare = super::which("unshare").expect("unshare (util-linux) on PATH");
    let words = ["--mount", "--propagation", "private", "/bin/sh", "-c", DRBD_NODE_SCRIPT, "drbd-node", proc_drbd.unwrap_or("")];
    std::iter::once(unshare.to_string_lossy().into_owned()).chain(words.into_iter().map(str::to_owned)).collect()
}

/// A DRBD 9 state from `<name>.events2`, with `allow-two-primaries` from
/// `<show>.show` when given.
pub fn state9(name: &str, show_fixture: Option<&str>) -> DrbdState {
    let resources = events2::parse(&fixture_text(&format!("{name}.events2"))).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut state = DrbdState { origin: StateOrigin::Events2 { from: name.to_owned() }, resources, unnamed_minors: vec![] };
    if let Some(s) = show_fixture {
        show::apply(&mut state, &show::parse(&fixture_text(&format!("{s}.show"))).unwrap());
    }
    state
}

/// A DRBD 9 state from literal events2 text.
pub fn state9_text(text: &str) -> DrbdState {
    let resources = events2::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    DrbdState { origin: StateOrigin::Events2 { from: "literal".to_owned() }, resources, unnamed_minors: vec![] }
}

/// A DRBD 8.4 state from `84-<name>.proc`, names from `84-<name>.drbdadm`
/// (the lines the fake drbdadm answers from), options from `<show>.show`.
pub fn state84(name: &str, show_fixture: Option<&str>) -> DrbdState {
    let proc = proc84::parse(&fixture_text(&format!("84-{name}.proc"))).unwrap();
    let mut names = proc84::MinorNames::new();
    for line in fixture_text(&format!("84-{name}.drbdadm")).lines() {
        let mut words = line.split_whitespace();
        let res = words.next().unwrap();
        let devices: Vec<&str> = words.collect();
        proc84::parse_sh_dev(res, &devices.join("\n"), &mut names).unwrap();
    }
    let mut state = proc84::to_state(&proc, &names, "fixture");
    if let Some(s) = show_fixture {
        show::apply(&mut state, &show::parse(&fixture_text(&format!("{s}.show"))).unwrap());
    }
    state
}

/// A fixture with one textual substitution that must apply.
pub fn edited(name: &str, from: &str, to: &str) -> String {
    let text = fixture_text(&format!("{name}.events2"));
    assert_eq!(text.matches(from).count(), 1, "{name} must hold '{from}' exactly once");
    text.replace(from, to)
}

pub fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A minimal xorshift64* generator: reproducible from its seed.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// `usual` two times in three, else any of `all`.
    pub fn mostly<T: Copy>(&mut self, usual: T, all: &[T]) -> T {
        if self.below(3) < 2 {
            usual
        } else {
            *self.pick(all)
        }
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
