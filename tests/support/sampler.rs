//! The cluster's two safety properties, watched continuously beside every
//! cluster scenario (issue 12): a guest never runs on two nodes at once, and
//! a guest that Pacemaker should run is never running nowhere for longer
//! than the scenario allows.
//!
//! Several times a second, one round asks each node's libvirtd over TCP which
//! domains are *running* (a migration's paused incoming copy is not). Each
//! node has its own worker thread with its own connection, opened inside the
//! node's network namespace (which outlives a crashed or fenced node), so a
//! node whose libvirtd is frozen, killed or powered off costs that node's
//! answer and nothing else. For such a node, the round falls back to the host's
//! /proc: which QEMU processes live in that node's network namespace (a guest
//! whose libvirtd is frozen may still run, so it is not counted as lost).
//!
//! A double run is a guest running on two nodes (or more) in two consecutive
//! rounds: the reads of a round are not atomic, and one round can straddle the
//! hand-over of a live migration.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Time between rounds, and how long a round waits for a node's answer.
const ROUND_PAUSE: Duration = Duration::from_millis(150);
const ANSWER_WAIT: Duration = Duration::from_millis(800);
/// A worker that has not answered for this long is replaced.
const WORKER_STUCK: Duration = Duration::from_secs(5);
/// Longer than this with neither node answering, the sampler is blind: a
/// double run could go unseen, so the scenario fails. (One fault silences
/// one node at a time.)
pub const BLIND_LIMIT_MS: u64 = 15_000;
/// Rounds per second below which the sampler's silence proves nothing.
const MIN_RATE: f64 = 2.0;

/// What one round learnt about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// libvirtd answered: the domains running there.
    Answered(BTreeSet<String>),
    /// libvirtd did not answer in time: the guests whose QEMU process lives
    /// in the node's network namespace (running, paused or on its way out).
    Unanswered { emulators: BTreeSet<String> },
}

impl Reading {
    fn runs(&self, domain: &str) -> bool {
        matches!(self, Reading::Answered(running) if running.contains(domain))
    }

    fn may_run(&self, domain: &str) -> bool {
        match self {
            Reading::Answered(running) => running.contains(domain),
            Reading::Unanswered { emulators } => emulators.contains(domain),
        }
    }
}

/// One round over every node, in the order the sampler was given them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub at_ms: u64,
    pub nodes: Vec<Reading>,
}

/// From `from_ms` (until `until_ms`), `domain` should run somewhere; an
/// outage longer than `allowed_ms` is a lost guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub domain: String,
    pub from_ms: u64,
    pub until_ms: Option<u64>,
    pub allowed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoubleRun {
    pub domain: String,
    /// Consecutive rounds in which libvirt ran it on two nodes or more.
    pub rounds: usize,
    pub from_ms: u64,
    pub lasted_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub domain: String,
    pub from_ms: u64,
    pub lasted_ms: u64,
    pub allowed_ms: u64,
    /// Still running nowhere at the last round.
    pub ongoing: bool,
}

/// What the rounds say about both properties.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Findings {
    pub rounds: usize,
    pub per_second: f64,
    /// The longest time between two consecutive rounds.
    pub longest_gap_ms: u64,
    /// Node answers missing (a round counts up to one per node).
    pub unanswered: usize,
    /// The longest stretch in which neither node answered.
    pub longest_blind_ms: u64,
    /// Every stretch of two or more rounds on two nodes or more, per domain.
    pub double_runs: Vec<DoubleRun>,
    /// Per expected domain, its longest outage (when there was one).
    pub longest_outages: Vec<Outage>,
}

