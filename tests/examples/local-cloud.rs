//! A local stand-in for a Kubernetes cluster, an AWS account and an Azure subscription, for
//! `make demo`: etcd + kube-apiserver (built by `scripts/toolchain.sh`), moto with the wrapper of
//! `tests/moto/` (AWS), Azurite (Azure's blob data plane) with the fake ARM of `tests/azure/`
//! (Azure's control plane), and the local Job runner playing kubelet + Job controller for one
//! namespace, running each scanner Job's own command (`snapsentry-scan job`, found on `PATH`) as a
//! local process.
//!
//! It installs snapsentry's CRDs, creates the namespace and the fingerprint-key Secret, loads the
//! Azure fleet given as `AZURE_FLEET` into the fake ARM (a fleet spec as documented on
//! `FakeArm::load_fleet`, whose disks name image files as `"image": PATH`: each is uploaded to
//! Azurite as a page blob first), writes `kubeconfig` and `env` (shell `export` lines:
//! `KUBECONFIG`, `MOTO_ENDPOINT`, the moto credentials, `ARM_ENDPOINT`) into the directory given
//! as its first argument, prints `ready`, and runs until its standard input closes or it is
//! interrupted; then everything it started stops.
//!
//! ```text
//! cargo run -p snapsentry-tests --example local-cloud -- DIR [NAMESPACE [AZURE_FLEET]]
//! ```

use std::collections::BTreeMap;
use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use snapsentry_tests::azure_fleet;
use snapsentry_tests::azurite::Azurite;
use snapsentry_tests::controlplane::{ControlPlane, Options};
use snapsentry_tests::fake_arm::FakeArm;
use snapsentry_tests::jobrunner::{JobRunner, JobRunnerOptions};
use snapsentry_tests::moto::Moto;
use snapsentry_tests::{search_path, world};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: local-cloud DIR [NAMESPACE [AZURE_FLEET]]"))?,
    );
    let ns = args.next().unwrap_or_else(|| "snapsentry".to_owned());
    let azure_fleet = args.next().map(PathBuf::from);
    std::fs::create_dir_all(&dir)?;

    let cp = ControlPlane::start().await?;
    let moto = Moto::start()?;
    let azurite = Azurite::start()?;
    let arm = FakeArm::start()?;
    if let Some(path) = &azure_fleet {
        let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
        // The SAS URLs the fake hands out last the demo's whole run.
        azure_fleet::upload_disks(&azurite, &mut spec, Duration::from_secs(24 * 3600))?;
        arm.load_fleet(&spec)?;
    }
    let client = cp.client().await?;
    world::prepare_namespace(&cp, &client, &ns).await?;

    let kubeconfig = dir.join("kubeconfig");
    std::fs::copy(cp.kubeconfig(), &kubeconfig)?;
    let mut env = moto.env();
    env.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
    env.push(("PATH".into(), search_path(&[&Options::default().assets])));
    let mut exports = String::new();
    for (k, v) in env.iter().filter(|(k, _)| k != "PATH") {
        exports.push_str(&format!("export {k}='{v}'\n"));
    }
    exports.push_str(&format!("export MOTO_ENDPOINT='{}'\n", moto.endpoint()));
    exports.push_str(&format!("export ARM_ENDPOINT='{}'\n", arm.endpoint()));
    // kubectl, built with the control plane.
    exports.push_str(&format!(
        "export PATH='{}':\"$PATH\"\n",
        Options::default().assets.display()
    ));
    std::fs::write(dir.join("env"), exports)?;

    let jobs_dir = dir.join("jobs");
    std::fs::create_dir_all(&jobs_dir)?;
    let _runner = JobRunner::start(
        client,
        JobRunnerOptions {
            namespace: ns,
            claims: BTreeMap::new(),
            command: None,
            env,
            log_dir: Some(jobs_dir),
            block_devices: None,
        },
    )?;
    println!("ready");
    std::io::stdout().flush()?;

    // Run until standard input closes (the demo script holds it open) or Ctrl-C.
    let stdin_closed = tokio::task::spawn_blocking(|| {
        for line in std::io::stdin().lock().lines() {
            if line.is_err() {
                break;
            }
        }
    });
    tokio::select! {
        _ = stdin_closed => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
