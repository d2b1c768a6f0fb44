//! Running the built agent the way pacemaker-execd does.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::run::run_bounded;
use super::scratch_dir;

/// Bound for one agent call when the caller gave no `OCF_RESKEY_CRM_meta_timeout`.
const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(300);
/// Slack over the operation timeout before the test gives up on the agent.
const AGENT_TIMEOUT_SLACK: Duration = Duration::from_secs(30);

pub const DEFAULT_INSTANCE: &str = "vm-test";

#[derive(Debug, Clone)]
pub struct AgentRun {
    /// The exit code; -1 when it died of a signal (or was killed at the bound).
    pub code: i32,
    /// The signal that ended it, if one did (SIGKILL also when the test's
    /// bound on the call ran out: stderr then says so).
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl AgentRun {
    /// The `ocf-exit-reason:` the agent printed, if any.
    pub fn exit_reason(&self) -> Option<String> {
        exit_reason(&self.stderr)
    }
}

/// Runs `<tmp>/VirtualDomain <action>` (a symlink to the built binary) with
/// the environment Pacemaker gives an OCF 1.1 agent, plus `env` (normally
/// `OCF_RESKEY_*` pairs; any key given here overrides the defaults, e.g.
/// `OCF_RESOURCE_INSTANCE`). `HA_RSCTMP` is a directory per test (per test
/// thread), so state survives between the calls of one test.
pub fn agent(action: &str, env: &[(&str, &str)]) -> AgentRun {
    agent_wrapped(&[], action, env)
}

/// [`agent`], run through `wrapper` (a program and its arguments that end by
/// executing the agent path and action appended to them, e.g. a private
/// mount namespace).
pub fn agent_wrapped(wrapper: &[&str], action: &str, env: &[(&str, &str)]) -> AgentRun {
    super::host_files::watch_host_files();
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut command = Command::new(program);
            command.args(args).arg(agent_symlink());
            command
        }
        None => Command::new(agent_symlink()),
    };
    command
        .arg(action)
        .env_clear()
        .current_dir("/")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("OCF_ROOT", "/usr/lib/ocf")
        .env("OCF_RA_VERSION_MAJOR", "1")
        .env("OCF_RA_VERSION_MINOR", "1")
        .env("OCF_RESOURCE_INSTANCE", DEFAULT_INSTANCE)
        .env("OCF_RESOURCE_TYPE", "VirtualDomain")
        .env("OCF_RESOURCE_PROVIDER", "virtguard")
        .env("HA_RSCTMP", rsctmp_for_this_test());
    for (key, value) in env {
        command.env(key, value);
    }

    let timeout = env
        .iter()
        .find(|(key, _)| *key == "OCF_RESKEY_CRM_meta_timeout")
        .and_then(|(_, ms)| ms.parse::<u64>().ok())
        .map(|ms| Duration::from_millis(ms) + AGENT_TIMEOUT_SLACK)
        .unwrap_or(DEFAULT_AGENT_TIMEOUT);

    let started = Instant::now();
    let output = run_bounded(command, timeout);
    AgentRun {
        code: output.status.code().unwrap_or(-1),
        signal: output.status.signal(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

/// The text after the last `ocf-exit-reason:` line on stderr.
pub fn exit_reason(stderr: &str) -> Option<String> {
    stderr
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("ocf-exit-reason:"))
        .next_back()
        .map(|reason| reason.trim().to_owned())
}

/// The built binary under the name Pacemaker runs it by (argv[0] selects the agent).
pub fn agent_symlink() -> PathBuf {
    static LINK: OnceLock<PathBuf> = OnceLock::new();
    LINK.get_or_init(|| {
        let dir = scratch_dir(&format!("agent-{}", std::process::id()));
        let link = dir.join("VirtualDomain");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_virtguard"), &link)
            .unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
        link
    })
    .clone()
}

/// HA_RSCTMP of the calling test: the test harness names each test's thread
/// after the test.
pub fn rsctmp_for_this_test() -> PathBuf {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("main");
    let safe: String = test.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let dir = scratch_dir(&format!("rsctmp-{}-{safe}", std::process::id()));
    // First use in this process: anything there is from an earlier process
    // that had our pid, and its state must not leak into this test.
    static SEEN: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if !seen.contains(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
        seen.push(dir.clone());
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}
