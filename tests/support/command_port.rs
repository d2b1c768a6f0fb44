//! The host end of an emulated lab node's command port (the protocol is in
//! tests/lab/drbd-nodes.sh): one line of sh in; "VGLAB-RESULT <rc> <stdout
//! bytes> <stderr bytes>" and exactly those bytes back.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

pub struct Reply {
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
}

/// One node's port: one command at a time (callers on several threads wait
/// for each other); connected at first use, again after `reconnect`.
pub struct CommandPort {
    node: &'static str,
    path: PathBuf,
    timeout: Duration,
    stream: Mutex<Option<UnixStream>>,
}

impl CommandPort {
    pub fn new(node: &'static str, path: PathBuf, timeout: Duration) -> CommandPort {
        CommandPort { node, path, timeout, stream: Mutex::new(None) }
    }

    /// Forgets the connection: the node was powered off (its emulator, the
    /// other end of the socket, is gone) or is about to be.
    pub fn reconnect(&self) {
        self.stream.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Runs `command` (one line of sh) in the node: its exit code and output.
    pub fn run(&self, command: &str) -> Reply {
        self.try_run(command).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As `run`, but a node that does not answer (powered off, booting) is
    /// an error, and the next call connects anew.
    pub fn try_run(&self, command: &str) -> Result<Reply, String> {
        let node = self.node;
        assert!(!command.contains('\n'), "one line per command: {command}");
        let mut slot = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        let reply = Self::exchange(node, &self.path, self.timeout, &mut slot, command);
        if reply.is_err() {
            slot.take();
        }
        reply
    }

    fn exchange(node: &str, path: &PathBuf, timeout: Duration, slot: &mut Option<UnixStream>, command: &str) -> Result<Reply, String> {
        if slot.is_none() {
            let stream = UnixStream::connect(path).map_err(|e| format!("{node}: {}: {e}", path.display()))?;
            stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
            *slot = Some(stream);
        }
        let stream = slot.as_mut().unwrap();
        stream.write_all(format!("{command}\n").as_bytes()).map_err(|e| format!("{node}: sending '{command}': {e}"))?;
        let mut reader = BufReader::new(&*stream);
        let mut header = String::new();
        reader.read_line(&mut header).map_err(|e| format!("{node}: no reply to '{command}': {e}"))?;
        let words: Vec<&str> = header.split_whitespace().collect();
        let [marker, rc, out_len, err_len] = words[..] else { return Err(format!("{node}: bad reply header {header:?} to '{command}'")) };
        if marker != "VGLAB-RESULT" {
            return Err(format!("{node}: bad reply header {header:?}"));
        }
        let mut take = |len: &str| -> Result<String, String> {
            let mut bytes = vec![0; len.parse().map_err(|_| format!("{node}: bad length {len:?}"))?];
            reader.read_exact(&mut bytes).map_err(|e| format!("{node}: reply to '{command}' cut short: {e}"))?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        let stdout = take(out_len)?;
        let stderr = take(err_len)?;
        Ok(Reply { rc: rc.parse().map_err(|_| format!("{node}: bad exit code {rc:?}"))?, stdout, stderr })
    }
}
