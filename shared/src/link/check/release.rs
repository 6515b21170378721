//! Which Istio release a cluster runs, and whether `.global` multicluster still works there
//! (both link modes start their version checks here).

use std::fmt;

use serde_json::Value;

use super::Line;
use crate::objects;

/// An Istio release, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Release(pub u32, pub u32, pub u32);

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// The release of the control plane from its Deployment's image tag (`istio/pilot:1.7.8`,
/// `pilot:1.7.8-distroless`).
pub fn release_of(deployment: &Value) -> Result<Release, String> {
    let images: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|cs| cs.iter().filter_map(|c| c["image"].as_str()).collect())
        .unwrap_or_default();
    let image = images
        .iter()
        .find(|i| i.contains("pilot"))
        .or(images.first())
        .ok_or_else(|| {
            format!(
                "deployment {} has no container image",
                objects::name(deployment)
            )
        })?;
    let tail = image.rsplit('/').next().unwrap_or(image);
    let tag = tail.split_once('@').map_or(tail, |(t, _)| t);
    let tag = tag
        .split_once(':')
        .map(|(_, t)| t)
        .ok_or_else(|| format!("image {image} has no version tag"))?;
    let core = tag.split(['-', '+']).next().unwrap_or(tag);
    let nums: Vec<u32> = core
        .split('.')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| format!("image {image}: tag {tag:?} is not a release version"))?;
    match nums.as_slice() {
        [a, b, c] => Ok(Release(*a, *b, *c)),
        [a, b] => Ok(Release(*a, *b, 0)),
        _ => Err(format!(
            "image {image}: tag {tag:?} is not a release version"
        )),
    }
}

const MODERN: &str = "use multi-primary on separate networks instead: an east-west gateway exposing *.local on 15443 (samples/multicluster/expose-services.yaml) and remote secrets both ways (kubectl mesh-link --mode remote-secret --bidirectional, or istioctl create-remote-secret); callers then use SERVICE.NS.svc.cluster.local";

/// Each context's release, and the `1.8.6 in cluster1, ...` list of them.
pub type Known<'a> = (Vec<(&'a String, Release)>, String);

/// Each context's release and the `1.8.6 in cluster1, ...` list of them, or the failed line of
/// the first context whose release is unknown (both modes' version checks start here).
pub fn known_releases(releases: &[(String, Result<Release, String>)]) -> Result<Known<'_>, Line> {
    let mut found = Vec::new();
    for (ctx, r) in releases {
        match r {
            Err(e) => {
                return Err(Line::fail(format!(
                    "cannot tell the Istio version of {ctx}: {e}"
                )))
            }
            Ok(r) => found.push((ctx, *r)),
        }
    }
    let list = found
        .iter()
        .map(|(c, r)| format!("{r} in {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok((found, list))
}

/// The Istio version line over both clusters' releases.
pub fn version_line(releases: &[(String, Result<Release, String>)]) -> Line {
    let (found, list) = match known_releases(releases) {
        Ok(known) => known,
        Err(line) => return line,
    };
    if let Some((ctx, r)) = found.iter().find(|(_, r)| *r >= Release(1, 8, 6)) {
        return Line::fail(format!(
            "Istio {list}: .global is deprecated since 1.8 and broken from 1.8.6 (istio/istio#32848), and {ctx} runs {r}: {MODERN}"
        ));
    }
    if found.iter().any(|(_, r)| *r >= Release(1, 8, 0)) {
        return Line::ok(format!("Istio {list}: .global still works but is deprecated since 1.8 and breaks from 1.8.6; plan the move: {MODERN}"));
    }
    Line::ok(format!("Istio {list}: .global multicluster is supported"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(image: &str) -> Value {
        json!({"metadata": {"name": "istiod"}, "spec": {"template": {"spec": {"containers": [{"name": "discovery", "image": image}]}}}})
    }

    #[test]
    fn releases_from_images() {
        assert_eq!(
            release_of(&deploy("docker.io/istio/pilot:1.7.8")),
            Ok(Release(1, 7, 8))
        );
        assert_eq!(
            release_of(&deploy("gcr.io/istio-release/pilot:1.5.2-distroless")),
            Ok(Release(1, 5, 2))
        );
        assert_eq!(
            release_of(&deploy("localhost:5000/istio/pilot:1.6")),
            Ok(Release(1, 6, 0))
        );
        assert_eq!(
            release_of(&deploy("istio/pilot:1.4.2@sha256:abc")),
            Ok(Release(1, 4, 2))
        );
        assert!(release_of(&deploy("istio/pilot:latest")).is_err());
        assert!(release_of(&deploy("istio/pilot")).is_err());
        assert!(release_of(&json!({})).is_err());
    }

    fn v(ctx: &str, r: Release) -> (String, Result<Release, String>) {
        (ctx.to_string(), Ok(r))
    }

    #[test]
    fn versions() {
        let l = version_line(&[v("c1", Release(1, 7, 8)), v("c2", Release(1, 6, 14))]);
        assert!(l.ok, "{l}");
        assert_eq!(
            l.to_string(),
            "✔ Istio 1.7.8 in c1, 1.6.14 in c2: .global multicluster is supported"
        );
        let l = version_line(&[v("c1", Release(1, 8, 5)), v("c2", Release(1, 7, 0))]);
        assert!(l.ok && l.text.contains("deprecated"), "{l}");
        let l = version_line(&[v("c1", Release(1, 7, 0)), v("c2", Release(1, 8, 6))]);
        assert!(
            !l.ok
                && l.text.contains("broken from 1.8.6")
                && l.text.contains("create-remote-secret"),
            "{l}"
        );
        let l = version_line(&[v("c1", Release(1, 20, 0)), v("c2", Release(1, 20, 0))]);
        assert!(!l.ok);
        let l = version_line(&[
            ("c1".into(), Err("no istiod".into())),
            v("c2", Release(1, 7, 0)),
        ]);
        assert!(!l.ok && l.text.contains("c1"));
    }
}
