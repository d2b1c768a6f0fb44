//! The "never on both nodes" invariant, watched continuously: a shell loop
//! inside node 1 asks both nodes' libvirtd (node 2 over TCP) several times a
//! second which domains are *running* (a migration's paused incoming copy is
//! not), and the test reads its lines. A violation is the guest running on
//! both nodes in two consecutive samples: one sample alone could straddle
//! the hand-over of a live migration.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::cluster::{Lab, NODES};

/// One look at both nodes: whether the guest runs there (`None`: that
/// libvirtd did not answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub at_ms: u64,
    pub on: [Option<bool>; 2],
}

impl Sample {
    pub fn on_both(&self) -> bool {
        self.on == [Some(true), Some(true)]
    }

    /// `<epoch ms> <node1> <node2>` with 1, 0 or E per node.
    pub fn parse(line: &str) -> Option<Sample> {
        let mut words = line.split_whitespace();
        let at_ms = words.next()?.parse().ok()?;
        let mut flag = || match words.next()? {
            "1" => Some(Some(true)),
            "0" => Some(Some(false)),
            _ => Some(None),
        };
        Some(Sample { at_ms, on: [flag()?, flag()?] })
    }
}

pub struct Sampler {
    child: Child,
    reader: Option<JoinHandle<()>>,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop_file: String,
}

/// What a run of samples says about the invariant.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    pub samples: usize,
    pub per_second: f64,
    /// Samples in which the guest ran on both nodes.
    pub on_both: usize,
    /// The longest run of consecutive such samples.
    pub longest_on_both: usize,
    /// Time from the first to the last sample of the longest run.
    pub longest_on_both_ms: u64,
    /// Samples where a node's libvirtd did not answer.
    pub unanswered: usize,
}

impl Verdict {
    pub fn of(samples: &[Sample]) -> Verdict {
        let mut verdict = Verdict { samples: samples.len(), ..Verdict::default() };
        if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
            let span = (last.at_ms.saturating_sub(first.at_ms)) as f64 / 1000.0;
            verdict.per_second = if span > 0.0 { (samples.len() - 1) as f64 / span } else { 0.0 };
        }
        let mut run_start: Option<u64> = None;
        let mut run = 0;
        for sample in samples {
            verdict.unanswered += sample.on.iter().filter(|o| o.is_none()).count();
            if sample.on_both() {
                verdict.on_both += 1;
                run += 1;
                let start = *run_start.get_or_insert(sample.at_ms);
                if run > verdict.longest_on_both {
                    verdict.longest_on_both = run;
                    verdict.longest_on_both_ms = sample.at_ms - start;
                }
            } else {
                run = 0;
                run_start = None;
            }
        }
        verdict
    }

    pub fn violated(&self) -> bool {
        self.longest_on_both >= 2
    }

    pub fn describe(&self) -> String {
        format!(
            "{} samples ({:.1}/s), on both nodes in {} (longest run {} samples, {:.1}s), unanswered {}",
            self.samples,
            self.per_second,
            self.on_both,
            self.longest_on_both,
            self.longest_on_both_ms as f64 / 1000.0,
            self.unanswered
        )
    }
}

impl Sampler {
    /// Starts sampling `domain`; ends by itself after `max` at the latest.
    pub fn start(domain: &str, max: Duration) -> Sampler {
        let stop_file = format!("/run/vg-lab/sampler-stop-{domain}");
        let script = format!(
            "rm -f {stop}; end=$(( $(date +%s) + {max} ))
             look() {{ out=$(virsh -c \"$1\" list --state-running --name 2>/dev/null) || {{ echo E; return; }}
                       printf '%s\\n' \"$out\" | grep -qx '{domain}' && echo 1 || echo 0; }}
             while [ ! -e {stop} ] && [ \"$(date +%s)\" -lt \"$end\" ]; do
                 a=$(look qemu:///system); b=$(look qemu+tcp://{peer}/system)
                 echo \"$(date +%s%3N) $a $b\"
                 sleep 0.1
             done",
            stop = stop_file,
            max = max.as_secs(),
            peer = NODES[1],
        );
        let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/harness.sh");
        let mut child = Command::new("bash")
            .arg(harness)
            .args(["exec", NODES[0], "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the sampler");
        let stdout = child.stdout.take().expect("sampler stdout");
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&samples);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(sample) = Sample::parse(&line) {
                    sink.lock().unwrap_or_else(|p| p.into_inner()).push(sample);
                }
            }
        });
        Sampler { child, reader: Some(reader), samples, stop_file }
    }

    /// Ends the loop and returns every sample taken.
    pub fn finish(mut self, lab: &Lab) -> Vec<Sample> {
        let _ = lab.run(NODES[0], &["touch", &self.stop_file]);
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let _ = lab.run(NODES[0], &["rm", "-f", &self.stop_file]);
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
        samples
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn verdicts() {
    let s = |at_ms, a, b| Sample { at_ms, on: [Some(a), Some(b)] };
    let handover = [s(0, true, false), s(200, true, true), s(400, false, true), s(600, false, true)];
    assert!(!Verdict::of(&handover).violated(), "one sample on both nodes is a hand-over");
    let twice = [s(0, true, false), s(200, true, true), s(400, true, true), s(600, true, true), s(800, false, true)];
    let verdict = Verdict::of(&twice);
    assert!(verdict.violated());
    assert_eq!((verdict.on_both, verdict.longest_on_both, verdict.longest_on_both_ms), (3, 3, 400));
    assert_eq!(Sample::parse("1700000000123 1 E"), Some(Sample { at_ms: 1_700_000_000_123, on: [Some(true), None] }));
    assert_eq!(Sample::parse("garbage"), None);
}
