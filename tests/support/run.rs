//! Running a helper program from a test without ever hanging the suite.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Output};
use std::time::Duration;

use virtguard::deadline::Deadline;
use virtguard::exec_for_tests::{run_command, ExecError};

/// Runs `command` with the agent's own runner (stdin null, stdout/stderr
/// captured, its process group killed at `timeout`), as a std `Output` that
/// tests assert on. Never panics: a timeout appends a note to stderr, and a
/// program that cannot be started yields exit status 127.
pub fn run_bounded(command: Command, timeout: Duration) -> Output {
    let into_std = |output: virtguard::exec_for_tests::Output| Output {
        status: output.status,
        stdout: output.stdout.into_bytes(),
        stderr: output.stderr.into_bytes(),
    };
    match run_command(command, &Deadline::after(timeout)) {
        Ok(output) => into_std(output),
        Err(error) => {
            let note = error.to_string();
            match error {
                ExecError::TimedOut { output, .. } => {
                    let mut output = into_std(output);
                    output.stderr.extend_from_slice(format!("\n[support] {note}\n").as_bytes());
                    output
                }
                // Not returned by run_command (a non-zero exit is an Ok Output).
                ExecError::Failed { output, .. } => into_std(output),
                ExecError::Spawn { .. } => Output {
                    status: ExitStatus::from_raw(127 << 8),
                    stdout: Vec::new(),
                    stderr: note.into_bytes(),
                },
            }
        }
    }
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
