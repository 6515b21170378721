//! `kubectl mesh-split`: parse, run in the library, map the outcome to an exit code.

use std::process::ExitCode;

use mesh_shared::{app, split, Io};

fn main() -> ExitCode {
    let args = match app::parse::<split::Args>() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let mut io = Io::std();
    let result = app::block_on(split::run(args, &mut io));
    app::finish(result, io)
}
