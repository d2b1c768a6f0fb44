//! The helper command line (`virtguard <subcommand>`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

pub fn main(args: Vec<String>) -> ExitCode {
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::VirtualDomain { action } => {
            ExitCode::from(crate::vdomain::run_agent(action.as_deref()).code())
        }
        Command::Manpage => {
            print!("{}", crate::ocf::manpage::render());
            ExitCode::SUCCESS
        }
    }
}
