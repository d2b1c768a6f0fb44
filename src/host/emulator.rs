//! Finding and stopping a domain's emulator process, for when libvirtd
//! cannot be reached, on any process table (/proc, or the tests' fake).
//! QEMU started by libvirt carries the domain name in
//! `-name guest=<name>,...` (commas in the name doubled).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::deadline::Deadline;

use super::processes::{Processes, Signal};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatorProcess {
    pub pid: i32,
    pub exe: Option<PathBuf>,
}

/// The domain name in a NUL-separated QEMU command line, if it has one.
pub fn guest_name_from_cmdline(cmdline: &[u8]) -> Option<String> {
    let mut args = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned());
    while let Some(arg) = args.next() {
        if arg == "-name" {
            return args.next().map(|value| parse_name_option(&value));
        }
    }
    None
}

/// `guest=vm,,1,debug-threads=on` -> `vm,1`; a bare value is the name itself.
fn parse_name_option(value: &str) -> String {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                current.push(',');
            } else {
                fields.push(std::mem::take(&mut current));
            }
        } else {
            current.push(c);
        }
    }
    fields.push(current);
    let first = fields.remove(0);
    match first.strip_prefix("guest=") {
        Some(name) => name.to_owned(),
        None => fields
            .iter()
            .find_map(|f| f.strip_prefix("guest="))
            .map(str::to_owned)
            .unwrap_or(first),
    }
}

