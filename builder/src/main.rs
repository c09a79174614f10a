//! The `talext` binary: parse flags, run the command, render any error once.

use std::process::ExitCode;

fn main() -> ExitCode {
    talext::cli::main()
}
