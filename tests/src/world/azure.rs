//! The `azure` provider's side of a world: Azurite holding each VM's disk as a page blob (a fixed
//! VHD), the fake ARM (`tests/azure/fake_arm.py`) holding the fleet around them and handing out
//! SAS URLs to those blobs, and the Secret with the client secret the policies name.
//!
//! The fleet is the demo's three machines (`examples/demo/fleet-images.sh`), laid out as Azure
//! runs them: web-01 (Ubuntu-like, GPT/ext4) exposed through a public IP and an NSG that lets SSH
//! in from `Internet`, db-01 (RHEL-like, XFS in LVM on GPT) and win-01 (MBR/NTFS) private, beside
//! a storage account and an SQL server their secrets open. On top of the demo's secrets, web-01
//! holds an Azure SQL and a storage connection string, db-01 another storage connection string;
//! the SSH key pair of the demo (private key on web-01, authorized on db-01) crosses VMs. Every
//! planted value is fresh. A VM tagged `env: dev` (build-01) stays outside the example policy.
//! The fleet spans the example's two subscriptions: win-01 runs in the second one, where the
//! storage account and SQL server of the first are targets all the same.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::{Cloud, Setup};
use crate::azurite::{self, Azurite, FaultProxy};
use crate::fake_arm::{self, FakeArm, TENANT};
use crate::{random, repo};

/// The subscriptions (the ones `examples/azure/scanpolicy.yaml` names): web-01, db-01 and the
/// data services in the first, win-01 in the second.
pub const SUBSCRIPTIONS: [&str; 2] = [
    "00000000-0000-0000-0000-000000000000",
    "11111111-1111-1111-1111-111111111111",
];
/// The application (client) id of the operator's credentials.
pub const CLIENT_ID: &str = "5e1f0c2a-7d3b-4b8e-9a61-3c2d4e5f6a7b";
/// The Secret holding `clientSecret` (the name the example policy uses).
pub const CREDENTIALS_SECRET: &str = "azure-scanner-credentials";
/// The storage account whose connection string web-01 (exposed) holds.
pub const WEB_STORAGE: &str = "acmewebassets";
/// The storage account whose connection string db-01 (private) holds.
pub const BACKUP_STORAGE: &str = "acmebackups";
/// The Azure SQL server web-01's (and the demo's win-01's) connection strings name.
pub const SQL_SERVER: &str = "orders-sql";
/// web-01's public IP address.
pub const WEB_PUBLIC_IP: &str = "20.61.15.7";
/// Every machine of the fleet, in order.
pub const MACHINES: [&str; 3] = ["web-01", "db-01", "win-01"];
/// The Azurite container of the disks' page blobs.
const CONTAINER: &str = "disks";
/// How long the SAS URLs the fake hands out are valid.
const SAS_LIFETIME: Duration = Duration::from_secs(3600);
/// How long the SAS of [`Options::expires_mid_scan`] is valid: long enough for its scan to start
/// (the Job opens the blob) however busy the machine; its reads are held past it.
pub const MID_SCAN_SAS_LIFETIME: Duration = Duration::from_secs(30);

