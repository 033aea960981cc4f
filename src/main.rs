//! The `deepinit` command line: parse, dispatch to `cli`, print the error.
//!
//! Exit status: 0 success, 1 error (bad input files or values that only
//! conflict in combination, no device, I/O, a standard output that cannot be
//! written), 2 usage error (an unknown flag, or a flag's value its parser
//! refuses: out of its range, not among its choices), 3 ran but failed
//! verification, 128 + N interrupted by signal N (nothing written), 141 the
//! standard output's reader went away (a closed pipe: the rest of the output
//! is dropped quietly, the work itself completes).

mod cli;

use clap::{CommandFactory, FromArgMatches};
use cli::{
    run_adapters, run_bench, run_demo, run_forward, run_init, run_inspect, run_model, run_sweep,
    Cli, Command, DemoArgs,
};
use std::process::ExitCode;

fn main() -> ExitCode {
    cli::quiet_display_probes();
    // "-1" is a value (refused by its flag's range check with the range in
    // the message), not an unknown flag.
    let command = Cli::command()
        .allow_negative_numbers(true)
        .mut_subcommands(|c| c.allow_negative_numbers(true));
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    cli::install_cleanup_handler();
    let result = match &cli.command {
        Some(Command::Init(a)) => run_init(a, &cli.device),
        Some(Command::Adapters(a)) => run_adapters(a, &cli.device),
        Some(Command::Demo(a)) => run_demo(a, &cli.device),
        Some(Command::Bench(a)) => run_bench(a, &cli.device),
        Some(Command::Sweep(a)) => run_sweep(a, &cli.device),
        Some(Command::Forward(a)) => run_forward(a, &cli.device),
        Some(Command::Model(a)) => run_model(a, &cli.device),
        Some(Command::Inspect(a)) => run_inspect(a),
        None => run_demo(&DemoArgs::default(), &cli.device),
    };
    // Output that could not be written is a failure, whatever the command
    // concluded.
    match result.and_then(|code| cli::stdout_error().map_or(Ok(code), Err)) {
        Ok(_) if cli::stdout_closed() => ExitCode::from(141),
        Ok(code) => code,
        Err(e) => {
            cli::err(&format!("deepinit: error: {e}\n"));
            ExitCode::FAILURE
        }
    }
}
