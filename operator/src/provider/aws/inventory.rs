//! Pure rules of the AWS inventory: which instances a selector picks, how an EC2 instance becomes
//! an [`InventoryMachine`] (name, platform, disks in attachment order) and whether it is exposed
//! to the internet.
//!
//! Exposure mirrors Microsoft Defender for Cloud's "internet-facing" for EC2: an instance is
//! exposed when it has a public address *and* one of its security groups allows inbound traffic
//! from anywhere on that address family (`0.0.0.0/0` for a public IPv4 or Elastic IP, `::/0` for
//! an IPv6 address). The reasons name both halves.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, Instance, IpPermission, SecurityGroup, Tag};
use snapsentry_crds::{Exposure, InstanceSelector, MachineDisk};

use crate::provider::InventoryMachine;

/// Instance states selected when a selector names none.
pub const DEFAULT_STATES: [&str; 2] = ["running", "stopped"];

/// Tag value in a selector that matches any value.
pub const ANY_VALUE: &str = "*";

/// Server-side filters for DescribeInstances that narrow the listing to what `selector` can
/// select; [`selects`] decides for each instance returned.
pub fn instance_filters(selector: &InstanceSelector) -> Vec<Filter> {
    let mut filters = Vec::new();
    for (key, value) in &selector.tags {
        filters.push(if value == ANY_VALUE {
            Filter::builder().name("tag-key").values(key).build()
        } else {
            Filter::builder()
                .name(format!("tag:{key}"))
                .values(value)
                .build()
        });
    }
    if !selector.ids.is_empty() {
        // A filter, not InstanceIds: an id that does not exist is no error then.
        filters.push(
            Filter::builder()
                .name("instance-id")
                .set_values(Some(selector.ids.clone()))
                .build(),
        );
    }
    filters.push(
        Filter::builder()
            .name("instance-state-name")
            .set_values(Some(states(selector)))
            .build(),
    );
    filters
}

/// The states a selector selects.
pub fn states(selector: &InstanceSelector) -> Vec<String> {
    if selector.states.is_empty() {
        DEFAULT_STATES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        selector.states.clone()
    }
}

/// Tags as a map (a key appears once on an EC2 resource).
pub fn tag_map(tags: &[Tag]) -> BTreeMap<&str, &str> {
    tags.iter()
        .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())))
        .collect()
}

fn tag_matches(tags: &BTreeMap<&str, &str>, key: &str, value: &str) -> bool {
    tags.get(key)
        .is_some_and(|v| value == ANY_VALUE || *v == value)
}

/// Whether `selector` selects an instance with this id, state and tags.
pub fn selects(
    selector: &InstanceSelector,
    id: &str,
    state: Option<&str>,
    tags: &BTreeMap<&str, &str>,
) -> bool {
    let all_tags = selector.tags.iter().all(|(k, v)| tag_matches(tags, k, v));
    let id_ok = selector.ids.is_empty() || selector.ids.iter().any(|i| i == id);
    let state_ok = state.is_some_and(|s| states(selector).iter().any(|x| x == s));
    let excluded = selector
        .exclude_tags
        .iter()
        .any(|(k, v)| tag_matches(tags, k, v));
    all_tags && id_ok && state_ok && !excluded
}

/// `windows` when EC2 says so (`Platform` or `PlatformDetails`), else `linux`.
pub fn platform(instance: &Instance) -> &'static str {
    let windows = instance
        .platform()
        .is_some_and(|p| p.as_str().eq_ignore_ascii_case("windows"))
        || instance
            .platform_details()
            .is_some_and(|d| d.to_ascii_lowercase().contains("windows"));
    if windows { "windows" } else { "linux" }
}

