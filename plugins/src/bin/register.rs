//! `kubectl mesh-register`: parse, run in the library, map the outcome to an exit code.

use std::process::ExitCode;

use mesh_shared::{app, register};

fn main() -> ExitCode {
    app::main(|args: register::Args, io| Box::pin(register::run(args, io)))
}
