//! The helper command line (`virtguard <subcommand>`).

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "virtguard", version, about = "Pacemaker OCF agent for libvirt guests, with a DRBD safety gate")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the VirtualDomain OCF agent by hand, as Pacemaker would.
    #[command(name = "VirtualDomain")]
    VirtualDomain {
        /// start, stop, monitor, status, migrate_to, migrate_from, meta-data, validate-all, usage
        action: Option<String>,
    },
    /// Print the VirtualDomain man page (troff).
    Manpage,
    /// Inspect DRBD state and ask the gate whether this node may use it.
    #[command(subcommand)]
    Drbd(DrbdCommand),
    /// Switch running VirtualDomain resources between ocf:heartbeat and
    /// ocf:virtguard without restarting their guests.
    Adopt(AdoptArgs),
}

#[derive(Args)]
struct AdoptArgs {
    /// Resources to switch (primitives, also group members).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    resources: Vec<String>,
    /// Every VirtualDomain resource on the other agent, and every one an interrupted run left.
    #[arg(long)]
    all: bool,
    /// The agent to switch to.
    #[arg(long, value_enum, default_value = "virtguard")]
    to: AdoptTarget,
    /// Print the commands that would run; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Seconds to wait for the new agent's probes (all resources together).
    #[arg(long, default_value_t = 120)]
    probe_timeout: u64,
}

#[derive(Clone, Copy, ValueEnum)]
enum AdoptTarget {
    Virtguard,
    Heartbeat,
}

#[derive(Subcommand)]
enum DrbdCommand {
    /// Roles, disks, connections, replication and quorum of DRBD resources.
    Status {
        /// Resources to show (default: all).
        resources: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Exit 0 when this node may use RES for the purpose, 1 when not (reasons
    /// on stderr), 2 when the DRBD state cannot be read.
    Check(DrbdCheck),
}

#[derive(Args)]
struct DrbdCheck {
    /// DRBD resources to check.
    #[arg(required = true)]
    resources: Vec<String>,
    /// What the data is for.
    #[arg(long = "for", value_enum)]
    purpose: CheckPurpose,
    /// The other node of a migration (its DRBD connection name).
    #[arg(long, required_if_eq_any([("purpose", "migrate-source"), ("purpose", "migrate-target")]))]
    peer: Option<String>,
    /// Accept Diskless volumes served by a connected UpToDate peer.
    #[arg(long)]
    allow_diskless: bool,
    /// Refuse a start when a resource has no fencing policy (rule F1;
    /// without this flag that is a warning).
    #[arg(long)]
    require_fencing: bool,
    /// Both nodes are Primary by design (promoted-max=2 with
    /// allow-two-primaries): a Primary peer does not refuse a start or a
    /// migration (rules S5, M3); fencing resource-only is not enough (F2).
    #[arg(long)]
    dual_primary: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum CheckPurpose {
    Start,
    MigrateSource,
    MigrateTarget,
}

fn run_drbd(command: DrbdCommand) -> u8 {
    use crate::drbd::{command, Purpose, Sources};
    crate::log::init_helper("drbd");
    let sources = Sources::default();
    let result = match command {
        DrbdCommand::Status { resources, json } => command::status(&sources, &resources, json),
        DrbdCommand::Check(check) => {
            let peer = check.peer.unwrap_or_default();
            let purpose = match check.purpose {
                CheckPurpose::Start => Purpose::Start,
                CheckPurpose::MigrateSource => Purpose::MigrateSource { target: peer },
                CheckPurpose::MigrateTarget => Purpose::MigrateTarget { source: peer },
            };
            let params = crate::drbd::GateParams {
                allow_diskless: check.allow_diskless,
                require_fencing: check.require_fencing,
                dual_primary: check.dual_primary,
            };
            command::check(&sources, &check.resources, &purpose, &params)
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("{e:#}");
        command::EXIT_UNREADABLE
    })
}

pub fn main(args: Vec<String>) -> ExitCode {
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::VirtualDomain { action } => {
            ExitCode::from(crate::vdomain::run_agent(action.as_deref()).code())
        }
        Command::Manpage => {
            print!("{}", crate::ocf::manpage::render(&crate::vdomain::params::VIRTUAL_DOMAIN));
            ExitCode::SUCCESS
        }
        Command::Drbd(command) => ExitCode::from(run_drbd(command)),
        Command::Adopt(args) => ExitCode::from(crate::adopt::run(&crate::adopt::Request {
            to: match args.to {
                AdoptTarget::Virtguard => "virtguard",
                AdoptTarget::Heartbeat => "heartbeat",
            }
            .to_owned(),
            resources: args.resources,
            all: args.all,
            dry_run: args.dry_run,
            probe_timeout: std::time::Duration::from_secs(args.probe_timeout),
        })),
    }
}
