//! `kubectl mesh-link`: parse, run in the library, map the outcome to an exit code.

use std::process::ExitCode;

use mesh_shared::{app, link, Io};

fn main() -> ExitCode {
    let args = match app::parse::<link::Args>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let mut io = Io::std();
    let result = app::block_on(link::run(args, &mut io));
    app::finish(result, io)
}
