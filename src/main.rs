//! The thin entry point: parse the command line, run, print the error chain once,
//! map the outcome to an exit status (docs/exit-status.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    mailshift::run(std::env::args_os())
}
