//! `kubectl mesh-link`: parse, run in the library, map the outcome to an exit code.

use std::process::ExitCode;

use mesh_shared::{app, link};

fn main() -> ExitCode {
    app::main(|args: link::Args, io| Box::pin(link::run(args, io)))
}
