//! THE parameter table of VirtualDomain: its environment parsing,
//! defaults, type checks, meta-data and man page all come from here.

use crate::ocf::metadata::AgentDescription;
use crate::ocf::params::{parameters, Flag, Number, OptNumber, ParamError, ParamKind, ParamSpec, Text};
#[cfg(test)]
use crate::ocf::params::ParamType;

const SHORTDESC: &str = "Manages libvirt virtual machines (virtguard)";
const LONGDESC: &str = "Runs a libvirt domain (a KVM/QEMU virtual machine) as a highly available \
cluster resource: start, graceful stop with a bounded fallback to destroy, a monitor that tells a serving \
guest from one paused on an I/O error or crashed, and bounded live migration. Before it starts or receives \
a guest it checks that the DRBD volumes backing the guest's disks hold the newest data. A drop-in \
replacement for ocf:heartbeat:VirtualDomain: same parameters, defaults and exit codes.";

/// VirtualDomain as its meta-data and man page describe it.
pub const VIRTUAL_DOMAIN: AgentDescription =
    AgentDescription {
    name: "VirtualDomain",
    provider: "virtguard",
    shortdesc: SHORTDESC,
    longdesc: LONGDESC,
    actions: "start|stop|status|monitor|migrate_to|migrate_from|meta-data|validate-all|reload-agent|usage",
    parameters: TABLE,
};

