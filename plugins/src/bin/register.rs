//! `kubectl mesh-register`: parse, run in the library, map the outcome to an exit code.

use std::process::ExitCode;

use mesh_shared::{app, register, Io};

fn main() -> ExitCode {
    let args = match app::parse::<register::Args>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let mut io = Io::std();
    let result = app::block_on(register::run(args, &mut io));
    app::finish(result, io)
}
