//! An in-memory process table for the in-process tests: an emulator that
//! runs while libvirtd is gone, one that ignores SIGTERM, and a record of
//! every signal the agent sent, without a real process.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::deadline::Deadline;

use super::processes::{Processes, Signal};

/// The emulator image the fake's processes run.
pub const QEMU: &str = "/usr/bin/qemu-system-x86_64";

/// What the agent did to the process table, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessCall {
    /// The table was scanned (a look for an emulator).
    Listed,
    Signalled { pid: i32, signal: Signal },
}

#[derive(Debug, Clone)]
struct FakeProcess {
    pid: i32,
    cmdline: Vec<u8>,
    exe: PathBuf,
    ignores_sigterm: bool,
}

#[derive(Default)]
struct Table {
    running: Vec<FakeProcess>,
    calls: Vec<ProcessCall>,
}

/// Clones share one table: the test keeps one, the host under test another.
#[derive(Clone, Default)]
pub struct FakeProcesses {
    table: Arc<Mutex<Table>>,
}

impl FakeProcesses {
    pub fn new() -> FakeProcesses {
        FakeProcesses::default()
    }

    /// A QEMU running domain `name` as libvirt starts it.
    pub fn with_emulator(self, pid: i32, name: &str) -> FakeProcesses {
        self.add(pid, name, false)
    }

    /// A QEMU running domain `name` that only SIGKILL stops.
    pub fn with_stubborn_emulator(self, pid: i32, name: &str) -> FakeProcesses {
        self.add(pid, name, true)
    }

    fn add(self, pid: i32, name: &str, ignores_sigterm: bool) -> FakeProcesses {
        let mut cmdline = Vec::new();
        for arg in [QEMU, "-name", &format!("guest={},debug-threads=on", name.replace(',', ",,")), "-S"] {
            cmdline.extend_from_slice(arg.as_bytes());
            cmdline.push(0);
        }
        let process = FakeProcess { pid, cmdline, exe: QEMU.into(), ignores_sigterm };
        self.table.lock().unwrap().running.push(process);
        self
    }

    /// Whether process `pid` still runs.
    pub fn runs(&self, pid: i32) -> bool {
        self.table.lock().unwrap().running.iter().any(|p| p.pid == pid)
    }

    pub fn calls(&self) -> Vec<ProcessCall> {
        self.table.lock().unwrap().calls.clone()
    }

    /// The signals sent, in order.
    pub fn signals(&self) -> Vec<(i32, Signal)> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                ProcessCall::Signalled { pid, signal } => Some((pid, signal)),
                ProcessCall::Listed => None,
            })
            .collect()
    }

    fn find<T>(&self, pid: i32, read: impl FnOnce(&FakeProcess) -> T) -> Option<T> {
        self.table.lock().unwrap().running.iter().find(|p| p.pid == pid).map(read)
    }
}

impl Processes for FakeProcesses {
    fn pids(&self) -> Vec<i32> {
        let mut table = self.table.lock().unwrap();
        table.calls.push(ProcessCall::Listed);
        table.running.iter().map(|p| p.pid).collect()
    }

    fn cmdline(&self, pid: i32) -> Option<Vec<u8>> {
        self.find(pid, |p| p.cmdline.clone())
    }

    fn exe(&self, pid: i32) -> Option<PathBuf> {
        self.find(pid, |p| p.exe.clone())
    }

    fn alive(&self, pid: i32) -> bool {
        self.runs(pid)
    }

    fn signal(&self, pid: i32, signal: Signal) -> Result<(), String> {
        let mut table = self.table.lock().unwrap();
        table.calls.push(ProcessCall::Signalled { pid, signal });
        let Some(at) = table.running.iter().position(|p| p.pid == pid) else {
            return Err("No such process".into());
        };
        if signal == Signal::Kill || !table.running[at].ignores_sigterm {
            table.running.remove(at);
        }
        Ok(())
    }

    fn exit_deadline(&self, deadline: &Deadline) -> Deadline {
        *deadline
    }
}
