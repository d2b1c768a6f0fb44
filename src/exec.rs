//! The only place that spawns processes: stdin is /dev/null, the child is
//! killed at the deadline, and its stderr is kept for the error message.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::deadline::Deadline;

#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

#[derive(Debug)]
pub enum ExecError {
    /// The program could not be started (missing, not executable).
    Spawn { program: String, message: String },
    /// The deadline came first; the child was killed. `output` is what it
    /// printed until then.
    TimedOut { program: String, after: Duration, output: Output },
    /// It ran and exited non-zero (or died of a signal).
    Failed { program: String, output: Output },
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::Spawn { program, message } => write!(f, "cannot run {program}: {message}"),
            ExecError::TimedOut { program, after, .. } => {
                write!(f, "{program} did not finish within {:.1}s and was killed", after.as_secs_f64())
            }
            ExecError::Failed { program, output } => {
                let detail = last_line(&output.stderr).or_else(|| last_line(&output.stdout));
                match (output.status.code(), detail) {
                    (Some(code), Some(d)) => write!(f, "{program} exited with {code}: {d}"),
                    (Some(code), None) => write!(f, "{program} exited with {code}"),
                    (None, Some(d)) => write!(f, "{program} was killed by a signal: {d}"),
                    (None, None) => write!(f, "{program} was killed by a signal"),
                }
            }
        }
    }
}

impl std::error::Error for ExecError {}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

/// Runs `program args...` until it exits or `deadline` expires, capturing
/// stdout and stderr. A non-zero exit is an error that carries both.
pub fn run<S: AsRef<std::ffi::OsStr>>(program: &str, args: &[S], deadline: &Deadline) -> Result<Output, ExecError> {
    let output = run_unchecked(program, args, deadline)?;
    if output.success() {
        Ok(output)
    } else {
        Err(ExecError::Failed { program: program.to_owned(), output })
    }
}

/// Like [`run`], but a non-zero exit is returned as an `Output`, not an error.
pub fn run_unchecked<S: AsRef<std::ffi::OsStr>>(
    program: &str,
    args: &[S],
    deadline: &Deadline,
) -> Result<Output, ExecError> {
    run_unchecked_with_env(program, args, &[], deadline)
}

/// Like [`run_unchecked`], with `env` added to the inherited environment (an
/// OCF agent's OCF_RESKEY_* parameters).
pub fn run_unchecked_with_env<S: AsRef<std::ffi::OsStr>>(
    program: &str,
    args: &[S],
    env: &[(String, String)],
    deadline: &Deadline,
) -> Result<Output, ExecError> {
    let mut command = Command::new(program);
    command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
    run_command(command, deadline)
}

/// Like [`run_unchecked`], for a command the caller set up (environment,
/// working directory); its stdio is replaced as for every other run.
pub fn run_command(mut command: Command, deadline: &Deadline) -> Result<Output, ExecError> {
    let program = command.get_program().to_string_lossy().into_owned();
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // A process group of its own, so that a timeout kills the whole tree.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command.spawn().map_err(|e| ExecError::Spawn { program: program.clone(), message: e.to_string() })?;
    wait_with_deadline(&program, child, deadline)
}

fn wait_with_deadline(program: &str, mut child: Child, deadline: &Deadline) -> Result<Output, ExecError> {
    // A real process runs in real time, whatever clock the caller keeps.
    let deadline = &deadline.in_real_time();
    let stdout = child.stdout.take().map(spawn_reader);
    let stderr = child.stderr.take().map(spawn_reader);
    let mut step = Duration::from_millis(2);
    let (status, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (status, false),
            Ok(None) => {}
            Err(e) => return Err(ExecError::Spawn { program: program.to_owned(), message: e.to_string() }),
        }
        if deadline.expired() {
            kill_group(&child);
            // Raw wait status 9: killed by SIGKILL, which it was.
            break (child.wait().unwrap_or(ExitStatus::from_raw(9)), true);
        }
        deadline.sleep(step);
        step = (step * 2).min(Duration::from_millis(50));
    };
    // A grandchild that keeps the pipes open must not block us past the deadline.
    kill_group(&child);
    // Killing the group closes the pipes, unless something outside it holds
    // them: then what was read by then is all there is (after a timeout,
    // what was read by the deadline).
    let readers_done = Deadline::after(READER_WAIT.min(deadline.remaining()));
    let collect = |reader: Option<OutputReader>| reader.map(|r| r.collect(&readers_done)).unwrap_or_default();
    let output = Output { status, stdout: collect(stdout), stderr: collect(stderr) };
    if timed_out {
        return Err(ExecError::TimedOut { program: program.to_owned(), after: deadline.elapsed(), output });
    }
    Ok(output)
}

