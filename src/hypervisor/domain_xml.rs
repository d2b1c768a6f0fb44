//! The parts of a libvirt domain XML that the agent needs, read with a real
//! XML parser (never grep): name, type, emulator, sizes, and what the disks
//! and interfaces reference.

use anyhow::{anyhow, bail, Context};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainConfig {
    pub name: String,
    pub domain_type: String,
    pub emulator: Option<String>,
    /// `None` when only the name is known (the config file is gone).
    pub sizes: Option<Sizes>,
    pub disks: Vec<DiskSource>,
    /// libvirt virtual networks the interfaces attach to.
    pub networks: Vec<String>,
}

/// What the guest takes of a host, for Pacemaker's utilization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub vcpus: u64,
    /// Maximum memory in MiB (rounded up).
    pub max_memory_mib: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    File(String),
    Block(String),
    Volume { pool: String, volume: String },
    Other,
}

impl DomainConfig {
    /// What is known of a domain when only its name is (its config is gone).
    pub fn named(name: &str) -> DomainConfig {
        DomainConfig {
            name: name.to_owned(),
            domain_type: String::new(),
            emulator: None,
            sizes: None,
            disks: Vec::new(),
            networks: Vec::new(),
        }
    }

    pub fn parse(xml: &str) -> anyhow::Result<DomainConfig> {
        let raw: RawDomain = quick_xml::de::from_str(xml).map_err(|e| anyhow!("not a libvirt domain XML: {e}"))?;
        let name = raw.name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty())
            .context("the domain XML has no <name>")?;
        let max_memory_mib = match raw.memory {
            Some(m) => to_mib(m.value.trim(), m.unit.as_deref().unwrap_or("KiB"))?,
            None => 0,
        };
        let vcpus = match raw.vcpu {
            Some(v) => v.value.trim().parse().map_err(|_| anyhow!("<vcpu> is not a number: '{}'", v.value.trim()))?,
            None => 1,
        };
        let devices = raw.devices.unwrap_or_default();
        let disks = devices.disk.into_iter().map(|d| d.source_kind()).collect();
        let mut networks: Vec<String> = devices
            .interface
            .into_iter()
            .filter(|i| i.kind.as_deref() == Some("network"))
            .filter_map(|i| i.source.and_then(|s| s.network))
            .collect();
        networks.sort();
        networks.dedup();
        Ok(DomainConfig {
            name,
            domain_type: raw.kind.unwrap_or_default(),
            emulator: devices.emulator.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()),
            sizes: Some(Sizes { vcpus, max_memory_mib }),
            disks,
            networks,
        })
    }

    /// Storage pools referenced by `<disk type='volume'>`, sorted, once each.
    pub fn pools(&self) -> Vec<String> {
        let mut pools: Vec<String> = self
            .disks
            .iter()
            .filter_map(|d| match d {
                DiskSource::Volume { pool, .. } => Some(pool.clone()),
                _ => None,
            })
            .collect();
        pools.sort();
        pools.dedup();
        pools
    }

    /// Block device paths of the disks.
    pub fn block_devices(&self) -> impl Iterator<Item = &str> {
        self.disks.iter().filter_map(|d| match d {
            DiskSource::Block(dev) => Some(dev.as_str()),
            _ => None,
        })
    }
}

fn to_mib(value: &str, unit: &str) -> anyhow::Result<u64> {
    let n: u64 = value.parse().map_err(|_| anyhow!("<memory> is not a number: '{value}'"))?;
    let bytes_per_unit: u64 = match unit {
        "b" | "bytes" => 1,
        "KB" => 1000,
        "k" | "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "M" | "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "G" | "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "T" | "TiB" => 1 << 40,
        other => bail!("unknown memory unit '{other}'"),
    };
    let bytes = n.checked_mul(bytes_per_unit).context("memory size overflows")?;
    Ok(bytes.div_ceil(1 << 20))
}

#[derive(Deserialize)]
struct RawDomain {
    #[serde(rename = "@type")]
    kind: Option<String>,
    name: Option<String>,
    memory: Option<RawSized>,
    vcpu: Option<RawSized>,
    devices: Option<RawDevices>,
}

#[derive(Deserialize)]
struct RawSized {
    #[serde(rename = "@unit")]
    unit: Option<String>,
    #[serde(rename = "$text", default)]
    value: String,
}