impl Findings {
    pub fn of(samples: &[Sample], expectations: &[Expectation]) -> Findings {
        let mut findings = Findings { rounds: samples.len(), ..Findings::default() };
        if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
            let span_s = last.at_ms.saturating_sub(first.at_ms) as f64 / 1000.0;
            findings.per_second = if span_s > 0.0 { (samples.len() - 1) as f64 / span_s } else { 0.0 };
        }
        findings.longest_gap_ms = samples.windows(2).map(|w| w[1].at_ms.saturating_sub(w[0].at_ms)).max().unwrap_or(0);
        findings.unanswered =
            samples.iter().flat_map(|s| &s.nodes).filter(|r| matches!(r, Reading::Unanswered { .. })).count();
        findings.longest_blind_ms = longest_blind(samples);
        findings.double_runs = double_runs(samples);
        findings.longest_outages = expectations.iter().filter_map(|e| longest_outage(samples, e)).collect();
        findings
    }

    pub fn double_run(&self) -> bool {
        !self.double_runs.is_empty()
    }

    /// Outages longer than the scenario allows.
    pub fn lost(&self) -> Vec<&Outage> {
        self.longest_outages.iter().filter(|o| o.lasted_ms > o.allowed_ms).collect()
    }

    /// Whether there were rounds enough, often enough, for the sampler's
    /// silence to mean something.
    pub fn sampled(&self) -> bool {
        self.rounds >= 5 && self.per_second >= MIN_RATE
    }

    /// Whether the sampler saw too little to vouch for the properties.
    pub fn blind(&self) -> bool {
        self.longest_blind_ms > BLIND_LIMIT_MS
    }

    pub fn violated(&self) -> bool {
        self.double_run() || !self.lost().is_empty() || self.blind()
    }

    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} rounds ({:.1}/s, longest gap {:.1}s, {} node answers missing)",
            self.rounds,
            self.per_second,
            self.longest_gap_ms as f64 / 1000.0,
            self.unanswered
        );
        if self.longest_blind_ms > 0 {
            let verdict = if self.blind() { "; BLIND" } else { "; no answer from either node" };
            text += &format!("{verdict} for {:.1}s", self.longest_blind_ms as f64 / 1000.0);
        }
        for run in &self.double_runs {
            text += &format!("; {} ON BOTH NODES in {} rounds ({:.1}s)", run.domain, run.rounds, run.lasted_ms as f64 / 1000.0);
        }
        for outage in &self.longest_outages {
            let verdict = if outage.lasted_ms > outage.allowed_ms { "LOST" } else { "down" };
            text += &format!(
                "; {} {verdict} for {:.1}s{} (allowed {:.0}s)",
                outage.domain,
                outage.lasted_ms as f64 / 1000.0,
                if outage.ongoing { " and still" } else { "" },
                outage.allowed_ms as f64 / 1000.0
            );
        }
        text
    }
}

/// The longest stretch of rounds in which neither node answered, from its
/// first such round to the next round with an answer (or the last round).
fn longest_blind(samples: &[Sample]) -> u64 {
    let mut longest = 0;
    let mut blind_since = None;
    for sample in samples {
        let blind = sample.nodes.iter().all(|r| matches!(r, Reading::Unanswered { .. }));
        match (blind, blind_since) {
            (true, None) => blind_since = Some(sample.at_ms),
            (false, Some(since)) => {
                longest = longest.max(sample.at_ms - since);
                blind_since = None;
            }
            _ => {}
        }
    }
    if let (Some(since), Some(last)) = (blind_since, samples.last()) {
        longest = longest.max(last.at_ms - since);
    }
    longest
}

fn double_runs(samples: &[Sample]) -> Vec<DoubleRun> {
    let domains: BTreeSet<&String> = samples
        .iter()
        .flat_map(|s| &s.nodes)
        .filter_map(|r| match r {
            Reading::Answered(running) => Some(running),
            Reading::Unanswered { .. } => None,
        })
        .flatten()
        .collect();
    let mut found = Vec::new();
    for domain in domains {
        let mut stretch: Option<DoubleRun> = None;
        for sample in samples {
            if sample.nodes.iter().filter(|r| r.runs(domain)).count() >= 2 {
                let run = stretch.get_or_insert(DoubleRun { domain: domain.clone(), rounds: 0, from_ms: sample.at_ms, lasted_ms: 0 });
                run.rounds += 1;
                run.lasted_ms = sample.at_ms - run.from_ms;
            } else if let Some(run) = stretch.take() {
                if run.rounds >= 2 {
                    found.push(run);
                }
            }
        }
        if let Some(run) = stretch.filter(|r| r.rounds >= 2) {
            found.push(run);
        }
    }
    found
}