/// How long the output may stay open after the process group is gone.
const READER_WAIT: Duration = Duration::from_secs(1);

fn kill_group(child: &Child) {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::Pid;
    let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
}

/// A pipe read on a thread of its own, into a buffer that can be taken at
/// any time.
struct OutputReader {
    data: Arc<Mutex<Vec<u8>>>,
    /// Disconnects when the reader is done (or could not start).
    done: Receiver<()>,
}

fn spawn_reader<R: Read + Send + 'static>(mut reader: R) -> OutputReader {
    let data = Arc::new(Mutex::new(Vec::new()));
    let (tx, done) = mpsc::channel::<()>();
    let sink = Arc::clone(&data);
    let _ = std::thread::Builder::new().name("exec-output".into()).spawn(move || {
        let _done = tx;
        let mut chunk = [0u8; 8192];
        while let Ok(n @ 1..) = reader.read(&mut chunk) {
            sink.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&chunk[..n]);
        }
    });
    OutputReader { data, done }
}

impl OutputReader {
    /// Everything read once the pipe closed, or at `until`, whichever first.
    fn collect(self, until: &Deadline) -> String {
        let _ = self.done.recv_timeout(until.remaining());
        let data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&data).into_owned()
    }
}

/// Finds `program` on PATH (or accepts an explicit path), like `command -v`.
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false);
    if program.contains('/') {
        let path = Path::new(program);
        return executable(path).then(|| path.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_reports_failure_with_stderr() {
        let d = Deadline::after(Duration::from_secs(10));
        let ok = run("sh", &["-c", "echo out; echo err >&2"], &d).unwrap();
        assert_eq!(ok.stdout, "out\n");
        assert_eq!(ok.stderr, "err\n");
        let err = run("sh", &["-c", "echo boom >&2; exit 3"], &d).unwrap_err();
        assert_eq!(err.to_string(), "sh exited with 3: boom");
    }

    #[test]
    fn stdin_is_closed() {
        let d = Deadline::after(Duration::from_secs(10));
        let out = run("sh", &["-c", "cat; echo done"], &d).unwrap();
        assert_eq!(out.stdout, "done\n");
    }

    #[test]
    fn deadline_kills_the_whole_group_and_keeps_what_it_printed() {
        let d = Deadline::after(Duration::from_millis(1000));
        let started = std::time::Instant::now();
        let err = run("sh", &["-c", "echo started; sleep 120 & sleep 120"], &d).unwrap_err();
        let ExecError::TimedOut { output, .. } = &err else { panic!("not a timeout: {err}") };
        assert_eq!(output.stdout, "started\n");
        // Not a speed limit: a sleeper that survived the kill would hold the
        // output pipe, and this call, for 120 s.
        assert!(started.elapsed() < Duration::from_secs(60), "waited for a sleeper: {:?}", started.elapsed());
    }

    #[test]
    fn output_held_open_outside_the_group_does_not_hold_us() {
        let d = Deadline::after(Duration::from_secs(30));
        // setsid puts the sleeper outside the process group that is killed;
        // it keeps stdout open for 30 s.
        let out = run("sh", &["-c", "echo early; setsid sleep 30 &"], &d).unwrap();
        assert_eq!(out.stdout, "early\n");
        assert!(d.remaining() > Duration::from_secs(20), "waited for the pipe: {:?}", d.elapsed());
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let d = Deadline::after(Duration::from_secs(1));
        assert!(matches!(run::<&str>("/nonexistent/prog", &[], &d), Err(ExecError::Spawn { .. })));
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-virtguard").is_none());
    }
}
