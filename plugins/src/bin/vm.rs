//! `kubectl mesh-vm`: parse, run in the library, map the outcome to an exit code.

use std::process::ExitCode;

use mesh_shared::{app, vm};

fn main() -> ExitCode {
    app::main(|args: vm::Args, io| Box::pin(vm::run(args, io)))
}
