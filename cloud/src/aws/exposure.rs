//! Whether an EC2 instance is exposed to the internet.
//!
//! Exposure mirrors Microsoft Defender for Cloud's "internet-facing" for EC2: an instance is
//! exposed when it has a public address *and* one of its security groups allows inbound traffic
//! from anywhere on that address family (`0.0.0.0/0` for a public IPv4 or Elastic IP, `::/0` for
//! an IPv6 address). The reasons name both halves.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Instance, IpPermission, SecurityGroup};
use snapsentry_crds::Exposure;

/// Security group ids of the instance and its network interfaces.
pub fn group_ids(instance: &Instance) -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = instance
        .security_groups()
        .iter()
        .filter_map(|g| g.group_id().map(str::to_owned))
        .collect();
    for ni in instance.network_interfaces() {
        ids.extend(
            ni.groups()
                .iter()
                .filter_map(|g| g.group_id().map(str::to_owned)),
        );
    }
    ids
}

/// The instance's public addresses, as reason texts: IPv4 (public or Elastic) and IPv6.
fn public_addresses(instance: &Instance) -> (Vec<String>, Vec<String>) {
    let mut v4: Vec<(String, bool)> = Vec::new();
    let mut push_v4 = |ip: &str, elastic: bool| match v4.iter_mut().find(|(a, _)| a == ip) {
        Some(entry) => entry.1 |= elastic,
        None => v4.push((ip.to_owned(), elastic)),
    };
    for ni in instance.network_interfaces() {
        if let Some(a) = ni.association()
            && let Some(ip) = a.public_ip()
        {
            let elastic = a.ip_owner_id().is_some_and(|o| o != "amazon");
            push_v4(ip, elastic);
        }
    }
    if let Some(ip) = instance.public_ip_address() {
        push_v4(ip, false);
    }
    let mut v6: BTreeSet<String> = instance
        .ipv6_address()
        .into_iter()
        .map(str::to_owned)
        .collect();
    for ni in instance.network_interfaces() {
        v6.extend(
            ni.ipv6_addresses()
                .iter()
                .filter_map(|a| a.ipv6_address().map(str::to_owned)),
        );
    }
    let v4 = v4
        .into_iter()
        .map(|(ip, elastic)| {
            if elastic {
                format!("public IPv4 {ip} (Elastic IP)")
            } else {
                format!("public IPv4 {ip}")
            }
        })
        .collect();
    let v6 = v6
        .into_iter()
        .map(|ip| format!("public IPv6 {ip}"))
        .collect();
    (v4, v6)
}

/// `22/tcp`, `1000-2000/udp`, `all ports`, `icmp`.
fn ports(p: &IpPermission) -> String {
    let proto = match p.ip_protocol().unwrap_or("-1") {
        "-1" => return "all ports".to_owned(),
        "6" => "tcp",
        "17" => "udp",
        "1" => "icmp",
        "58" => "icmpv6",
        other => other,
    };
    match (p.from_port(), p.to_port()) {
        _ if proto.starts_with("icmp") => proto.to_owned(),
        (Some(from), Some(to)) if from == to => format!("{from}/{proto}"),
        (Some(0), Some(65535)) | (Some(-1), _) | (None, _) => format!("all {proto} ports"),
        (Some(from), Some(to)) => format!("{from}-{to}/{proto}"),
        (Some(from), None) => format!("{from}/{proto}"),
    }
}

/// Inbound rules of `groups` open to the internet: (IPv4 reasons, IPv6 reasons).
fn open_rules(
    ids: &BTreeSet<String>,
    groups: &BTreeMap<String, SecurityGroup>,
) -> (Vec<String>, Vec<String>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for id in ids {
        let Some(group) = groups.get(id) else {
            continue;
        };
        for p in group.ip_permissions() {
            if p.ip_ranges()
                .iter()
                .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
            {
                v4.push(format!(
                    "security group {id} allows 0.0.0.0/0 on {}",
                    ports(p)
                ));
            }
            if p.ipv6_ranges()
                .iter()
                .any(|r| r.cidr_ipv6() == Some("::/0"))
            {
                v6.push(format!("security group {id} allows ::/0 on {}", ports(p)));
            }
        }
    }
    (v4, v6)
}

