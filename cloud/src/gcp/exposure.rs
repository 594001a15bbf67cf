//! Whether a Compute Engine instance is reachable from the internet, and why: an external IPv4
//! (`ONE_TO_ONE_NAT` access config) or IPv6 address, and an enabled ingress `allow` firewall
//! rule of its network open to `0.0.0.0/0` or `::/0` that applies to it (no target tags or
//! service accounts: every instance; else one of its network tags or its service account), not
//! overridden by a `deny` rule of higher priority (a lower number) that applies to it as widely.

use serde_json::Value;
use snapsentry_crds::Exposure;

/// The sources that mean "anyone".
const OPEN_RANGES: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// The last path segments of a resource link from `projects/` on
/// (`https://…/compute/v1/projects/p/global/networks/n` → `projects/p/global/networks/n`).
pub fn resource_path(link: &str) -> &str {
    link.find("projects/").map_or(link, |i| &link[i..])
}

/// What of an instance decides its exposure.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceNetwork {
    /// Network paths (`projects/p/global/networks/default`) of its interfaces.
    pub networks: Vec<String>,
    /// External addresses, as reasons (`external IPv4 203.0.113.7`).
    pub external: Vec<String>,
    /// Network tags.
    pub tags: Vec<String>,
    /// Service account emails.
    pub service_accounts: Vec<String>,
}

impl InstanceNetwork {
    /// Reads an instance body.
    pub fn of(instance: &Value) -> Self {
        let mut n = InstanceNetwork::default();
        for nic in instance["networkInterfaces"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(net) = nic["network"].as_str() {
                n.networks.push(resource_path(net).to_owned());
            }
            for ac in nic["accessConfigs"].as_array().into_iter().flatten() {
                if let Some(ip) = ac["natIP"].as_str().filter(|ip| !ip.is_empty()) {
                    n.external.push(format!("external IPv4 {ip}"));
                }
            }
            for ac in nic["ipv6AccessConfigs"].as_array().into_iter().flatten() {
                if let Some(ip) = ac["externalIpv6"].as_str().filter(|ip| !ip.is_empty()) {
                    n.external.push(format!("external IPv6 {ip}"));
                }
            }
        }
        n.tags = strings(&instance["tags"]["items"]);
        n.service_accounts = instance["serviceAccounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["email"].as_str().map(str::to_owned))
            .collect();
        n
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// One (protocol, ports) entry of a rule's `allowed` or `denied`.
fn entries(rule: &Value, field: &str) -> Vec<(String, Vec<String>)> {
    rule[field]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["IPProtocol"].as_str().unwrap_or("all").to_lowercase(),
                strings(&e["ports"]),
            )
        })
        .collect()
}

/// The open source ranges of an enabled ingress rule of one of `net`'s networks that applies to
/// the instance; empty when the rule does not apply.
fn open_sources(rule: &Value, net: &InstanceNetwork) -> Vec<String> {
    let ingress = rule["direction"].as_str().unwrap_or("INGRESS") == "INGRESS";
    let enabled = !rule["disabled"].as_bool().unwrap_or(false);
    let on_network = rule["network"]
        .as_str()
        .is_some_and(|n| net.networks.iter().any(|m| m == resource_path(n)));
    if !(ingress && enabled && on_network) {
        return Vec::new();
    }
    let target_tags = strings(&rule["targetTags"]);
    let target_accounts = strings(&rule["targetServiceAccounts"]);
    let applies = (target_tags.is_empty() && target_accounts.is_empty())
        || target_tags.iter().any(|t| net.tags.contains(t))
        || target_accounts
            .iter()
            .any(|a| net.service_accounts.contains(a));
    if !applies {
        return Vec::new();
    }
    strings(&rule["sourceRanges"])
        .into_iter()
        .filter(|r| OPEN_RANGES.contains(&r.as_str()))
        .collect()
}

fn priority(rule: &Value) -> i64 {
    rule["priority"].as_i64().unwrap_or(1000)
}

/// Whether a deny entry covers an allow entry (the same protocol and at least its ports).
fn covers(deny: &(String, Vec<String>), allow: &(String, Vec<String>)) -> bool {
    (deny.0 == "all" || deny.0 == allow.0)
        && (deny.1.is_empty()
            || (!allow.1.is_empty() && allow.1.iter().all(|p| deny.1.contains(p))))
}