parameters! {
    config: Text, required = true, unique = true;
        short: "Absolute path of the libvirt domain XML";
        long: "Absolute path of the libvirt domain XML that describes the virtual machine. The domain name is read from its top-level <name> element. The file must be present on every node that may run the guest (shared storage, csync2 or configuration management).";
    hypervisor: Text;
        short: "libvirt connection URI";
        long: "libvirt URI of the local hypervisor, for example qemu:///system. Unset, libvirt's default is used (LIBVIRT_DEFAULT_URI, else the system instance of the local driver).";
    force_stop: Flag = "false", reloadable = true;
        short: "Destroy the guest on stop instead of shutting it down";
        long: "Stop destroys the guest at once (the equivalent of pulling the power cord) instead of requesting a graceful shutdown first. Only for guests that tolerate it, or that are known not to react to shutdown requests.";
    migration_transport: Text, reloadable = true;
        short: "Transport of the remote hypervisor URI during migration";
        long: "Transport of the computed remote hypervisor URI during live migration, for example ssh gives qemu+ssh://node2/system. It replaces a transport the local URI has (qemu+tls with ssh gives qemu+ssh), it is not stacked onto it. Unset, the URI of the local hypervisor is used with the target host name.";
    migration_user: Text, reloadable = true;
        short: "User of the computed remote hypervisor URI";
        long: "User name put into the computed remote hypervisor URI (user@node2); unset, a user in the local URI is kept. A user name that cannot be put into a URI is a configuration error reported by validate-all. Ignored when remoteuri is set.";
    migration_downtime: Number = "0", reloadable = true;
        short: "Maximum downtime of a live migration (ms)";
        long: "Maximum tolerable downtime of a live migration in milliseconds, applied before the first byte is sent. 0 keeps libvirt's default.";
    migration_speed: Number = "0", reloadable = true;
        short: "Bandwidth cap of a live migration (MiB/s)";
        long: "Maximum bandwidth of a live migration in MiB/s, applied from the first byte. 0 means unlimited.";
    migration_network_suffix: Text, reloadable = true;
        short: "Suffix of the migration network host names";
        long: "Use a dedicated migration network. The suffix is inserted after the first label of the target node name (node2 becomes node2-mig, node2.example.com becomes node2-mig.example.com) both for the migration data URI, which then is tcp:<host>:<migrateport>, and for the connection to the target's hypervisor (unless remoteuri is set).";
    migrateuri: Text, reloadable = true;
        short: "Explicit migration data URI";
        long: "Migration data URI, for example tcp://node2-mig:49152; %n is replaced by the target node name as Pacemaker gives it (without migration_network_suffix). Takes precedence over --migrateuri in migrate_options and over the URI computed from migration_network_suffix.";
    migrate_options: Text, reloadable = true;
        short: "Extra live migration options";
        long: "Extra migration options in virsh syntax, space separated: --p2p --tunnelled --auto-converge --postcopy --postcopy-after-precopy --compressed --unsafe --persistent --undefinesource --abort-on-error --migrateuri=URI --listen-address=ADDR --parallel --parallel-connections=N --bandwidth=MiB. An option that virtguard does not know is a configuration error reported by validate-all.";
    monitor_scripts: Text, reloadable = true;
        short: "Extra health checks run by monitor";
        long: "Space-separated list of commands run after the domain state check succeeded. Any non-zero exit (or a command that does not finish before the operation deadline) fails the monitor; start and migrate_from wait, within their own deadline, until they all pass.";
    guest_agent_grace: Number = "30", reloadable = true;
        short: "Seconds the guest agent may stay silent before monitor fails";
        long: "At monitor depth OCF_CHECK_LEVEL=10 or more, monitor asks the QEMU guest agent inside a running domain to answer (guest-ping; at 20 also the guest's file systems). One missed answer is only a warning: monitor fails once the agent has been silent for longer than this many seconds, counted from the first monitor that got no answer (remembered under HA_RSCTMP). 0 fails at the first missed answer. Needs the guest agent channel in the domain XML and qemu-guest-agent in the guest.";
    wait_for_guest_agent: Flag = "false", reloadable = true;
        short: "start and migrate_from wait until the guest agent answers";
        long: "start and migrate_from return only once the QEMU guest agent in the guest answers guest-ping (within the operation's timeout), so that an ordering constraint on this resource means that the guest OS is up. Needs the guest agent channel in the domain XML, else it is a configuration error.";
    autoset_utilization_cpu: Flag = "true", reloadable = true;
        short: "Publish the vCPU count as the cpu utilization";
        long: "Publish the domain's vCPU count as the resource's cpu utilization attribute (for placement-strategy). Written only when the value differs from what this node last published.";
    autoset_utilization_host_memory: Flag = "true", reloadable = true;
        short: "Publish the maximum memory as host_memory utilization";
        long: "Publish the domain's maximum memory in MiB as the resource's host_memory utilization attribute. Written only when it changes.";
    autoset_utilization_hv_memory: Flag = "true", reloadable = true;
        short: "Publish the maximum memory as hv_memory utilization";
        long: "Publish the domain's maximum memory in MiB as the resource's hv_memory utilization attribute. Written only when it changes.";
    unset_utilization_cpu: Flag = "false", reloadable = true;
        short: "Remove the cpu utilization attribute";
        long: "Remove the resource's cpu utilization attribute instead of publishing it.";
    unset_utilization_host_memory: Flag = "false", reloadable = true;
        short: "Remove the host_memory utilization attribute";
        long: "Remove the resource's host_memory utilization attribute instead of publishing it.";
    unset_utilization_hv_memory: Flag = "false", reloadable = true;
        short: "Remove the hv_memory utilization attribute";
        long: "Remove the resource's hv_memory utilization attribute instead of publishing it.";
    migrateport: OptNumber, reloadable = true;
        short: "Port of the computed migration URI";
        long: "Port of the migration data URI computed when migration_network_suffix is set. Unset, a port in 49152..49215 is chosen for each migration.";
    remoteuri: Text, reloadable = true;
        short: "Explicit remote hypervisor URI";
        long: "URI of the hypervisor on the migration target, for example qemu+tls://%n/system; %n is replaced by the target node name. Overrides the URI computed from hypervisor, migration_transport and migration_user.";
    save_config_on_stop: Flag = "false", reloadable = true;
        short: "Write the running definition back to config";
        long: "On stop, monitor and migration, write the domain's current inactive XML back to config when it differs. The file is replaced atomically (temporary file, fsync, rename): a full disk or a crash never truncates it.";
    sync_config_on_stop: Flag = "false", reloadable = true;
        short: "Also distribute the saved config with csync2";
        long: "Implies save_config_on_stop; afterwards runs csync2 -x on config to push it to the other nodes.";
    snapshot: Text, reloadable = true;
        short: "Directory for the guest's saved RAM state";
        long: "Stop saves the guest's memory state to <snapshot>/<domain name>.state instead of shutting it down; start restores it and deletes the file. Incompatible with force_stop.";
    backingfile: Text;
        short: "Backing file of the copy-on-write disk";
        long: "Copy-on-write mode: the domain's disk is a qcow2 overlay <config without extension>.qcow2 on top of this backing file, which is never written. The domain is defined from config and started.";
    stateless: Flag = "false";
        short: "Recreate the copy-on-write overlay at every start";
        long: "With backingfile: create a fresh qcow2 overlay at every start, so that the guest always boots from the unchanged backing file. Without it, an existing non-empty overlay is reused.";
    copyindirs: Text;
        short: "Directories copied into a stateless guest before boot";
        long: "Stateless mode only: space-separated list of directories copied into the guest's root file system with virt-copy-in before it boots.";
    shutdown_mode: Text, reloadable = true;
        short: "Graceful shutdown method";
        long: "Comma-separated shutdown methods passed to libvirt for the graceful stop: acpi, agent, initctl, signal, paravirt. Unset, the hypervisor's default is used.";
    start_resources: Flag = "false", reloadable = true;
        short: "Start the storage pools and networks the domain uses";
        long: "Before start and before a live migration, start the libvirt storage pools and virtual networks that the domain's disks and interfaces reference (and refresh active pools).";
    drbd_resources: Text;
        short: "DRBD resources that back the domain";
        long: "Space-separated DRBD resource names whose data the guest uses. Unset, they are detected from the domain's disks (/dev/drbdN, /dev/drbd/by-res/<res>[/<vol>], /dev/drbd/by-disk/...). Start, migrate_to and migrate_from refuse to run the guest on DRBD data that is not UpToDate, that lacks quorum, or while a peer is Primary (unless drbd_dual_primary).";
    drbd_allow_diskless: Flag = "false", reloadable = true;
        short: "Allow running on a diskless DRBD client";
        long: "Accept a local Diskless DRBD volume when a connected peer has UpToDate data (DRBD 9 diskless clients). Off by default: the guest then only runs where the data is local.";
    drbd_require_fencing: Flag = "false", reloadable = true;
        short: "Refuse DRBD resources without a fencing policy";
        long: "Rules F1 and F2 of the DRBD gate (F2: see drbd_dual_primary). A DRBD resource with fencing dont-care (DRBD's default) cannot keep a failover off older data: when the replication link is cut and the Primary keeps writing before it fails, DRBD on the survivor cannot know that its data is older, still reports UpToDate, and the guest starts there on the old data; the writes made since the cut are lost. LINBIT documents fencing resource-only with the crm-fence-peer handlers for Pacemaker (DRBD 8.4: fence-peer crm-fence-peer.sh, after-resync-target crm-unfence-peer.sh; DRBD 9: crm-fence-peer.9.sh and crm-unfence-peer.9.sh). Off (the default, as the classic agent does not look), validate-all and start log a warning naming the resource and go on. On, validate-all fails with OCF_ERR_CONFIGURED and start refuses, naming the resource and the rule (DRBD state that cannot be read during validate-all is only a warning; start checks again). The policy is read from drbdsetup show: per volume in DRBD 8.4, per connection in DRBD 9; a policy that cannot be read counts as missing. DRBD 9 quorum is not counted as fencing.";
    drbd_dual_primary: Flag = "false", reloadable = true;
        short: "The DRBD resources are Primary on both nodes by design";
        long: "For LINBIT's live-migration setup on DRBD 8.4: ocf:linbit:drbd as a promotable clone with promoted-max=2 and allow-two-primaries in the resource's net section, so that both nodes are Primary all the time (an 8.4 Secondary cannot be opened, so the migration target must already be Primary). Off (the default), a Primary peer refuses a start (rule S5) and a Primary target refuses a migration (rule M3): with one Primary by design, a second one means a second writer. On, one Primary peer with allow-two-primaries on towards it is expected and only logged; a peer Primary without allow-two-primaries, or a second Primary peer, is still refused. One writer is then guaranteed by Pacemaker (the resource runs once, fencing) and libvirt (no migration onto a node where the guest runs), no longer by DRBD. Rule F2: with both nodes Primary, fencing resource-only lets the node without the guest win the fence-peer handlers' race after a cut replication link, so a start warns about it (refuses with drbd_require_fencing); LINBIT documents fencing resource-and-stonith for dual-primary.";
}