/// The instance's EBS volumes: root device first, then in attachment order (attach time, then
/// device name). `sizes` maps volume ids to bytes where known.
pub fn disks(instance: &Instance, sizes: &BTreeMap<String, u64>) -> Vec<MachineDisk> {
    /// (not the root, attach time, device, volume): sorts root first, then by attachment.
    type Key<'a> = (bool, (i64, u32), &'a str, &'a str);
    let root = instance.root_device_name();
    let mut mapped: Vec<Key<'_>> = instance
        .block_device_mappings()
        .iter()
        .filter_map(|m| {
            let ebs = m.ebs()?;
            let volume = ebs.volume_id()?;
            let device = m.device_name().unwrap_or_default();
            let is_root = root.is_some_and(|r| same_device(r, device));
            let attached = ebs
                .attach_time()
                .map_or((i64::MAX, 0), |t| (t.secs(), t.subsec_nanos()));
            Some((!is_root, attached, device, volume))
        })
        .collect();
    mapped.sort();
    mapped
        .into_iter()
        .map(|(_, _, device, volume)| MachineDisk {
            id: volume.to_owned(),
            device: (!device.is_empty()).then(|| device.to_owned()),
            size_bytes: sizes.get(volume).copied(),
        })
        .collect()
}

/// `/dev/sda1` and `sda1`, `/dev/xvda` and `/dev/sda` name the same root in EC2's answers.
fn same_device(root: &str, device: &str) -> bool {
    let norm = |d: &str| {
        let d = d.trim_start_matches("/dev/");
        let d = d
            .strip_prefix("xvd")
            .map_or(d.to_owned(), |r| format!("sd{r}"));
        d.to_owned()
    };
    norm(root) == norm(device)
}

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