/// Whether the instance is internet-facing, and why (empty reasons when it is not).
pub fn exposure(instance: &Instance, groups: &BTreeMap<String, SecurityGroup>) -> Exposure {
    let (addr4, addr6) = public_addresses(instance);
    let (open4, open6) = open_rules(&group_ids(instance), groups);
    let mut reasons = Vec::new();
    if !addr4.is_empty() && !open4.is_empty() {
        reasons.extend(addr4);
        reasons.extend(open4);
    }
    if !addr6.is_empty() && !open6.is_empty() {
        reasons.extend(addr6);
        reasons.extend(open6);
    }
    Exposure {
        internet_facing: !reasons.is_empty(),
        reasons,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use aws_sdk_ec2::types::{
        GroupIdentifier, InstanceNetworkInterface, InstanceNetworkInterfaceAssociation,
        InstanceState, InstanceStateName, IpRange, Ipv6Range, Tag,
    };

    use super::*;

    fn group(id: &str, rules: Vec<IpPermission>) -> (String, SecurityGroup) {
        (
            id.to_owned(),
            SecurityGroup::builder()
                .group_id(id)
                .set_ip_permissions(Some(rules))
                .build(),
        )
    }

    fn rule(proto: &str, from: i32, to: i32, v4: &[&str], v6: &[&str]) -> IpPermission {
        IpPermission::builder()
            .ip_protocol(proto)
            .from_port(from)
            .to_port(to)
            .set_ip_ranges(Some(
                v4.iter()
                    .map(|c| IpRange::builder().cidr_ip(*c).build())
                    .collect(),
            ))
            .set_ipv6_ranges(Some(
                v6.iter()
                    .map(|c| Ipv6Range::builder().cidr_ipv6(*c).build())
                    .collect(),
            ))
            .build()
    }

    pub(in crate::aws) fn instance(
        public: Option<&str>,
        ipv6: Option<&str>,
        groups: &[&str],
    ) -> Instance {
        let mut b = Instance::builder()
            .instance_id("i-1")
            .state(
                InstanceState::builder()
                    .name(InstanceStateName::Running)
                    .build(),
            )
            .tags(Tag::builder().key("Name").value("web-1").build());
        for g in groups {
            b = b.security_groups(GroupIdentifier::builder().group_id(*g).build());
        }
        if let Some(ip) = public {
            b = b.public_ip_address(ip).network_interfaces(
                InstanceNetworkInterface::builder()
                    .association(
                        InstanceNetworkInterfaceAssociation::builder()
                            .public_ip(ip)
                            .ip_owner_id("amazon")
                            .build(),
                    )
                    .build(),
            );
        }
        if let Some(ip) = ipv6 {
            b = b.ipv6_address(ip);
        }
        b.build()
    }

    #[test]
    fn exposure_needs_an_address_and_an_open_rule() {
        let groups: BTreeMap<String, SecurityGroup> = [
            group(
                "sg-open",
                vec![
                    rule("tcp", 22, 22, &["0.0.0.0/0"], &[]),
                    rule("tcp", 443, 443, &["10.0.0.0/8"], &[]),
                ],
            ),
            group("sg-vpc", vec![rule("-1", -1, -1, &["172.31.0.0/16"], &[])]),
            group("sg-v6", vec![rule("tcp", 8000, 8080, &[], &["::/0"])]),
        ]
        .into_iter()
        .collect();
        let open = exposure(&instance(Some("203.0.113.7"), None, &["sg-open"]), &groups);
        assert!(open.internet_facing);
        assert_eq!(
            open.reasons,
            [
                "public IPv4 203.0.113.7",
                "security group sg-open allows 0.0.0.0/0 on 22/tcp"
            ]
        );
        // A public address behind a closed group, an open group without a public address.
        assert_eq!(
            exposure(&instance(Some("203.0.113.7"), None, &["sg-vpc"]), &groups),
            Exposure::default()
        );
        assert_eq!(
            exposure(&instance(None, None, &["sg-open"]), &groups),
            Exposure::default()
        );
        // Families must agree: an IPv4 address with a rule open to ::/0 only is not exposed.
        assert!(
            !exposure(&instance(Some("203.0.113.7"), None, &["sg-v6"]), &groups).internet_facing
        );
        let v6 = exposure(
            &instance(None, Some("2600:1f18::1"), &["sg-v6", "sg-vpc"]),
            &groups,
        );
        assert_eq!(
            v6.reasons,
            [
                "public IPv6 2600:1f18::1",
                "security group sg-v6 allows ::/0 on 8000-8080/tcp"
            ]
        );
        // Elastic IPs are named as such.
        let mut eip = instance(None, None, &["sg-open"]);
        eip.network_interfaces = Some(vec![
            InstanceNetworkInterface::builder()
                .association(
                    InstanceNetworkInterfaceAssociation::builder()
                        .public_ip("198.51.100.4")
                        .ip_owner_id("123456789012")
                        .build(),
                )
                .build(),
        ]);
        let e = exposure(&eip, &groups);
        assert_eq!(e.reasons[0], "public IPv4 198.51.100.4 (Elastic IP)");
        let all = rule("-1", -1, -1, &["0.0.0.0/0"], &[]);
        assert_eq!(ports(&all), "all ports");
        assert_eq!(ports(&rule("udp", 0, 65535, &[], &[])), "all udp ports");
        assert_eq!(ports(&rule("icmp", 8, -1, &[], &[])), "icmp");
    }
}
