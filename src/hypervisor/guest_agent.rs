//! What the QEMU guest agent answers, read from its JSON: pure parsers,
//! tested on literal answers of qemu-ga.

use anyhow::anyhow;
use serde::Deserialize;

/// The agent's view of the guest's file systems (level 20 of monitor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestFilesystems {
    /// How many file systems `guest-get-fsinfo` lists.
    pub count: usize,
    /// `guest-fsfreeze-status` is not "thawed".
    pub frozen: bool,
}

pub const PING: &str = r#"{"execute":"guest-ping"}"#;
pub const FREEZE_STATUS: &str = r#"{"execute":"guest-fsfreeze-status"}"#;
pub const FSINFO: &str = r#"{"execute":"guest-get-fsinfo"}"#;

/// `{"return": ...}`; an `error` object (a command the agent refuses) is a
/// failure with the agent's own text.
#[derive(Deserialize)]
struct Reply<T> {
    #[serde(rename = "return")]
    value: Option<T>,
    error: Option<Fault>,
}

#[derive(Deserialize)]
struct Fault {
    desc: Option<String>,
}

fn parse_reply<T: for<'de> Deserialize<'de>>(command: &str, json: &str) -> anyhow::Result<T> {
    let reply: Reply<T> = serde_json::from_str(json).map_err(|e| anyhow!("{command} gave an unreadable answer ({e})"))?;
    match (reply.value, reply.error) {
        (Some(value), _) => Ok(value),
        (None, Some(fault)) => Err(anyhow!("{command} failed: {}", fault.desc.unwrap_or_default())),
        (None, None) => Err(anyhow!("{command} gave an empty answer")),
    }
}

/// `guest-fsfreeze-status`: whether the guest's file systems are frozen.
pub fn parse_freeze_status(json: &str) -> anyhow::Result<bool> {
    parse_reply::<String>("guest-fsfreeze-status", json).map(|status| status != "thawed")
}

/// `guest-get-fsinfo`: the number of file systems the guest reports.
pub fn parse_fsinfo(json: &str) -> anyhow::Result<usize> {
    parse_reply::<Vec<serde_json::Value>>("guest-get-fsinfo", json).map(|list| list.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_of_qemu_ga_are_parsed() {
        assert!(!parse_freeze_status(r#"{"return":"thawed"}"#).unwrap());
        assert!(parse_freeze_status(r#"{"return":"frozen"}"#).unwrap());
        let two = r#"{"return":[{"name":"sda1","mountpoint":"/","type":"ext4","disk":[]},{"name":"sda2","mountpoint":"/boot","type":"ext4","disk":[]}]}"#;
        assert_eq!(parse_fsinfo(two).unwrap(), 2);
        // The lab guest runs from its initramfs: no block-backed mounts.
        assert_eq!(parse_fsinfo(r#"{"return":[]}"#).unwrap(), 0);
        let refused = parse_fsinfo(r#"{"error":{"class":"GenericError","desc":"Command guest-get-fsinfo has been disabled"}}"#);
        assert!(refused.unwrap_err().to_string().contains("has been disabled"));
        assert!(parse_fsinfo("not json").is_err());
        assert!(parse_fsinfo("{}").unwrap_err().to_string().contains("empty answer"));
    }
}