/// The inventory entry for an instance the selector picked.
pub fn machine(
    instance: &Instance,
    region: &str,
    groups: &BTreeMap<String, SecurityGroup>,
    sizes: &BTreeMap<String, u64>,
) -> Option<InventoryMachine> {
    let id = instance.instance_id()?.to_owned();
    let name = tag_map(instance.tags())
        .get("Name")
        .filter(|n| !n.trim().is_empty())
        .map_or_else(|| id.clone(), |n| (*n).to_owned());
    Some(InventoryMachine {
        name,
        region: Some(region.to_owned()),
        platform: Some(platform(instance).to_owned()),
        state: instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned()),
        exposure: exposure(instance, groups),
        disks: disks(instance, sizes),
        id,
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::primitives::DateTime;
    use aws_sdk_ec2::types::{
        EbsInstanceBlockDevice, GroupIdentifier, InstanceBlockDeviceMapping,
        InstanceNetworkInterface, InstanceNetworkInterfaceAssociation, InstanceState,
        InstanceStateName, IpRange, Ipv6Range, PlatformValues,
    };

    use super::*;

    fn selector(
        tags: &[(&str, &str)],
        ids: &[&str],
        states: &[&str],
        ex: &[(&str, &str)],
    ) -> InstanceSelector {
        let map = |v: &[(&str, &str)]| v.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        InstanceSelector {
            tags: map(tags),
            ids: ids.iter().map(|s| (*s).into()).collect(),
            states: states.iter().map(|s| (*s).into()).collect(),
            exclude_tags: map(ex),
        }
    }

    #[test]
    fn selector_matching() {
        let tags = BTreeMap::from([("env", "prod"), ("team", "web"), ("Name", "web-1")]);
        let run = Some("running");
        assert!(selects(&selector(&[], &[], &[], &[]), "i-1", run, &tags));
        assert!(selects(
            &selector(&[("env", "prod")], &[], &[], &[]),
            "i-1",
            run,
            &tags
        ));
        assert!(!selects(
            &selector(&[("env", "dev")], &[], &[], &[]),
            "i-1",
            run,
            &tags
        ));
        assert!(selects(
            &selector(&[("team", "*")], &[], &[], &[]),
            "i-1",
            run,
            &tags
        ));
        assert!(!selects(
            &selector(&[("owner", "*")], &[], &[], &[]),
            "i-1",
            run,
            &tags
        ));
        assert!(!selects(
            &selector(&[("env", "prod"), ("team", "db")], &[], &[], &[]),
            "i-1",
            run,
            &tags
        ));
        // Ids.
        assert!(selects(
            &selector(&[], &["i-2", "i-1"], &[], &[]),
            "i-1",
            run,
            &tags
        ));
        assert!(!selects(
            &selector(&[], &["i-2"], &[], &[]),
            "i-1",
            run,
            &tags
        ));
        // States: running and stopped by default.
        assert!(selects(
            &selector(&[], &[], &[], &[]),
            "i-1",
            Some("stopped"),
            &tags
        ));
        assert!(!selects(
            &selector(&[], &[], &[], &[]),
            "i-1",
            Some("terminated"),
            &tags
        ));
        assert!(!selects(&selector(&[], &[], &[], &[]), "i-1", None, &tags));
        assert!(selects(
            &selector(&[], &[], &["pending"], &[]),
            "i-1",
            Some("pending"),
            &tags
        ));
        assert!(!selects(
            &selector(&[], &[], &["pending"], &[]),
            "i-1",
            run,
            &tags
        ));
        // Exclusions win.
        assert!(!selects(
            &selector(&[("env", "prod")], &[], &[], &[("team", "web")]),
            "i-1",
            run,
            &tags
        ));
        assert!(!selects(
            &selector(&[], &[], &[], &[("team", "*")]),
            "i-1",
            run,
            &tags
        ));
        assert!(selects(
            &selector(&[], &[], &[], &[("team", "db")]),
            "i-1",
            run,
            &tags
        ));
    }

    #[test]
    fn filters_narrow_the_listing() {
        let f = instance_filters(&selector(
            &[("env", "prod"), ("team", "*")],
            &["i-1"],
            &[],
            &[],
        ));
        let named: Vec<(&str, Vec<&str>)> = f
            .iter()
            .map(|f| {
                (
                    f.name().unwrap(),
                    f.values().iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            named,
            [
                ("tag:env", vec!["prod"]),
                ("tag-key", vec!["team"]),
                ("instance-id", vec!["i-1"]),
                ("instance-state-name", vec!["running", "stopped"]),
            ]
        );
    }

    fn mapping(device: &str, volume: &str, attached: i64) -> InstanceBlockDeviceMapping {
        InstanceBlockDeviceMapping::builder()
            .device_name(device)
            .ebs(
                EbsInstanceBlockDevice::builder()
                    .volume_id(volume)
                    .attach_time(DateTime::from_secs(attached))
                    .build(),
            )
            .build()
    }

    #[test]
    fn disks_root_first_then_attachment_order() {
        let instance = Instance::builder()
            .instance_id("i-1")
            .root_device_name("/dev/xvda")
            .block_device_mappings(mapping("/dev/sdg", "vol-late", 200))
            .block_device_mappings(mapping("/dev/sdh", "vol-early", 100))
            .block_device_mappings(mapping("/dev/sdf", "vol-early-f", 100))
            .block_device_mappings(mapping("/dev/sda", "vol-root", 300))
            .build();
        let sizes = BTreeMap::from([("vol-root".to_owned(), 8u64 << 30)]);
        let d = disks(&instance, &sizes);
        let ids: Vec<&str> = d.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["vol-root", "vol-early-f", "vol-early", "vol-late"]);
        assert_eq!(d[0].device.as_deref(), Some("/dev/sda"));
        assert_eq!(d[0].size_bytes, Some(8 << 30));
        assert_eq!(d[1].size_bytes, None);
    }

    #[test]
    fn platform_from_platform_or_details() {
        let w = Instance::builder()
            .platform(PlatformValues::Windows)
            .build();
        assert_eq!(platform(&w), "windows");
        let w = Instance::builder()
            .platform_details("Windows with SQL Server Standard")
            .build();
        assert_eq!(platform(&w), "windows");
        let l = Instance::builder().platform_details("Linux/UNIX").build();
        assert_eq!(platform(&l), "linux");
        assert_eq!(platform(&Instance::builder().build()), "linux");
    }

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

    fn instance(public: Option<&str>, ipv6: Option<&str>, groups: &[&str]) -> Instance {
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

    #[test]
    fn machine_fields() {
        let m = machine(
            &instance(None, None, &[]),
            "eu-west-1",
            &BTreeMap::new(),
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!((m.id.as_str(), m.name.as_str()), ("i-1", "web-1"));
        assert_eq!(m.region.as_deref(), Some("eu-west-1"));
        assert_eq!(m.state.as_deref(), Some("running"));
        assert_eq!(m.platform.as_deref(), Some("linux"));
        let unnamed = Instance::builder().instance_id("i-2").build();
        assert_eq!(
            machine(&unnamed, "r", &BTreeMap::new(), &BTreeMap::new())
                .unwrap()
                .name,
            "i-2"
        );
    }
}
