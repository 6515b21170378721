//! `kubectl mesh-vm`: parse, run in the library, map the outcome to an exit code.

use std::process::ExitCode;

use mesh_shared::{app, vm, Io};

fn main() -> ExitCode {
    let args = match app::parse::<vm::Args>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let mut io = Io::std();
    let result = app::block_on(vm::run(args, &mut io));
    app::finish(result, io)
}
