//! What the views show: machines, their findings and the attack paths between them. Built by the
//! kubectl plugin from the cluster's objects and by the scanner CLI from one disk's report.

use snapsentry_crds::{Cloud, Severity, TargetKind};

/// Everything one report shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Heading of the page ("snapsentry — namespace lab").
    pub title: String,
    /// When the report was made (RFC 3339).
    pub generated_at: String,
    /// Machines, each with its findings.
    pub machines: Vec<Machine>,
    /// Attack paths (entry machine → secret → target).
    pub paths: Vec<PathView>,
}

/// One machine (or one disk image) and what was found on it.
#[derive(Clone, Debug, PartialEq)]
pub struct Machine {
    /// ScannedMachine name (or the image's name).
    pub name: String,
    /// Its cloud.
    pub cloud: Cloud,
    /// Facts to show beside the name, in order: ("instance", "i-0abc…"), ("region", …),
    /// ("last scan", …), ("coverage", …).
    pub facts: Vec<(String, String)>,
    /// Reachable from the internet.
    pub exposed: bool,
    /// Why it is reachable.
    pub exposure_reasons: Vec<String>,
    /// `complete`, `1/2 volumes`, or `None` when unknown.
    pub coverage: Option<String>,
    /// Its findings, every state.
    pub findings: Vec<Finding>,
}

/// One secret found on one machine (never its value).
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// SecretFinding name (or a stable id for one disk).
    pub name: String,
    /// Rule id (`aws-access-key`).
    pub rule_id: String,
    /// Secret type in words ("AWS access key").
    pub secret_type: String,
    /// Assessed severity (the rule's when not assessed).
    pub severity: Severity,
    /// `active`, `resolved`, `accepted` or `false-positive`.
    pub state: String,
    /// `verified`, `unverified`, `not-applicable`, when assessed.
    pub verification: Option<String>,
    /// What the secret opens, when known.
    pub target: Option<Target>,
    /// `volume:path:line` of the locations shown (at most 20).
    pub locations: Vec<String>,
    /// Number of locations, including those not shown.
    pub location_count: u32,
    /// At most 4 leading characters and the length (`AKIA…(20)`).
    pub redacted: String,
    /// `hmac-sha256:<hex>`.
    pub fingerprint: String,
    /// When a scan first saw it (RFC 3339).
    pub first_seen: Option<String>,
    /// Scan id that last saw it.
    pub scan_id: Option<String>,
    /// First seen by the latest scan of its machine.
    pub new: bool,
    /// 0–100, when assessed.
    pub risk_score: Option<u32>,
    /// Further facts, in order: ("expires", …), ("ssh", "ssh-ed25519 SHA256:…"), ("confidence", …).
    pub facts: Vec<(String, String)>,
}

impl Finding {
    /// Still open: active and not triaged away.
    pub fn is_open(&self) -> bool {
        self.state == "active"
    }
}

/// A resource a secret opens.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// What kind of resource.
    pub kind: TargetKind,
    /// ScannedMachine name for a VM, else the resource name.
    pub name: String,
}

impl Target {
    /// `kind name`, as the views print it (`vm lab-db-01`, `rds billing.c1…`).
    pub fn label(&self) -> String {
        format!("{} {}", self.kind.as_str(), self.name)
    }
}

/// One attack path: entry machine → secret → target.
#[derive(Clone, Debug, PartialEq)]
pub struct PathView {
    /// The path in words (Defender's title).
    pub title: String,
    /// How bad it is.
    pub risk: Severity,
    /// Entry ScannedMachine.
    pub entry: String,
    /// The entry machine is reachable from the internet.
    pub exposed: bool,
    /// Why it is reachable.
    pub exposure_reasons: Vec<String>,
    /// SecretFinding the path goes through.
    pub finding: String,
    /// Its secret type in words.
    pub secret_type: String,
    /// Path of the secret on the entry machine.
    pub secret_path: String,
    /// Where it leads.
    pub target: Target,
    /// For SSH: the user whose `authorized_keys` holds the key.
    pub user: Option<String>,
}