#[cfg(test)]
impl ParamSpec {
    pub(crate) fn find(name: &str) -> Option<&'static ParamSpec> {
        TABLE.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
impl Params {
    /// Parameters from name/value pairs, as tests write them (a name given
    /// twice: the last value counts, as in the environment).
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Result<Params, Vec<ParamError>> {
        Params::from_lookup(|name| pairs.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Params, Vec<ParamError>> {
        Params::from_pairs(pairs)
    }

    #[test]
    fn defaults_match_the_classic_agent() {
        let p = parse(&[("config", "/etc/vm1.xml")]).unwrap();
        assert_eq!(p.config.as_deref(), Some("/etc/vm1.xml"));
        assert!(!p.force_stop);
        assert_eq!(p.migration_downtime, 0);
        assert_eq!(p.migration_speed, 0);
        assert!(p.autoset_utilization_cpu && p.autoset_utilization_host_memory && p.autoset_utilization_hv_memory);
        assert!(!p.unset_utilization_cpu && !p.save_config_on_stop && !p.stateless && !p.start_resources);
        assert_eq!(p.migrateport, None);
        assert_eq!(p.hypervisor, None);
        // New, and off: the classic agent never refused an unfenced DRBD resource.
        assert!(!p.drbd_require_fencing && !p.drbd_allow_diskless);
    }

    #[test]
    fn every_classic_parameter_is_in_the_table_with_its_type() {
        let classic = [
            ("config", ParamType::String), ("hypervisor", ParamType::String),
            ("force_stop", ParamType::Boolean), ("migration_transport", ParamType::String),
            ("migration_user", ParamType::String), ("migration_downtime", ParamType::Integer),
            ("migration_speed", ParamType::Integer), ("migration_network_suffix", ParamType::String),
            ("migrateuri", ParamType::String), ("migrate_options", ParamType::String),
            ("monitor_scripts", ParamType::String), ("autoset_utilization_cpu", ParamType::Boolean),
            ("autoset_utilization_host_memory", ParamType::Boolean),
            ("autoset_utilization_hv_memory", ParamType::Boolean),
            ("unset_utilization_cpu", ParamType::Boolean),
            ("unset_utilization_host_memory", ParamType::Boolean),
            ("unset_utilization_hv_memory", ParamType::Boolean), ("migrateport", ParamType::Integer),
            ("remoteuri", ParamType::String), ("save_config_on_stop", ParamType::Boolean),
            ("sync_config_on_stop", ParamType::Boolean), ("snapshot", ParamType::String),
            ("backingfile", ParamType::String), ("stateless", ParamType::Boolean),
            ("copyindirs", ParamType::String), ("shutdown_mode", ParamType::String),
            ("start_resources", ParamType::Boolean),
        ];
        for (name, kind) in classic {
            let spec = ParamSpec::find(name).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(spec.kind, kind, "{name}");
        }
        let config = ParamSpec::find("config").unwrap();
        assert!(config.required && config.unique);
    }

    #[test]
    fn booleans_follow_ocf_is_true_and_reject_garbage() {
        for yes in ["1", "yes", "TRUE", "on", "Y"] {
            assert!(parse(&[("force_stop", yes)]).unwrap().force_stop, "{yes}");
        }
        for no in ["0", "no", "False", "off", ""] {
            assert!(!parse(&[("force_stop", no)]).unwrap().force_stop, "{no}");
        }
        let errors = parse(&[("force_stop", "maybe"), ("migration_speed", "-3")]).unwrap_err();
        let names: Vec<_> = errors.iter().map(|e| e.name).collect();
        assert_eq!(names, vec!["force_stop", "migration_speed"]);
    }

    /// A change of any of these must restart the guest: config and
    /// hypervisor say which guest it is and where, the copy-on-write ones
    /// make its disk at start, and drbd_resources names the data that
    /// start's DRBD gate checked.
    #[test]
    fn only_parameters_that_steer_later_actions_are_reloadable() {
        let restart: Vec<&str> = TABLE.iter().filter(|p| !p.reloadable).map(|p| p.name).collect();
        assert_eq!(restart, ["config", "hypervisor", "backingfile", "stateless", "copyindirs", "drbd_resources"]);
        assert!(!ParamSpec::find("config").unwrap().reloadable && !ParamSpec::find("hypervisor").unwrap().reloadable);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = TABLE.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), TABLE.len());
    }
}