/// Why the Azure fixture could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Azurite failed.
    #[error(transparent)]
    Azurite(#[from] azurite::Error),
    /// The fake ARM failed.
    #[error(transparent)]
    Arm(#[from] fake_arm::Error),
    /// The world around the fixture failed.
    #[error(transparent)]
    World(#[from] super::Error),
    /// An image tool failed.
    #[error("{what}: {detail}")]
    Images {
        /// What was run.
        what: String,
        /// What went wrong.
        detail: String,
    },
}

fn images_error(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Images {
        what: what.to_owned(),
        detail: e.to_string(),
    }
}

/// The fleet's disk images as fixed VHDs, and every secret value planted on them. Built once
/// and shared by the worlds alive at the same time (they never write to them).
#[derive(Debug)]
pub struct FleetImages {
    dir: tempfile::TempDir,
    /// Every planted secret value (the demo's and the Azure ones), for the never-leak checks.
    pub planted: Vec<String>,
}

impl FleetImages {
    /// The fixed VHD of `machine`.
    pub fn vhd(&self, machine: &str) -> PathBuf {
        self.dir.path().join(format!("{machine}.vhd"))
    }

    /// The fleet's images: the ones another world of this process still holds, or new ones.
    pub fn shared() -> Result<Arc<FleetImages>, Error> {
        static SHARED: Mutex<Weak<FleetImages>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(images) = shared.upgrade() {
            return Ok(images);
        }
        let images = Arc::new(FleetImages::build()?);
        *shared = Arc::downgrade(&images);
        Ok(images)
    }

    /// `fleet-images.sh --lvm --extra` with the Azure secrets, each image then made a fixed VHD
    /// (the footer in its last 512 bytes, the size kept: a multiple of 1 MiB plus 512).
    fn build() -> Result<FleetImages, Error> {
        let dir = tempfile::Builder::new()
            .prefix("snapsentry-azure-fleet-")
            .tempdir()
            .map_err(images_error("a temporary directory"))?;
        let extra = dir.path().join("extra");
        let mut planted = plant_azure_secrets(&extra)?;
        let raw = dir.path().join("raw");
        let out = Command::new(repo().join("examples/demo/fleet-images.sh"))
            .arg("--lvm")
            .arg("--extra")
            .arg(&extra)
            .arg(&raw)
            // The demo's RDS endpoint: no Azure target, a finding all the same.
            .arg("orders.c1snapsentry.us-east-1.rds.amazonaws.com")
            .output()
            .map_err(images_error("examples/demo/fleet-images.sh"))?;
        if !out.status.success() {
            return Err(Error::Images {
                what: "examples/demo/fleet-images.sh".into(),
                detail: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let demo = std::fs::read_to_string(raw.join("planted.txt"))
            .map_err(images_error("reading planted.txt"))?;
        planted.extend(demo.lines().filter(|l| !l.is_empty()).map(str::to_owned));
        for machine in MACHINES {
            let vhd = dir.path().join(format!("{machine}.vhd"));
            let out = Command::new("qemu-img")
                .args(["convert", "-f", "raw", "-O", "vpc"])
                .args(["-o", "subformat=fixed,force_size=on"])
                .arg(raw.join(format!("{machine}.raw")))
                .arg(&vhd)
                .output()
                .map_err(images_error("qemu-img"))?;
            if !out.status.success() {
                return Err(Error::Images {
                    what: format!("qemu-img convert {machine}"),
                    detail: String::from_utf8_lossy(&out.stderr).into_owned(),
                });
            }
        }
        std::fs::remove_dir_all(&raw).map_err(images_error("removing the raw images"))?;
        Ok(FleetImages { dir, planted })
    }
}

/// A storage account key: 64 random bytes, base64 (88 characters).
fn storage_key() -> Result<String, Error> {
    Ok(BASE64.encode(random::bytes(64).map_err(images_error("/dev/urandom"))?))
}

/// A storage account connection string for `account` with `key`.
fn storage_connection_string(account: &str, key: &str) -> String {
    format!(
        "DefaultEndpointsProtocol=https;AccountName={account};AccountKey={key};EndpointSuffix=core.windows.net"
    )
}

/// Writes the Azure secrets into `extra/<machine>/` (the `--extra` trees of fleet-images.sh);
/// returns the planted values.
fn plant_azure_secrets(extra: &Path) -> Result<Vec<String>, Error> {
    let write = |path: &str, text: String| -> Result<(), Error> {
        let path = extra.join(path);
        std::fs::create_dir_all(path.parent().expect("a file under a machine"))
            .map_err(images_error("creating the extra trees"))?;
        std::fs::write(&path, text).map_err(images_error("writing an extra file"))
    };
    let web_key = storage_key()?;
    let backup_key = storage_key()?;
    let sql_password = random::string(random::ALNUM, 22).map_err(images_error("/dev/urandom"))?;
    // web-01's ASP.NET settings: the SQL database and the assets storage account.
    write(
        "web-01/var/www/app/appsettings.Production.json",
        format!(
            "{{\n  \"ConnectionStrings\": {{\n    \"Orders\": \"Server=tcp:{SQL_SERVER}.database.windows.net,1433;\
             Initial Catalog=orders;User ID=orders;Password={sql_password};Encrypt=True;\",\n    \
             \"Assets\": \"{}\"\n  }}\n}}\n",
            storage_connection_string(WEB_STORAGE, &web_key)
        ),
    )?;
    // db-01's nightly backup to blob storage.
    write(
        "db-01/opt/backup/backup.sh",
        format!(
            "#!/bin/sh\nexport AZURE_STORAGE_CONNECTION_STRING=\"{}\"\n\
             az storage blob upload-batch --destination nightly --source /var/backup\n",
            storage_connection_string(BACKUP_STORAGE, &backup_key)
        ),
    )?;
    Ok(vec![web_key, backup_key, sql_password])
}

/// What an Azure world is made of besides its namespace.
#[derive(Clone, Debug)]
pub struct Options {
    /// The fleet's machines that exist (a subset of [`MACHINES`], to keep a test short).
    pub machines: Vec<&'static str>,
    /// The SAS URLs point at a [`FaultProxy`] answering every n-th ranged GET with 503 or 429.
    pub faults_every: Option<u64>,
    /// This machine's disk has a SAS URL valid for [`MID_SCAN_SAS_LIFETIME`], read through a
    /// proxy that holds every ranged GET until it has expired: the blob opens (properties, page
    /// ranges), then its reads are refused.
    pub expires_mid_scan: Option<&'static str>,
    /// Every Job runs this instead of the scanner (`None`: the real scanner).
    pub command: Option<Vec<String>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            machines: MACHINES.to_vec(),
            faults_every: None,
            expires_mid_scan: None,
            command: None,
        }
    }
}

/// The Azure side of a world (see the module documentation).
pub struct Azure {
    /// The blob service holding the disks.
    pub azurite: Azurite,
    /// The fault proxy the SAS URLs point at, when [`Options::faults_every`] asked for one.
    pub proxy: Option<FaultProxy>,
    /// The proxy holding the reads of [`Options::expires_mid_scan`]'s machine.
    pub holding_proxy: Option<FaultProxy>,
    /// The control plane.
    pub arm: FakeArm,
    /// The images and planted values.
    pub images: Arc<FleetImages>,
    /// Each machine's disk SAS URL, as the fake hands it out.
    pub sas_urls: BTreeMap<String, String>,
    /// The operator's client secret.
    pub client_secret: String,
    /// The bearer token the fake issues.
    pub arm_token: String,
}

impl Cloud for Azure {
    fn diagnostics(&self) -> String {
        format!(
            "fake ARM: {}\nAzurite: {}",
            self.arm.log_tail(),
            self.azurite.log_tail()
        )
    }
}

impl Azure {
    /// The fake's snapshots and grants (see [`FakeArm::state`]).
    pub fn state(&self) -> Result<Value, Error> {
        Ok(self.arm.state()?)
    }

    /// The ids of the snapshots the fake holds.
    pub fn snapshots(&self) -> Result<Vec<String>, Error> {
        Ok(self.state()?["snapshots"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// How many snapshot PUTs (creations) the fake answered.
    pub fn snapshot_puts(&self) -> Result<u64, Error> {
        Ok(self.arm.fault_counters()?["snapshots.put"]["calls"]
            .as_u64()
            .unwrap_or(0))
    }

    /// What must never be shown, each with what it is, as the text to look for: the first 12
    /// characters of each planted secret (a value cut or wrapped is still caught), and whole the
    /// SAS URLs' queries and signatures (raw and percent-decoded), the ARM token and the client
    /// secret.
    pub fn never_shown(&self) -> Vec<(String, String)> {
        let mut values: Vec<(String, String)> = self
            .images
            .planted
            .iter()
            .map(|p| ("a planted secret".to_owned(), p.chars().take(12).collect()))
            .collect();
        for (machine, url) in &self.sas_urls {
            if let Some((_, query)) = url.split_once('?') {
                values.push((format!("{machine}'s SAS query"), query.to_owned()));
            }
            if let Some(sig) = url.split("sig=").nth(1) {
                let sig = sig.split('&').next().unwrap_or(sig);
                values.push((format!("{machine}'s SAS signature"), sig.to_owned()));
                values.push((
                    format!("{machine}'s SAS signature, decoded"),
                    percent_decode(sig),
                ));
            }
        }
        values.push(("the ARM token".to_owned(), self.arm_token.clone()));
        values.push(("the client secret".to_owned(), self.client_secret.clone()));
        values
    }
}

/// `%XX` escapes decoded (the SAS signatures' base64 `+`, `/` and `=`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The world's setup: Azurite with the disks of `options.machines` uploaded, the fake ARM with
/// the fleet, the credentials Secret; Jobs run `options.command` (default the real scanner,
/// found on `PATH`) at log level info.
pub fn setup(ns: &str, options: &Options) -> Result<Setup<Azure>, Error> {
    let images = FleetImages::shared()?;
    let azurite = Azurite::start()?;
    azurite.create_container(CONTAINER)?;
    let proxy = options
        .faults_every
        .map(|every| FaultProxy::start(&azurite, every))
        .transpose()?;
    let port = proxy.as_ref().map_or(azurite.port(), FaultProxy::port);
    let mut sas_urls = BTreeMap::new();
    for &machine in &options.machines {
        azurite.upload_page_blob(CONTAINER, &format!("{machine}.vhd"), &images.vhd(machine))?;
    }
    // Signed once the uploads are done, so the short lifetime counts from here.
    let mut holding_proxy = None;
    for &machine in &options.machines {
        let blob = format!("{machine}.vhd");
        let url = if options.expires_mid_scan == Some(machine) {
            let expiry = SystemTime::now() + MID_SCAN_SAS_LIFETIME;
            // Azurite compares whole seconds: hold the reads until a second past the expiry.
            let holding =
                FaultProxy::holding_reads_until(&azurite, expiry + Duration::from_secs(2))?;
            let url = azurite.read_sas_url_on(holding.port(), CONTAINER, &blob, expiry);
            holding_proxy = Some(holding);
            url
        } else {
            azurite.read_sas_url_on(port, CONTAINER, &blob, SystemTime::now() + SAS_LIFETIME)
        };
        sas_urls.insert(machine.to_owned(), url);
    }
    let arm = FakeArm::start()?;
    // The token is the server's for its lifetime: ask for it while no credentials are checked.
    let arm_token = arm.token()?;
    let client_secret = format!(
        "{}~{}",
        random::string(random::ALNUM, 3).map_err(images_error("/dev/urandom"))?,
        random::string(random::ALNUM, 34).map_err(images_error("/dev/urandom"))?
    );
    arm.load_fleet(&fleet_spec(&sas_urls, &client_secret))?;
    let azure = Azure {
        azurite,
        proxy,
        holding_proxy,
        arm,
        images,
        sas_urls,
        client_secret: client_secret.clone(),
        arm_token,
    };
    Ok(Setup::new(ns, azure)
        .secret(CREDENTIALS_SECRET, &[("clientSecret", &client_secret)])
        .command(options.command.clone())
        .env("SNAPSENTRY_LOG", "info"))
}

/// The fake ARM's fleet spec (format on [`FakeArm::load_fleet`]) with the machines of `sas_urls`.
fn fleet_spec(sas_urls: &BTreeMap<String, String>, client_secret: &str) -> Value {
    // A VM of the fleet when its disk is there: (name, OS type, role, private IP, NSG, public IP).
    let vm = |name: &str, os: &str, role: &str, ip: &str, nsg: &str, public: Option<&str>| {
        let url = sas_urls.get(name)?;
        let mut nic = json!({ "name": format!("{name}-nic"), "privateIp": ip, "nsg": nsg });
        if let Some(public) = public {
            nic["publicIp"] = json!({ "name": format!("{name}-ip"), "ip": public });
        }
        Some(json!({
            "name": name, "osType": os, "powerState": "running",
            "tags": { "env": "prod", "role": role },
            "osDisk": { "name": format!("{name}-osdisk"), "sizeGB": 1, "sas": url },
            "nics": [nic],
        }))
    };
    let web_vms: Vec<Value> = vm(
        "web-01",
        "Linux",
        "web",
        "10.1.0.4",
        "web-01-nsg",
        Some(WEB_PUBLIC_IP),
    )
    .into_iter()
    .collect();
    let mut data_vms: Vec<Value> = vm("db-01", "Linux", "database", "10.2.0.4", "data-nsg", None)
        .into_iter()
        .collect();
    let windows_vms: Vec<Value> = vm("win-01", "Windows", "iis", "10.3.0.5", "iis-nsg", None)
        .into_iter()
        .collect();
    // Outside the example policy (env: dev); its disk has no blob: selecting it would fail.
    data_vms.push(json!({
        "name": "build-01", "osType": "Linux", "powerState": "running",
        "tags": { "env": "dev", "role": "ci" },
        "nics": [{ "name": "build-01-nic", "privateIp": "10.2.0.9" }],
    }));
    let endpoints = |account: &str| {
        json!({ "primaryEndpoints": {
            "blob": format!("https://{account}.blob.core.windows.net/"),
            "file": format!("https://{account}.file.core.windows.net/"),
            "queue": format!("https://{account}.queue.core.windows.net/"),
            "table": format!("https://{account}.table.core.windows.net/"),
        }, "provisioningState": "Succeeded" })
    };
    json!({
        "tenant": TENANT,
        "clientId": CLIENT_ID,
        "clientSecret": client_secret,
        "subscriptions": { SUBSCRIPTIONS[0]: { "displayName": "production", "resourceGroups": {
            "rg-web": {
                "location": "westeurope",
                "nsgs": [{ "name": "web-01-nsg", "rules": [
                    { "name": "ssh-from-internet", "port": 22, "source": "Internet",
                      "access": "Allow", "priority": 100, "direction": "Inbound" },
                ]}],
                "vms": web_vms,
            },
            "rg-data": {
                "location": "westeurope",
                "nsgs": [{ "name": "data-nsg", "rules": [
                    { "name": "postgres-from-web", "port": 5432, "source": "10.1.0.0/24",
                      "access": "Allow", "priority": 100, "direction": "Inbound" },
                ]}],
                "vms": data_vms,
                "storageAccounts": [
                    { "name": WEB_STORAGE, "properties": endpoints(WEB_STORAGE) },
                    { "name": BACKUP_STORAGE, "properties": endpoints(BACKUP_STORAGE) },
                ],
                "sqlServers": [{ "name": SQL_SERVER, "properties": {
                    "fullyQualifiedDomainName": format!("{SQL_SERVER}.database.windows.net"),
                    "state": "Ready", "version": "12.0",
                }}],
            },
        }},
        SUBSCRIPTIONS[1]: { "displayName": "windows", "resourceGroups": {
            "rg-data": {
                "location": "northeurope",
                "nsgs": [{ "name": "iis-nsg", "rules": [
                    { "name": "https-from-vnet", "port": 443, "source": "VirtualNetwork",
                      "access": "Allow", "priority": 100, "direction": "Inbound" },
                ]}],
                "vms": windows_vms,
            },
        }}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sas_signatures_are_percent_decoded() {
        assert_eq!(percent_decode("a%2Bb%2F%3D"), "a+b/=");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
