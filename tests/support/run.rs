//! Running a helper program from a test without ever hanging the suite.

use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long output may keep trickling in after the program exited (a daemon
/// it left behind may hold the pipe open; we stop listening then).
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// Runs `command` with stdin null and stdout/stderr captured. At `timeout` the
/// whole process group is killed and a note is appended to stderr. Never
/// panics: a program that cannot be started yields exit status 127.
pub fn run_bounded(mut command: Command, timeout: Duration) -> Output {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.process_group(0);
    let program = format!("{:?}", command.get_program());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return Output {
                status: ExitStatus::from_raw(127 << 8),
                stdout: Vec::new(),
                stderr: format!("cannot run {program}: {error}").into_bytes(),
            }
        }
    };
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());

    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let group = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                break child.wait().unwrap_or(ExitStatus::from_raw(9));
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(_) => break child.wait().unwrap_or(ExitStatus::from_raw(9)),
        }
    };

    let stdout = stdout.recv_timeout(PIPE_GRACE).unwrap_or_default();
    let mut stderr = stderr.recv_timeout(PIPE_GRACE).unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(
            format!("\n[support] {program} killed after {:.1}s\n", timeout.as_secs_f64()).as_bytes(),
        );
    }
    Output { status, stdout, stderr }
}

fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buffer);
        }
        let _ = sender.send(buffer);
    });
    receiver
}

/// stdout and stderr of `output` as one lossy string, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end()
    )
}