/// `proto:ports` as a reason names it (`tcp:22`, `all`).
fn describe(entry: &(String, Vec<String>)) -> String {
    if entry.1.is_empty() {
        entry.0.clone()
    } else {
        format!("{}:{}", entry.0, entry.1.join(","))
    }
}

/// The exposure of an instance with `net` under the project's `firewalls`.
pub fn exposure(net: &InstanceNetwork, firewalls: &[Value]) -> Exposure {
    if net.external.is_empty() {
        return Exposure::default();
    }
    let mut open = Vec::new();
    for rule in firewalls {
        let sources = open_sources(rule, net);
        if sources.is_empty() {
            continue;
        }
        for allow in entries(rule, "allowed") {
            let denied = firewalls.iter().any(|d| {
                priority(d) < priority(rule)
                    && open_sources(d, net).iter().any(|s| sources.contains(s))
                    && entries(d, "denied").iter().any(|e| covers(e, &allow))
            });
            if !denied {
                open.push(format!(
                    "firewall rule {} allows {} on {}",
                    rule["name"].as_str().unwrap_or("?"),
                    sources.join(", "),
                    describe(&allow)
                ));
            }
        }
    }
    if open.is_empty() {
        return Exposure::default();
    }
    let mut reasons = net.external.clone();
    reasons.extend(open);
    Exposure {
        internet_facing: true,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn instance(tags: &[&str], external: bool) -> InstanceNetwork {
        let mut nic = json!({"network": "https://x/compute/v1/projects/p/global/networks/default"});
        if external {
            nic["accessConfigs"] = json!([{"type": "ONE_TO_ONE_NAT", "natIP": "203.0.113.7"}]);
        }
        InstanceNetwork::of(&json!({
            "networkInterfaces": [nic],
            "tags": {"items": tags},
            "serviceAccounts": [{"email": "vm@p.iam.gserviceaccount.com"}],
        }))
    }

    fn rule(name: &str, extra: Value) -> Value {
        let mut r = json!({"name": name, "network": "projects/p/global/networks/default",
            "direction": "INGRESS", "priority": 1000, "sourceRanges": ["0.0.0.0/0"],
            "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    }

    #[test]
    fn an_external_ip_and_an_open_rule_that_applies() {
        let open = rule("ssh", json!({}));
        let e = exposure(&instance(&[], true), std::slice::from_ref(&open));
        assert!(e.internet_facing);
        assert_eq!(
            e.reasons,
            [
                "external IPv4 203.0.113.7",
                "firewall rule ssh allows 0.0.0.0/0 on tcp:22"
            ]
        );
        // No external address, or no open rule: not facing.
        assert!(!exposure(&instance(&[], false), std::slice::from_ref(&open)).internet_facing);
        assert!(!exposure(&instance(&[], true), &[]).internet_facing);
        let internal = rule("int", json!({"sourceRanges": ["10.0.0.0/8"]}));
        assert!(!exposure(&instance(&[], true), &[internal]).internet_facing);
    }

    #[test]
    fn targets_networks_directions_and_denies() {
        let tagged = rule("web", json!({"targetTags": ["web"]}));
        assert!(!exposure(&instance(&[], true), std::slice::from_ref(&tagged)).internet_facing);
        assert!(exposure(&instance(&["web"], true), &[tagged]).internet_facing);
        let by_account = rule(
            "sa",
            json!({"targetServiceAccounts": ["vm@p.iam.gserviceaccount.com"]}),
        );
        assert!(exposure(&instance(&[], true), &[by_account]).internet_facing);
        for off in [
            json!({"network": "projects/p/global/networks/other"}),
            json!({"direction": "EGRESS"}),
            json!({"disabled": true}),
        ] {
            assert!(!exposure(&instance(&[], true), &[rule("x", off)]).internet_facing);
        }
        let open = rule("ssh", json!({}));
        let deny = |priority: i64, proto: &str| {
            rule(
                "deny",
                json!({"priority": priority, "allowed": null,
                       "denied": [{"IPProtocol": proto}]}),
            )
        };
        let vm = instance(&[], true);
        assert!(!exposure(&vm, &[open.clone(), deny(900, "all")]).internet_facing);
        assert!(!exposure(&vm, &[open.clone(), deny(900, "tcp")]).internet_facing);
        assert!(exposure(&vm, &[open.clone(), deny(900, "udp")]).internet_facing);
        assert!(exposure(&vm, &[open, deny(1100, "all")]).internet_facing);
    }
}
