//! `rollout-report`: the per-version SLO verdict from an Envoy admin (see `rollout_cli::report`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = rollout_cli::report::main(
        std::env::args().skip(1),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(code)
}
