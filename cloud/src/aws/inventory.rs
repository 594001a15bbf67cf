//! The AWS inventory: which instances a selector picks (pure rules, then DescribeInstances), how
//! an EC2 instance becomes an [`InventoryMachine`] (name, platform, disks in attachment order,
//! [exposure](super::exposure)), with its security groups and volume sizes.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{Filter, Instance, SecurityGroup, Tag};
use snapsentry_crds::{InstanceSelector, MachineDisk};

use super::AwsProvider;
use super::clients::{RegionClients, aws_error};
use super::exposure::{exposure, group_ids};
use crate::error::Result;
use crate::{Inventory, InventoryMachine, ProviderContext};

/// Values per DescribeVolumes / DescribeSecurityGroups filter (the API allows 200).
const FILTER_CHUNK: usize = 200;

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
            unsupported: None,
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
        authorized_keys: Vec::new(),
        disks: disks(instance, sizes),
        id,
    })
}

impl AwsProvider {
    /// The selected instances of one region.
    async fn region_machines(&self, rc: &RegionClients) -> Result<Vec<InventoryMachine>> {
        let region = rc.region.as_str();
        let selector = &self.spec.selector;
        let mut instances = Vec::new();
        let mut pages = rc
            .ec2
            .describe_instances()
            .set_filters(Some(instance_filters(selector)))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("DescribeInstances", region, e))?;
            for r in page.reservations() {
                for i in r.instances() {
                    let id = i.instance_id().unwrap_or_default();
                    let state = i.state().and_then(|s| s.name()).map(|n| n.as_str());
                    if selects(selector, id, state, &tag_map(i.tags())) {
                        instances.push(i.clone());
                    }
                }
            }
        }
        if instances.is_empty() {
            return Ok(Vec::new());
        }
        let group_ids: BTreeSet<String> = instances.iter().flat_map(group_ids).collect();
        let groups = self.security_groups(rc, &group_ids).await?;
        let volume_ids: Vec<String> = instances
            .iter()
            .flat_map(|i| i.block_device_mappings())
            .filter_map(|m| m.ebs()?.volume_id().map(str::to_owned))
            .collect();
        let sizes = match self.volume_sizes(rc, &volume_ids).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%region, error = %e, "volume sizes unknown");
                BTreeMap::new()
            }
        };
        let mut machines: Vec<InventoryMachine> = instances
            .iter()
            .filter_map(|i| machine(i, region, &groups, &sizes))
            .collect();
        machines.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(machines)
    }

    async fn security_groups(
        &self,
        rc: &RegionClients,
        ids: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, SecurityGroup>> {
        let ids: Vec<String> = ids.iter().cloned().collect();
        let mut groups = BTreeMap::new();
        for chunk in ids.chunks(FILTER_CHUNK) {
            let mut pages = rc
                .ec2
                .describe_security_groups()
                .filters(
                    Filter::builder()
                        .name("group-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| aws_error("DescribeSecurityGroups", &rc.region, e))?;
                for g in page.security_groups() {
                    if let Some(id) = g.group_id() {
                        groups.insert(id.to_owned(), g.clone());
                    }
                }
            }
        }
        Ok(groups)
    }

    async fn volume_sizes(
        &self,
        rc: &RegionClients,
        ids: &[String],
    ) -> Result<BTreeMap<String, u64>> {
        let mut sizes = BTreeMap::new();
        for chunk in ids.chunks(FILTER_CHUNK) {
            let mut pages = rc
                .ec2
                .describe_volumes()
                .filters(
                    Filter::builder()
                        .name("volume-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| aws_error("DescribeVolumes", &rc.region, e))?;
                for v in page.volumes() {
                    if let (Some(id), Some(gib)) = (v.volume_id(), v.size()) {
                        sizes.insert(id.to_owned(), u64::try_from(gib).unwrap_or(0) << 30);
                    }
                }
            }
        }
        Ok(sizes)
    }

    pub(super) async fn inventory_impl(&self, ctx: &ProviderContext) -> Result<Inventory> {
        let clients = self.clients(ctx).await?;
        let mut machines = Vec::new();
        for rc in &clients.regions {
            machines.extend(self.region_machines(rc).await?);
        }
        let targets = self.targets(&clients).await;
        Ok(Inventory { machines, targets })
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::primitives::DateTime;
    use aws_sdk_ec2::types::{EbsInstanceBlockDevice, InstanceBlockDeviceMapping, PlatformValues};

    use super::super::exposure::tests::instance;
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