/// The longest stretch, inside the expectation's window, in which no node ran
/// the domain (an unanswered node running its QEMU counts as running it).
/// An outage lasts until the first round that finds it running again.
fn longest_outage(samples: &[Sample], expectation: &Expectation) -> Option<Outage> {
    let within = |s: &&Sample| s.at_ms >= expectation.from_ms && expectation.until_ms.is_none_or(|until| s.at_ms <= until);
    let mut longest: Option<Outage> = None;
    let mut down_since: Option<u64> = None;
    let mut last_at = None;
    for sample in samples.iter().filter(within) {
        last_at = Some(sample.at_ms);
        let somewhere = sample.nodes.iter().any(|r| r.may_run(&expectation.domain));
        match (somewhere, down_since) {
            (false, None) => down_since = Some(sample.at_ms),
            (true, Some(since)) => {
                keep_longest(&mut longest, expectation, since, sample.at_ms, false);
                down_since = None;
            }
            _ => {}
        }
    }
    if let (Some(since), Some(last)) = (down_since, last_at) {
        keep_longest(&mut longest, expectation, since, last, true);
    }
    longest
}

fn keep_longest(longest: &mut Option<Outage>, expectation: &Expectation, from_ms: u64, to_ms: u64, ongoing: bool) {
    let lasted_ms = to_ms - from_ms;
    if longest.as_ref().is_none_or(|l| lasted_ms >= l.lasted_ms) {
        *longest = Some(Outage { domain: expectation.domain.clone(), from_ms, lasted_ms, allowed_ms: expectation.allowed_ms, ongoing });
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

/// A node as the sampler reaches it: its network namespace and address.
#[derive(Debug, Clone)]
pub struct NodeAccess {
    pub netns: PathBuf,
    pub address: String,
}

/// The running sampler: rounds are recorded until `finish`.
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    expectations: Arc<Mutex<Vec<Expectation>>>,
    stop: Arc<AtomicBool>,
    rounds: Option<JoinHandle<()>>,
}

impl Sampler {
    pub fn start(nodes: Vec<NodeAccess>) -> Sampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        // libvirt's default handler prints every failed call to stderr; a
        // silent node is in the findings already.
        virt::error::clear_error_callback();
        let netns_ids: Vec<Option<String>> = nodes.iter().map(|n| netns_id(&n.netns)).collect();
        let sink = Arc::clone(&samples);
        let stopped = Arc::clone(&stop);
        let rounds = std::thread::Builder::new()
            .name("vg-sampler".into())
            .spawn(move || run_rounds(&nodes, &netns_ids, &sink, &stopped))
            .expect("cannot start the sampler thread");
        Sampler { samples, expectations: Arc::new(Mutex::new(Vec::new())), stop, rounds: Some(rounds) }
    }

    /// From now on `domain` should run; running nowhere for longer than
    /// `allowed` is a lost guest.
    pub fn expect_running(&self, domain: &str, allowed: Duration) {
        self.release(domain);
        let mut expectations = self.expectations.lock().unwrap_or_else(|p| p.into_inner());
        expectations.push(Expectation { domain: domain.to_owned(), from_ms: now_ms(), until_ms: None, allowed_ms: allowed.as_millis() as u64 });
    }

    /// From now on `domain` may stop (a deliberate stop or delete).
    pub fn release(&self, domain: &str) {
        let now = now_ms();
        let mut expectations = self.expectations.lock().unwrap_or_else(|p| p.into_inner());
        for open in expectations.iter_mut().filter(|e| e.domain == domain && e.until_ms.is_none()) {
            open.until_ms = Some(now);
        }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The findings over the rounds taken at or after `since_ms`.
    pub fn findings_since(&self, since_ms: u64) -> Findings {
        let samples: Vec<Sample> = self.samples().into_iter().filter(|s| s.at_ms >= since_ms).collect();
        let expectations = self.expectations.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Findings::of(&samples, &expectations)
    }

    /// Stops the rounds and judges all of them.
    pub fn finish(mut self) -> Findings {
        self.stop_rounds();
        self.findings_since(0)
    }

    /// Stops the rounds; the findings, and a scenario's verdict on them: a
    /// double run, a lost guest, a blind sampler or one too slow to tell
    /// fails it, with the timeline of each domain at fault.
    pub fn verdict(self) -> (Findings, Result<(), String>) {
        let samples = self.samples();
        let findings = self.finish();
        let verdict = if findings.violated() {
            let domains: BTreeSet<&str> =
                findings.double_runs.iter().map(|d| d.domain.as_str()).chain(findings.lost().iter().map(|o| o.domain.as_str())).collect();
            let timelines: Vec<String> =
                domains.iter().map(|d| format!("{d} (one column per node in the lab's order, per change, q = QEMU alive, libvirtd silent): {}", timeline(&samples, d))).collect();
            Err(format!("safety property violated: {}\n{}", findings.describe(), timelines.join("\n")))
        } else if !findings.sampled() {
            Err(format!("the invariant sampler did not sample: {}", findings.describe()))
        } else {
            Ok(())
        };
        (findings, verdict)
    }

    fn stop_rounds(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(rounds) = self.rounds.take() {
            let _ = rounds.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop_rounds();
    }
}

fn netns_id(netns: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(netns).ok().map(|m| format!("net:[{}]", m.ino()))
}

/// An answer from a worker: (node index, worker generation, round, running).
type Answer = (usize, u64, u64, Option<BTreeSet<String>>);

/// One worker per node: enters the node's network namespace for good (the
/// thread's own; a TCP socket stays in the namespace it was made in), then
/// answers each round's request with the running domains.
fn spawn_worker(index: usize, generation: u64, node: NodeAccess, answers: Sender<Answer>) -> Sender<u64> {
    let (requests_tx, requests_rx) = mpsc::channel::<u64>();
    let name = format!("vg-sampler-{index}");
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let entered = std::fs::File::open(&node.netns)
            .map_err(|e| e.to_string())
            .and_then(|netns| nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string()));
        let uri = format!("qemu+tcp://{}/system", node.address);
        let mut connection: Option<virt::connect::Connect> = None;
        for round in requests_rx {
            // virt panics where libvirt fails to free an object of a dead
            // connection: that costs this answer, not the worker.
            let running = entered.as_ref().ok().and_then(|()| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| running_domains(&uri, &mut connection))).unwrap_or_else(|_| {
                    if let Some(suspect) = connection.take() {
                        close(suspect);
                    }
                    None
                })
            });
            if answers.send((index, generation, round, running)).is_err() {
                break;
            }
        }
        if let Some(connection) = connection {
            close(connection);
        }
    });
    // A worker that could not start answers nothing: its node reads as
    // silent, and the next round starts another.
    drop(spawned);
    requests_tx
}

