//! `kubectl mesh-link --mode remote-secret --unlink`: the writes that take one direction's
//! link back, in the target (its remote secret) and the source (the reader identity).

use anyhow::Result;

use super::apply::Role;
use super::{build, facts, ledger};
use crate::api::Cluster;
use crate::objects;
use crate::write::Step;
use crate::Io;

/// The writes of `--unlink`, target first: both clusters are read at once.
pub(super) async fn sides<'c>(
    (a, b): (&'c Cluster, &'c Cluster),
    ns: &str,
    (a_id, b_id): (&str, &str),
    io: &mut Io,
) -> Result<Vec<(&'c Cluster, Role)>> {
    let secret_name = build::remote_secret_name(a_id);
    let secret_kind = objects::core("Secret");
    let (secret, reader) = tokio::join!(
        b.get(&secret_kind, Some(ns), &secret_name),
        facts::reader(a, ns)
    );
    let target = target_steps(b, ns, &secret_name, secret?, io)?;
    let source = source_steps(a, ns, b_id, reader?, io)?;
    Ok(vec![(b, Role::Plain(target)), (a, Role::Plain(source))])
}

/// The target's secret goes, when kubectl-mesh made it.
fn target_steps(
    b: &Cluster,
    ns: &str,
    secret_name: &str,
    secret: Option<serde_json::Value>,
    io: &mut Io,
) -> Result<Vec<Step>> {
    let mut target = Vec::new();
    match secret {
        None => io.note(format!(
            "secret/{secret_name} not found in context {}: nothing to unlink there",
            b.context
        ))?,
        Some(s) if !objects::is_managed(&s) => anyhow::bail!(
            "Secret {ns}/{secret_name} in context {:?} was not made by kubectl-mesh (no app.kubernetes.io/managed-by: kubectl-mesh label): it was left as it is; delete it with kubectl if it should go",
            b.context
        ),
        Some(s) => target.push(Step::Delete { existing: s }),
    }
    Ok(target)
}

/// The source's reader identity goes too when kubectl-mesh made it and its ledger names no
/// other cluster; the target's own tokens go in any case.
fn source_steps(
    a: &Cluster,
    ns: &str,
    b_id: &str,
    reader: facts::Reader,
    io: &mut Io,
) -> Result<Vec<Step>> {
    let mut source = Vec::new();
    if let Some(sa) = reader.service_account.filter(objects::is_managed) {
        let others: Vec<String> = ledger::users(&sa)
            .into_iter()
            .filter(|u| u != b_id)
            .collect();
        if others.is_empty() {
            let mine = reader
                .tokens
                .into_iter()
                .chain([reader.binding, reader.cluster_role].into_iter().flatten());
            for obj in mine.filter(objects::is_managed) {
                source.push(Step::Delete { existing: obj });
            }
            source.push(Step::Delete { existing: sa });
            return Ok(source);
        }
        io.note(format!(
            "the reader identity in context {} stays: the remote secrets of {} use it",
            a.context,
            others.join(", ")
        ))?;
        source.push(ledger::record(ns, Some(sa), b_id, false));
    }
    // The target's own tokens (made by --rotate) go with its secret, whoever else reads A.
    for own in reader.tokens {
        if build::dedicated_to(&own) == Some(b_id) && objects::is_managed(&own) {
            source.push(Step::Delete { existing: own });
        }
    }
    Ok(source)
}
