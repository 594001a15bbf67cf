//! The Job runner's volumes, as kubelet (and, for block volumes, the CSI driver) would make
//! them: `secret` volumes written into a temporary directory, PersistentVolumeClaims used through
//! `volumeDevices` resolved to a local file, and the paths a process is given rewritten to them.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    PersistentVolume, PersistentVolumeClaim, Secret, SecretVolumeSource,
};
use kube::api::Api;

use super::{GCE_PD_DRIVER, JobRunnerOptions};

/// Mode of a secret volume's files when the volume sets none (kubelet's default).
const SECRET_DEFAULT_MODE: i32 = 0o644;

/// A `secret` volume as kubelet makes it: one file per key of the Secret, with the volume's
/// `defaultMode`, in a new temporary directory. A missing Secret fails the Job (kubelet would
/// keep its pod pending until the deadline) unless the volume is `optional`.
pub(super) async fn secret_volume(
    client: &kube::Client,
    namespace: &str,
    volume: &str,
    source: &SecretVolumeSource,
) -> Result<tempfile::TempDir, String> {
    let name = source.secret_name.as_deref().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|e| format!("secret volume {volume}: reading Secret {namespace}/{name}: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("secret volume {volume}: {e}"))?;
    let Some(secret) = secret else {
        if source.optional == Some(true) {
            return Ok(dir);
        }
        return Err(format!(
            "secret volume {volume}: Secret {namespace}/{name} not found (kubelet would keep the pod pending)"
        ));
    };
    let files = secret
        .data
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, v.0))
        .chain(
            secret
                .string_data
                .into_iter()
                .flatten()
                .map(|(k, v)| (k, v.into_bytes())),
        );
    let mode = source.default_mode.unwrap_or(SECRET_DEFAULT_MODE) as u32;
    for (key, bytes) in files {
        write_file(&dir.path().join(&key), &bytes, mode)
            .map_err(|e| format!("secret volume {volume}: writing key {key}: {e}"))?;
    }
    Ok(dir)
}

/// The local file of the block volume `volume` (claim `claim`), as kubelet and the CSI driver
/// would attach it: the claim must be pre-bound to a PersistentVolume (`spec.volumeName`) whose
/// `claimRef` names it back — what the PersistentVolume controller, which this control plane
/// does not run, would bind — both of `volumeMode: Block`, the volume of the [`GCE_PD_DRIVER`]
/// driver, and its handle known to the resolver.
pub(super) async fn block_device(
    client: &kube::Client,
    options: &JobRunnerOptions,
    namespace: &str,
    volume: &str,
    claim: &str,
) -> Result<PathBuf, String> {
    let fail = |what: String| {
        format!("block volume {volume}: {what} (kubelet would keep the pod pending)")
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = claims
        .get_opt(claim)
        .await
        .map_err(|e| {
            fail(format!(
                "reading PersistentVolumeClaim {namespace}/{claim}: {e}"
            ))
        })?
        .ok_or_else(|| {
            fail(format!(
                "PersistentVolumeClaim {namespace}/{claim} not found"
            ))
        })?;
    let spec = pvc.spec.unwrap_or_default();
    let pv_name = spec.volume_name.ok_or_else(|| {
        fail(format!(
            "PersistentVolumeClaim {namespace}/{claim} is not bound"
        ))
    })?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = volumes
        .get_opt(&pv_name)
        .await
        .map_err(|e| fail(format!("reading PersistentVolume {pv_name}: {e}")))?
        .ok_or_else(|| fail(format!("PersistentVolume {pv_name} not found")))?;
    let pv_spec = pv.spec.unwrap_or_default();
    let bound_back = pv_spec.claim_ref.as_ref().is_some_and(|r| {
        r.namespace.as_deref() == Some(namespace)
            && r.name.as_deref() == Some(claim)
            && (r.uid.is_none() || r.uid == pvc.metadata.uid)
    });
    if !bound_back {
        return Err(fail(format!(
            "PersistentVolume {pv_name} is not bound to PersistentVolumeClaim {namespace}/{claim}"
        )));
    }
    if spec.volume_mode.as_deref() != Some("Block")
        || pv_spec.volume_mode.as_deref() != Some("Block")
    {
        return Err(fail(format!(
            "PersistentVolumeClaim {namespace}/{claim} and PersistentVolume {pv_name} must both be of volumeMode Block"
        )));
    }
    let csi = pv_spec
        .csi
        .ok_or_else(|| fail(format!("PersistentVolume {pv_name} is not a CSI volume")))?;
    if csi.driver != GCE_PD_DRIVER {
        return Err(fail(format!(
            "PersistentVolume {pv_name}: CSI driver {} is not one the Job runner plays",
            csi.driver
        )));
    }
    let resolve = options
        .block_devices
        .as_ref()
        .ok_or_else(|| fail("the Job runner has no block device resolver".to_owned()))?;
    resolve(&csi.volume_handle).ok_or_else(|| {
        fail(format!(
            "PersistentVolume {pv_name}: no disk for volume handle {}",
            csi.volume_handle
        ))
    })
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    std::fs::write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// `"/images/web-01.raw"` → `"/tmp/x/web-01.raw"` inside any value (plain or JSON).
pub(super) fn rewrite_paths(value: &str, mounts: &[(String, String)]) -> String {
    let mut out = value.to_owned();
    for (mount, local) in mounts {
        if out == *mount {
            out = local.clone();
        }
        out = out.replace(&format!("\"{mount}/"), &format!("\"{local}/"));
        if out.starts_with(&format!("{mount}/")) {
            out = format!("{local}{}", &out[mount.len()..]);
        }
    }
    out
}

/// `"/dev/snapsentry/disk-0"` → `"/tmp/x/disk.img"`: a value that is a device path, or a JSON
/// string that is one.
pub(super) fn rewrite_devices(value: &str, devices: &[(String, String)]) -> String {
    let mut out = value.to_owned();
    for (device, local) in devices {
        if out == *device {
            out = local.clone();
        }
        out = out.replace(&format!("\"{device}\""), &format!("\"{local}\""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_a_mount_are_rewritten() {
        let mounts = [("/images".to_owned(), "/tmp/x".to_owned())];
        assert_eq!(
            rewrite_paths(
                r#"{"path":"/images/web-01.raw","other":"/imagesx/a"}"#,
                &mounts
            ),
            r#"{"path":"/tmp/x/web-01.raw","other":"/imagesx/a"}"#
        );
        assert_eq!(rewrite_paths("/images/a.qcow2", &mounts), "/tmp/x/a.qcow2");
        assert_eq!(rewrite_paths("/images", &mounts), "/tmp/x");
    }

    #[test]
    fn device_paths_are_rewritten_whole() {
        let devices = [("/dev/snapsentry/disk-0".to_owned(), "/tmp/d.img".to_owned())];
        assert_eq!(
            rewrite_devices(
                r#"{"devicePath":"/dev/snapsentry/disk-0","x":"/dev/snapsentry/disk-01"}"#,
                &devices
            ),
            r#"{"devicePath":"/tmp/d.img","x":"/dev/snapsentry/disk-01"}"#
        );
        assert_eq!(
            rewrite_devices("/dev/snapsentry/disk-0", &devices),
            "/tmp/d.img"
        );
        assert_eq!(
            rewrite_devices("/dev/snapsentry/disk-0p1", &devices),
            "/dev/snapsentry/disk-0p1"
        );
    }
}