#[derive(Deserialize, Default)]
struct RawDevices {
    emulator: Option<String>,
    #[serde(default)]
    disk: Vec<RawDisk>,
    #[serde(default)]
    interface: Vec<RawInterface>,
}

#[derive(Deserialize)]
struct RawDisk {
    #[serde(rename = "@type")]
    kind: Option<String>,
    source: Option<RawDiskSource>,
}

#[derive(Deserialize)]
struct RawDiskSource {
    #[serde(rename = "@file")]
    file: Option<String>,
    #[serde(rename = "@dev")]
    dev: Option<String>,
    #[serde(rename = "@pool")]
    pool: Option<String>,
    #[serde(rename = "@volume")]
    volume: Option<String>,
}

impl RawDisk {
    fn source_kind(self) -> DiskSource {
        let Some(s) = self.source else { return DiskSource::Other };
        match self.kind.as_deref() {
            Some("file") => s.file.map(DiskSource::File).unwrap_or(DiskSource::Other),
            Some("block") => s.dev.map(DiskSource::Block).unwrap_or(DiskSource::Other),
            Some("volume") => match (s.pool, s.volume) {
                (Some(pool), Some(volume)) => DiskSource::Volume { pool, volume },
                _ => DiskSource::Other,
            },
            _ => DiskSource::Other,
        }
    }
}

#[derive(Deserialize)]
struct RawInterface {
    #[serde(rename = "@type")]
    kind: Option<String>,
    source: Option<RawInterfaceSource>,
}

#[derive(Deserialize)]
struct RawInterfaceSource {
    #[serde(rename = "@network")]
    network: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"<?xml version="1.0"?>
<!-- a comment with <name>decoy</name> inside -->
<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>vm1</name>
  <uuid>2f1b0c9e-4d6a-4f3e-9b1a-3c2d1e0f9a8b</uuid>
  <description>not <![CDATA[<name>x</name>]]></description>
  <memory unit='GiB'>2</memory>
  <currentMemory unit='MiB'>1024</currentMemory>
  <vcpu placement='static'>4</vcpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='block' device='disk'><source dev='/dev/drbd/by-res/r0/0'/><target dev='vda'/></disk>
    <disk type='file' device='disk'><source file='/var/lib/libvirt/images/vm1.qcow2'/></disk>
    <disk type='volume' device='disk'><source pool='images' volume='v1'/></disk>
    <disk type='volume' device='disk'><source pool='images' volume='v2'/></disk>
    <disk type='file' device='cdrom'/>
    <interface type='network'><source network='default'/></interface>
    <interface type='network'><source network='default'/></interface>
    <interface type='bridge'><source bridge='br0'/></interface>
  </devices>
</domain>"#;

    #[test]
    fn reads_what_the_agent_needs() {
        let c = DomainConfig::parse(FULL).unwrap();
        assert_eq!(c.name, "vm1");
        assert_eq!(c.domain_type, "kvm");
        assert_eq!(c.emulator.as_deref(), Some("/usr/bin/qemu-system-x86_64"));
        assert_eq!(c.sizes, Some(Sizes { vcpus: 4, max_memory_mib: 2048 }));
        assert_eq!(c.pools(), vec!["images".to_string()]);
        assert_eq!(c.networks, vec!["default".to_string()]);
        assert_eq!(c.block_devices().collect::<Vec<_>>(), vec!["/dev/drbd/by-res/r0/0"]);
        assert_eq!(c.disks.len(), 5);
    }

    #[test]
    fn memory_defaults_to_kib_and_rounds_up() {
        let c = DomainConfig::parse("<domain type='qemu'><name>a</name><memory>65537</memory></domain>").unwrap();
        assert_eq!(c.sizes, Some(Sizes { vcpus: 1, max_memory_mib: 65 }));
        assert_eq!(c.emulator, None);
    }

    #[test]
    fn clear_errors_for_bad_input() {
        assert!(DomainConfig::parse("").is_err());
        assert!(DomainConfig::parse("<domain type='kvm'><memory>1</memory></domain>").unwrap_err().to_string().contains("<name>"));
        assert!(DomainConfig::parse("<domain><name>a</name><memory unit='parsec'>1</memory></domain>").is_err());
        assert!(DomainConfig::parse("<domain><name>a</name><vcpu>x</vcpu></domain>").is_err());
        assert!(DomainConfig::parse("<domain><name>a</name>").is_err());
        assert!(DomainConfig::parse("not xml at all").is_err());
    }
}
