//! `kubectl mesh-split`: parse, run in the library, map the outcome to an exit code.

use std::process::ExitCode;

use mesh_shared::{app, split};

fn main() -> ExitCode {
    app::main(|args: split::Args, io| Box::pin(split::run(args, io)))
}