impl PathView {
    /// The chain in one line: `[internet →] web-01 → SSH private key (/home/a/.ssh/id) → vm db-01 (as bob)`.
    pub fn chain(&self) -> String {
        let mut s = String::new();
        if self.exposed {
            s.push_str("internet → ");
        }
        s.push_str(&self.entry);
        s.push_str(&format!(
            " → {} ({}) → {}",
            self.secret_type,
            self.secret_path,
            self.target.label()
        ));
        if let Some(u) = &self.user {
            s.push_str(&format!(" (as {u})"));
        }
        s
    }
}

/// Severities from worst to least.
pub(crate) const SEVERITIES: [Severity; 5] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
    Severity::Info,
];

/// A small lab for the views' tests: web-01 (AWS, exposed) holds an SSH key that db-01
/// authorizes and an AWS key; app-01 (Azure, not fully scanned) holds an AWS key, a password in
/// a file whose name is markup, and a resolved token; db-01 holds nothing.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    pub fn finding(name: &str, secret_type: &str, severity: Severity, state: &str) -> Finding {
        Finding {
            name: name.to_owned(),
            rule_id: secret_type.to_ascii_lowercase().replace(' ', "-"),
            secret_type: secret_type.to_owned(),
            severity,
            state: state.to_owned(),
            verification: Some("unverified".to_owned()),
            target: None,
            locations: vec![format!("disk0/p1:/srv/{name}:1")],
            location_count: 1,
            redacted: "abcd…(20)".to_owned(),
            fingerprint: format!("hmac-sha256:{name}"),
            first_seen: Some("2026-12-01T03:00:00Z".to_owned()),
            scan_id: Some("20261201-030000".to_owned()),
            new: false,
            risk_score: Some(50),
            facts: Vec::new(),
        }
    }

    pub fn machine(name: &str, cloud: Cloud, exposed: bool, findings: Vec<Finding>) -> Machine {
        Machine {
            name: name.to_owned(),
            cloud,
            facts: vec![("instance".to_owned(), format!("i-{name}"))],
            exposed,
            exposure_reasons: if exposed {
                vec!["public IPv4 203.0.113.7".to_owned()]
            } else {
                Vec::new()
            },
            coverage: Some("complete".to_owned()),
            findings,
        }
    }

    pub fn lab() -> Report {
        let mut key = finding("web-key", "SSH private key", Severity::Critical, "active");
        key.target = Some(Target {
            kind: TargetKind::Vm,
            name: "lab-db-01".to_owned(),
        });
        key.verification = Some("verified".to_owned());
        key.locations = vec!["disk0/p1:/home/alice/.ssh/id_ed25519:1".to_owned()];
        let web_aws = finding("web-aws", "AWS access key", Severity::High, "active");
        let mut app_aws = finding("app-aws", "AWS access key", Severity::High, "active");
        app_aws.new = true;
        let mut password = finding("app-pw", "Generic password", Severity::Medium, "active");
        password.locations = vec!["disk0/p1:/srv/app/<script>alert(1)</script>.env:2".to_owned()];
        password.target = Some(Target {
            kind: TargetKind::Rds,
            name: "billing.x.eu-west-1.rds.amazonaws.com".to_owned(),
        });
        let token = finding("app-slack", "Slack token", Severity::Low, "resolved");
        let mut app = machine(
            "lab-app-01",
            Cloud::Azure,
            false,
            vec![app_aws, password, token],
        );
        app.coverage = Some("1/2 volumes".to_owned());
        Report {
            title: "snapsentry — lab".to_owned(),
            generated_at: "2026-12-01T04:00:00Z".to_owned(),
            machines: vec![
                machine("lab-web-01", Cloud::Aws, true, vec![key, web_aws]),
                app,
                machine("lab-db-01", Cloud::Aws, false, Vec::new()),
            ],
            paths: vec![PathView {
                title: "Exposed EC2 instance has an SSH private key that is used to authenticate to an EC2 instance".to_owned(),
                risk: Severity::Critical,
                entry: "lab-web-01".to_owned(),
                exposed: true,
                exposure_reasons: vec!["public IPv4 203.0.113.7".to_owned()],
                finding: "web-key".to_owned(),
                secret_type: "SSH private key".to_owned(),
                secret_path: "/home/alice/.ssh/id_ed25519".to_owned(),
                target: Target {
                    kind: TargetKind::Vm,
                    name: "lab-db-01".to_owned(),
                },
                user: Some("bob".to_owned()),
            }],
        }
    }
}
