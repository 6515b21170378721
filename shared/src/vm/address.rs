//! The address a VM reaches istiod through: `--ingress-ip`, else the east-west gateway
//! Service's load-balancer IP, external IP or resolved hostname, polled up to `--wait`.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;

use super::cli::RenewArgs;
use crate::api::Cluster;
use crate::gateway::{self, Found};
use crate::objects;
use crate::Io;

/// Where the gateway address came from, for messages.
pub(super) struct Gateway {
    /// The address.
    pub(super) ip: IpAddr,
    /// Where it came from.
    pub(super) how: String,
}

/// Finds the gateway address, polling up to `--wait`. `Ok(None)` only with `--allow-empty-hosts`.
pub(super) async fn gateway_address(
    cluster: &Cluster,
    renew: &RenewArgs,
    io: &mut Io,
) -> Result<Option<Gateway>> {
    if let Some(ip) = renew.ingress_ip {
        return Ok(Some(Gateway {
            ip,
            how: "from --ingress-ip".into(),
        }));
    }
    let svc_ns = renew
        .ingress_service
        .namespace
        .clone()
        .unwrap_or_else(|| renew.control_plane.istio_namespace.clone());
    let svc_name = renew.ingress_service.name.clone();
    let what = format!("Service {svc_ns}/{svc_name}");
    let deadline = Instant::now() + renew.wait.0;
    let spinner = (io.terminal && renew.wait.0 > Duration::ZERO).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message(format!("waiting for an address on {what}"));
        s.enable_steady_tick(Duration::from_millis(120));
        s
    });
    let result = loop {
        let svc = cluster
            .get(&objects::core("Service"), Some(&svc_ns), &svc_name)
            .await?;
        let why = match look(svc.as_ref(), &what) {
            Ok((gateway, warning)) => {
                if let Some(w) = warning {
                    if let Some(s) = &spinner {
                        s.finish_and_clear();
                    }
                    io.warn(w)?;
                }
                break Ok(gateway);
            }
            Err(why) => why,
        };
        let now = Instant::now();
        if now >= deadline {
            break Err(why);
        }
        tokio::time::sleep((deadline - now).min(Duration::from_secs(1))).await;
    };
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    match result {
        Ok(g) => Ok(Some(g)),
        Err(why) => give_up(renew, &why, io),
    }
}

/// The address Service `what` (`svc`, when it exists) offers, with a warning to print when it
/// is a resolved hostname; else why there is none yet.
fn look(svc: Option<&Value>, what: &str) -> std::result::Result<(Gateway, Option<String>), String> {
    match svc.map(gateway::from_service) {
        Some(Found::LoadBalancerIp(ip)) => Ok((
            Gateway {
                ip,
                how: format!("load-balancer IP of {what}"),
            },
            None,
        )),
        Some(Found::ExternalIp(ip)) => Ok((
            Gateway {
                ip,
                how: format!("external IP of {what}"),
            },
            None,
        )),
        Some(Found::Hostname(h)) => {
            let ip = gateway::resolve(&h)?;
            Ok((
                Gateway {
                    ip,
                    how: format!("{h}, the load-balancer hostname of {what}"),
                },
                Some(format!(
                    "{what} has a load-balancer hostname ({h}), resolved to {ip}; the address may change: keep hosts fresh with `kubectl mesh-vm refresh` (or point the VM's DNS at {h})"
                )),
            ))
        }
        Some(Found::Nothing) => Err(format!(
            "{what} has no load-balancer IP, external IP or hostname yet"
        )),
        None => Err(format!(
            "{what} not found: is the east-west gateway installed? (--ingress-service)"
        )),
    }
}

/// No address by the deadline: a warning and no address with `--allow-empty-hosts`, else the
/// error saying how to get one.
fn give_up(renew: &RenewArgs, why: &str, io: &mut Io) -> Result<Option<Gateway>> {
    if renew.allow_empty_hosts {
        io.warn(format!("{why}; going on without a gateway address (--allow-empty-hosts): the VM cannot reach istiod until its hosts file has one"))?;
        return Ok(None);
    }
    let waited = if renew.wait.0 > Duration::ZERO {
        format!(" after waiting {}", renew.wait)
    } else {
        String::new()
    };
    anyhow::bail!(
        "no address for the VM to reach istiod through{waited}: {why}; wait for one (--wait 5m), give it (--ingress-ip IP), or accept an empty hosts file (--allow-empty-hosts); no file was written"
    )
}
