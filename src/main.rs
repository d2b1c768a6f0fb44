//! One binary, several agents: installed as `.../resource.d/virtguard/VirtualDomain`
//! it is that agent (argv[0] tells); `virtguard VirtualDomain <action>` does
//! the same by hand, and `virtguard drbd ...` is the DRBD helper.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let invoked_as = args.first().map(|a| Path::new(a).file_name().unwrap_or_default().to_string_lossy().into_owned());
    if invoked_as.as_deref() == Some("VirtualDomain") {
        return ExitCode::from(virtguard::vdomain::run_agent(args.get(1).map(String::as_str)).code());
    }
    virtguard::cli::main(args)
}
