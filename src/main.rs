//! The `deepinit` command line: parse, dispatch to `cli`, print the error.
//!
//! Exit status: 0 success, 1 error (bad input files or values that only
//! conflict in combination, no device, I/O, a standard output that cannot be
//! written), 2 usage error (an unknown flag, or a flag's value its parser
//! refuses: out of its range, not among its choices), 3 ran but failed
//! verification, 128 + N interrupted by signal N (nothing written), 141 the
//! standard output's reader went away (a closed pipe: the rest of the output
//! is dropped quietly, the work itself completes).

fn main() -> std::process::ExitCode {
    deepinit::cli::main()
}