fn running_domains(uri: &str, connection: &mut Option<virt::connect::Connect>) -> Option<BTreeSet<String>> {
    if connection.is_none() {
        *connection = virt::connect::Connect::open(Some(uri)).ok();
    }
    let listed = connection.as_ref()?.list_all_domains(virt::sys::VIR_CONNECT_LIST_DOMAINS_RUNNING);
    match listed {
        Ok(domains) => Some(domains.iter().filter_map(|d| d.name().ok()).collect()),
        Err(_) => {
            // A dead connection: the next round opens a new one.
            if let Some(dead) = connection.take() {
                close(dead);
            }
            None
        }
    }
}

/// virt's Connect panics in drop when libvirt reports an error on close (a
/// connection whose daemon died): that must not end the worker.
fn close(connection: virt::connect::Connect) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(connection)));
}

/// A node's worker as the rounds see it.
struct Worker {
    requests: Sender<u64>,
    generation: u64,
    /// When the request it has not answered yet was sent.
    asked_at: Option<Instant>,
}

fn run_rounds(nodes: &[NodeAccess], netns_ids: &[Option<String>], sink: &Mutex<Vec<Sample>>, stop: &AtomicBool) {
    let (answers_tx, answers) = mpsc::channel::<Answer>();
    let spawn = |index: usize, generation: u64| Worker {
        requests: spawn_worker(index, generation, nodes[index].clone(), answers_tx.clone()),
        generation,
        asked_at: None,
    };
    let mut workers: Vec<Worker> = (0..nodes.len()).map(|index| spawn(index, 0)).collect();
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        let at_ms = now_ms();
        let mut asked = vec![false; nodes.len()];
        for (index, worker) in workers.iter_mut().enumerate() {
            // A worker stuck in a call (its libvirtd frozen, or its TCP peer
            // gone without a reset) is left behind, and a new one with a new
            // connection takes its place; so is a worker that died.
            let stuck = worker.asked_at.is_some_and(|at| at.elapsed() > WORKER_STUCK);
            if stuck {
                *worker = spawn(index, worker.generation + 1);
            }
            if worker.asked_at.is_none() {
                if worker.requests.send(round).is_err() {
                    *worker = spawn(index, worker.generation + 1);
                    if worker.requests.send(round).is_err() {
                        continue;
                    }
                }
                worker.asked_at = Some(Instant::now());
                asked[index] = true;
            }
        }
        let mut got: Vec<Option<BTreeSet<String>>> = vec![None; nodes.len()];
        let deadline = Instant::now() + ANSWER_WAIT;
        // Waits for this round's answers only: a worker still stuck in an
        // earlier round's call costs no time.
        while (0..nodes.len()).any(|i| asked[i] && workers[i].asked_at.is_some()) {
            match answers.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((index, generation, answered_round, running)) => {
                    if generation != workers[index].generation {
                        continue; // from a worker left behind
                    }
                    workers[index].asked_at = None;
                    if answered_round == round {
                        got[index] = running;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let readings = (0..nodes.len())
            .map(|i| match got[i].take() {
                Some(running) => Reading::Answered(running),
                None => Reading::Unanswered { emulators: emulators_in(netns_ids[i].as_deref()) },
            })
            .collect();
        sink.lock().unwrap_or_else(|p| p.into_inner()).push(Sample { at_ms, nodes: readings });
        std::thread::sleep(ROUND_PAUSE);
    }
}

/// The guests whose QEMU runs in the network namespace `netns_id`
/// (`net:[inode]`), from the host's /proc.
fn emulators_in(netns_id: Option<&str>) -> BTreeSet<String> {
    let Some(netns_id) = netns_id else { return BTreeSet::new() };
    let Ok(processes) = std::fs::read_dir("/proc") else { return BTreeSet::new() };
    processes
        .flatten()
        .filter(|p| p.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|p| std::fs::read_to_string(p.path().join("comm")).is_ok_and(|c| c.starts_with("qemu")))
        .filter(|p| std::fs::read_link(p.path().join("ns/net")).is_ok_and(|l| l.to_string_lossy() == netns_id))
        .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
        .filter_map(|cmdline| guest_name(&cmdline))
        .collect()
}

/// The guest name in a QEMU command line as libvirt writes it
/// (`-name guest=vm1,debug-threads=on`).
pub fn guest_name(cmdline: &[u8]) -> Option<String> {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let value = args.windows(2).find(|w| w[0] == b"-name").map(|w| String::from_utf8_lossy(w[1]).into_owned())?;
    let name = value.split(',').find_map(|part| part.strip_prefix("guest=")).unwrap_or(&value);
    Some(name.to_owned())
}

/// A compact picture of where each domain ran over time, for failure messages.
pub fn timeline(samples: &[Sample], domain: &str) -> String {
    let mut changes: BTreeMap<u64, String> = BTreeMap::new();
    let mut last = String::new();
    for sample in samples {
        let now: String = sample
            .nodes
            .iter()
            .map(|r| match r {
                Reading::Answered(running) if running.contains(domain) => '1',
                Reading::Answered(_) => '0',
                Reading::Unanswered { emulators } if emulators.contains(domain) => 'q',
                Reading::Unanswered { .. } => '?',
            })
            .collect();
        if now != last {
            changes.insert(sample.at_ms, now.clone());
            last = now;
        }
    }
    changes.iter().map(|(at, state)| format!("{}:{state}", at % 1_000_000)).collect::<Vec<_>>().join(" ")
}