/// The emulator process running `name` among `processes`. When `emulator`
/// is known, the process image must match it too.
pub fn find_emulator(processes: &dyn Processes, name: &str, emulator: Option<&Path>) -> Option<EmulatorProcess> {
    for pid in processes.pids() {
        let Some(cmdline) = processes.cmdline(pid) else { continue };
        if guest_name_from_cmdline(&cmdline).as_deref() != Some(name) {
            continue;
        }
        let exe = processes.exe(pid);
        let looks_like_qemu = match (&exe, emulator) {
            (Some(exe), Some(expected)) => exe == expected || same_file(exe, expected),
            (Some(exe), None) => exe.file_name().is_some_and(|f| f.to_string_lossy().starts_with("qemu")),
            (None, _) => cmdline.starts_with(b"/") || cmdline.starts_with(b"qemu"),
        };
        if looks_like_qemu {
            return Some(EmulatorProcess { pid, exe });
        }
    }
    None
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// SIGTERM (QEMU exits cleanly, flushing its disk caches), then SIGKILL
/// when it has not exited by half of the deadline. True once it is gone.
pub fn terminate(processes: &dyn Processes, pid: i32, deadline: &Deadline) -> bool {
    let deadline = &processes.exit_deadline(deadline);
    if processes.signal(pid, Signal::Term).is_err() {
        return !processes.alive(pid);
    }
    let step = Duration::from_millis(50);
    let gone = || (!processes.alive(pid)).then_some(());
    if deadline.fraction(0.5).poll(step, gone).is_some() {
        return true;
    }
    tracing::warn!(pid, "emulator ignored SIGTERM; sending SIGKILL");
    let _ = processes.signal(pid, Signal::Kill);
    deadline.poll(step, gone).is_some()
}

/// Test support: a real process that ignores SIGTERM.
#[cfg(test)]
pub(crate) mod testing {
    use std::io::BufRead;
    use std::process::{Command, ExitStatus, Stdio};
    use std::thread::JoinHandle;

    /// Starts `command`, a shell whose script ignores SIGTERM and then
    /// prints `ready`, and waits for that line, so that no signal can come
    /// before the trap is set. Its pid, and how it ended (reaped in the
    /// background, so that it does not linger as a zombie).
    pub(crate) fn started_ignoring_sigterm(mut command: Command, ready: &str) -> (i32, JoinHandle<std::io::Result<ExitStatus>>) {
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), ready);
        let pid = child.id() as i32;
        (pid, std::thread::spawn(move || child.wait()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::processes::ProcFs;

    fn cmdline(args: &[&str]) -> Vec<u8> {
        let mut v = Vec::new();
        for a in args {
            v.extend_from_slice(a.as_bytes());
            v.push(0);
        }
        v
    }

    #[test]
    fn reads_the_name_libvirt_passes() {
        let c = cmdline(&["/usr/bin/qemu-system-x86_64", "-name", "guest=vm1,debug-threads=on", "-S"]);
        assert_eq!(guest_name_from_cmdline(&c).as_deref(), Some("vm1"));
        let c = cmdline(&["qemu-kvm", "-name", "guest=a,,b,debug-threads=on"]);
        assert_eq!(guest_name_from_cmdline(&c).as_deref(), Some("a,b"));
        let c = cmdline(&["qemu-kvm", "-name", "old-style"]);
        assert_eq!(guest_name_from_cmdline(&c).as_deref(), Some("old-style"));
        assert_eq!(guest_name_from_cmdline(&cmdline(&["bash", "-c", "x"])), None);
        assert_eq!(guest_name_from_cmdline(b""), None);
    }

    #[test]
    fn finds_a_process_by_its_guest_name() {
        let dir = std::env::temp_dir().join(format!("vg-proc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("42")).unwrap();
        std::fs::create_dir_all(dir.join("43")).unwrap();
        std::fs::create_dir_all(dir.join("self")).unwrap();
        std::fs::write(dir.join("42/cmdline"), cmdline(&["/usr/bin/qemu-system-x86_64", "-name", "guest=other"])).unwrap();
        std::fs::write(dir.join("43/cmdline"), cmdline(&["/usr/bin/qemu-system-x86_64", "-name", "guest=vm1"])).unwrap();
        let procfs = ProcFs::at(&dir);
        let found = find_emulator(&procfs, "vm1", None).unwrap();
        assert_eq!(found.pid, 43);
        assert!(find_emulator(&procfs, "vm2", None).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn terminate_asks_politely_first_and_kills_only_what_ignores_it() {
        use crate::deadline::Clock;
        use crate::host::fake_processes::FakeProcesses;
        use crate::host::processes::Signal;
        let processes = FakeProcesses::new().with_emulator(42, "vm1").with_stubborn_emulator(43, "vm,2");
        assert_eq!(find_emulator(&processes, "vm,2", Some(Path::new(crate::host::fake_processes::QEMU))).map(|p| p.pid), Some(43));
        let deadline = Deadline::after_on(Clock::manual(), Duration::from_secs(10));
        assert!(terminate(&processes, 42, &deadline));
        assert_eq!(deadline.elapsed(), Duration::ZERO, "gone at SIGTERM: no wait");
        assert!(terminate(&processes, 43, &deadline));
        assert_eq!(deadline.elapsed(), Duration::from_secs(5), "SIGKILL at half the deadline");
        assert_eq!(processes.signals(), [(42, Signal::Term), (43, Signal::Term), (43, Signal::Kill)]);
        assert!(!processes.runs(42) && !processes.runs(43));
    }

    #[test]
    fn terminate_stops_a_process_that_ignores_sigterm() {
        use std::os::unix::process::ExitStatusExt;
        let d = Deadline::after(Duration::from_secs(10));
        // The ignored disposition survives the exec.
        let mut sh = std::process::Command::new("sh");
        sh.args(["-c", "trap '' TERM; echo ignoring; exec sleep 30"]);
        let (pid, reaper) = testing::started_ignoring_sigterm(sh, "ignoring");
        assert!(terminate(&ProcFs::new(), pid, &Deadline::after(Duration::from_millis(600))));
        assert!(!d.expired());
        let status = reaper.join().unwrap().unwrap();
        assert_eq!(status.signal(), Some(nix::sys::signal::Signal::SIGKILL as i32), "it took SIGKILL: {status:?}");
    }
}
