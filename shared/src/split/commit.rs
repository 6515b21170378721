//! Commit and rollback of one change across clusters: each site's write goes through the
//! shared write across contexts (`write::across`), which writes the first context alone, then
//! the others together and, when one fails or a signal comes, puts back the ones written.

use anyhow::Result;

use super::build;
use super::ownership;
use super::plan::Create;
use super::site::Site;
use super::steps::Interrupt;
use super::weights::slash;
use crate::api::{Applied, Outcome, WriteMode};
use crate::cli::DryRun;
use crate::istio::VirtualService;
use crate::write::across::{self, Failed, Restored};
use crate::write::{self, Undo, Undone};
use crate::Io;

/// Writes `want[i]` to every site, the first alone and then the others together, through the
/// write across contexts: when a write fails, or a signal comes, the sites written are put back; with several contexts the
/// error is a partial failure (exit 4) after a state table.
pub(super) async fn commit(
    sites: &mut [Site],
    want: &[Vec<u32>],
    previous: &[Option<String>],
    create: Option<&Create>,
    mode: WriteMode,
    interrupt: Option<&Interrupt>,
    io: &mut Io,
) -> Result<Vec<Applied>> {
    let writes: Vec<Writing> = sites
        .iter()
        .zip(want)
        .zip(previous)
        .map(|((site, want), previous)| Writing {
            site,
            want,
            previous: previous.as_deref(),
            create,
        })
        .collect();
    let how = across::Across {
        order: across::Order::CanaryThenTogether,
        mode,
        interrupt,
        check_with: "kubectl mesh-split status",
    };
    let done = across::commit(&writes, &how, &mut *io.err).await?;
    if mode.dry_run == DryRun::None {
        for ((site, applied), w) in sites.iter_mut().zip(&done).zip(want) {
            let live = VirtualService::read(&applied.object)?;
            // Taken over (or forced): the list is ours now.
            site.decision = ownership::decide(&live, site.route.at.kind, true);
            site.live = Some(live);
            site.route.weights = w.clone();
        }
    }
    Ok(done)
}

/// One site's share of a write across contexts: its weights `want`, with the previous-weights
/// annotation `previous`.
struct Writing<'a> {
    site: &'a Site,
    want: &'a [u32],
    previous: Option<&'a str>,
    create: Option<&'a Create>,
}

impl across::Site for Writing<'_> {
    type Written = Applied;

    fn context(&self) -> &str {
        self.site.context()
    }

    fn before(&self) -> Option<String> {
        Some(if self.site.live.is_some() {
            slash(&self.site.route.weights)
        } else {
            "absent".to_string()
        })
    }

    fn left_at(&self) -> String {
        slash(self.want)
    }

    async fn write(&self, mode: WriteMode) -> std::result::Result<Applied, Failed<Applied>> {
        let site = self.site;
        if let Some(live) = &site.live {
            if site.route.weights == self.want {
                return Ok(Applied {
                    object: live.to_value(),
                    outcome: Outcome::Unchanged,
                });
            }
        }
        let desired = site.desired(self.want, self.previous, self.create);
        let before = site.live.as_ref().map(VirtualService::to_value);
        let m = WriteMode {
            dry_run: mode.dry_run,
            force: site.decision.force(),
        };
        site.cluster
            .apply_over(&desired, before.as_ref(), m)
            .await
            .map_err(|err| {
                // No answer is not "not written": the write may have landed, so undo it too.
                let in_doubt = crate::api::in_doubt(&err).then(|| Applied {
                    object: desired.clone(),
                    outcome: if site.live.is_some() {
                        Outcome::Configured
                    } else {
                        Outcome::Created
                    },
                });
                Failed { err, in_doubt }
            })
    }

    fn unchanged(written: &Applied) -> bool {
        written.outcome == Outcome::Unchanged
    }

    /// Puts the site back as it was before the run, only while it still holds what the run
    /// wrote.
    async fn put_back(&self, applied: &Applied, in_doubt: bool) -> Result<Restored> {
        let site = self.site;
        let put_back = match &site.live {
            Some(before) => Some(build::weights_object(
                &VirtualService::read(&applied.object)?,
                &site.route.at,
                &site.route.weights,
                build::previous_raw(before),
            )),
            None => None,
        };
        let before = site.live.as_ref().map(VirtualService::to_value);
        let u = Undo {
            before: before.as_ref(),
            after: Some(&applied.object),
            in_doubt,
            put_back,
        };
        let (complete, state) = match write::undo(&site.cluster, u).await? {
            Undone::NotLanded => (true, "it did not land".to_string()),
            Undone::Restored if site.live.is_none() => {
                (true, "deleted again (this run created it)".to_string())
            }
            Undone::Restored => (true, format!("restored to {}", slash(&site.route.weights))),
            Undone::Left(why) => (false, format!("NOT restored: {why}")),
        };
        Ok(Restored { complete, state })
    }
}
