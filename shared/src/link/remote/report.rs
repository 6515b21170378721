//! What a remote-secret run prints: a result line per object written, or with `-o` the
//! objects, Secret data redacted unless `--show-secrets`.

use anyhow::Result;
use serde_json::Value;

use super::super::Args;
use super::build;
use crate::api::{Applied, Outcome, WriteMode};
use crate::objects;
use crate::Io;

/// Prints what each cluster's writes did: result lines, or the objects with Secret data
/// redacted.
pub(super) fn print(
    per: Vec<(String, Vec<Applied>)>,
    args: &Args,
    mode: WriteMode,
    io: &mut Io,
) -> Result<()> {
    match args.write.output {
        Some(format) => {
            let shown: Vec<(String, Vec<Value>)> = per
                .into_iter()
                .map(|(ctx, rs)| (ctx, shown(rs, args.show_secrets)))
                .collect();
            crate::output::print_per_context(&mut io.out, format, &shown)?;
        }
        None => {
            for (ctx, rs) in per {
                for r in rs {
                    std::io::Write::write_all(
                        &mut io.out,
                        format!(
                            "{} (context {ctx})\n",
                            crate::output::result_line(&r.object, r.outcome, mode.dry_run)
                        )
                        .as_bytes(),
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// The objects written (not those deleted), as `-o` shows them.
fn shown(results: Vec<Applied>, show_secrets: bool) -> Vec<Value> {
    results
        .into_iter()
        .filter(|r| r.outcome != Outcome::Deleted)
        .map(|r| {
            let obj = objects::for_display(r.object);
            if show_secrets {
                obj
            } else {
                build::redacted(obj)
            }
        })
        .collect()
}
