//! What a `.global` link run prints at the end: notes and warnings on stderr, then the result
//! table (or the objects, with `-o`) on stdout, and the failures as the run's error.

use std::io::Write as _;

use anyhow::Result;
use serde_json::Value;

use super::service_entry;
use crate::api::{Applied, Cluster, Outcome, WriteMode};
use crate::cli::{DryRun, OutputFormat};
use crate::istio::ServiceEntry;
use crate::objects;
use crate::output;
use crate::table;
use crate::Io;

/// One line of the result table.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) from: String,
    pub(super) to: String,
    service: String,
    host: String,
    address: String,
    result: String,
}

/// Everything a run prints at the end.
#[derive(Default)]
pub struct Report {
    pub(super) rows: Vec<Row>,
    objects: Vec<Value>,
    pub(super) notes: Vec<String>,
    pub(super) warnings: Vec<String>,
    pub(super) failures: Vec<String>,
    pub(super) changed: bool,
    /// Keep the written objects (only `-o` prints them; 5,000 server objects are tens of MiB).
    pub(super) keep_objects: bool,
}

impl Report {
    pub(super) fn suffix(mode: WriteMode) -> &'static str {
        match mode.dry_run {
            DryRun::None => "",
            DryRun::Client => " (dry run)",
            DryRun::Server => " (server dry run)",
        }
    }

    /// A report; `keep_objects` when the objects are printed (`-o`).
    pub fn new(keep_objects: bool) -> Self {
        Report {
            keep_objects,
            ..Report::default()
        }
    }

    pub(super) fn record(&mut self, applied: &Applied) {
        self.record_outcome(applied.outcome, Some(&applied.object));
    }

    pub(super) fn record_outcome(&mut self, outcome: Outcome, object: Option<&Value>) {
        if outcome != Outcome::Unchanged {
            self.changed = true;
        }
        if let (true, true, Some(obj)) = (self.keep_objects, outcome != Outcome::Deleted, object) {
            self.objects.push(objects::for_display(obj.clone()));
        }
    }

    /// Prints notes and warnings to stderr, then the objects (`-o`) or the table to stdout;
    /// fails when some writes failed.
    pub fn finish(
        self,
        io: &mut Io,
        output: Option<OutputFormat>,
        two_way: bool,
        extra_lines: &[String],
    ) -> Result<()> {
        for n in &self.notes {
            io.note(n)?;
        }
        for w in &self.warnings {
            io.warn(w)?;
        }
        if let Some(f) = output {
            output::print_objects(&mut io.out, f, &self.objects)?;
        } else {
            if !self.rows.is_empty() {
                write!(io.out, "{}", self.table(two_way))?;
            }
            for l in extra_lines {
                writeln!(io.out, "{l}")?;
            }
        }
        if !self.failures.is_empty() {
            anyhow::bail!(
                "{} write(s) failed: {}",
                self.failures.len(),
                self.failures.join("; ")
            );
        }
        Ok(())
    }

    /// The result table; the from and to columns only when linking both ways.
    fn table(&self, two_way: bool) -> String {
        let headers: &[&str] = if two_way {
            &["from", "to", "service", "host", "address", "result"]
        } else {
            &["service", "host", "address", "result"]
        };
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let cells = [&r.service, &r.host, &r.address, &r.result];
                let pair = [&r.from, &r.to];
                let shown: Vec<&String> = match two_way {
                    true => pair.into_iter().chain(cells).collect(),
                    false => cells.into_iter().collect(),
                };
                shown.into_iter().cloned().collect()
            })
            .collect();
        table::render(headers, &rows)
    }

    /// Adds a line to stderr.
    pub fn note(&mut self, n: String) {
        self.notes.push(n);
    }

    /// Adds an object to the `-o` output.
    pub fn object(&mut self, obj: Value) {
        if self.keep_objects {
            self.objects.push(obj);
        }
    }

    /// Adds a line to the table.
    pub(super) fn row(
        &mut self,
        (src, dst): (&Cluster, &Cluster),
        service: &str,
        host: &str,
        address: &str,
        result: &str,
    ) {
        self.rows.push(Row {
            from: src.context.clone(),
            to: dst.context.clone(),
            service: service.to_string(),
            host: host.to_string(),
            address: address.to_string(),
            result: result.to_string(),
        });
    }

    /// Adds the line of a linked ServiceEntry.
    pub(super) fn entry_row(&mut self, pair: (&Cluster, &Cluster), se: &ServiceEntry, state: &str) {
        let service = service_entry::service_of(se).unwrap_or(se.name());
        let host = service_entry::hosts(se)
            .first()
            .map(|h| h.to_string())
            .unwrap_or_default();
        let address = service_entry::ipv4_addresses(se)
            .first()
            .map(|a| a.to_string())
            .unwrap_or_default();
        self.row(pair, service, &host, &address, state);
    }

    /// Orders the table by source context, then Service.
    pub(super) fn sort_rows(&mut self) {
        self.rows
            .sort_by(|a, b| (&a.from, &a.service).cmp(&(&b.from, &b.service)));
    }
}

/// The result column of a write: what it did, and whether it was a dry run.
pub(super) fn outcome_text(outcome: Outcome, mode: WriteMode) -> String {
    format!("{}{}", outcome.word(), Report::suffix(mode))
}
