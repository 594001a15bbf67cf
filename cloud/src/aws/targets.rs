//! Target resources of the AWS inventory: RDS instance and cluster endpoints, S3 buckets.

use snapsentry_crds::TargetKind;

use super::AwsProvider;
use super::clients::{Clients, RegionClients, aws_error};
use crate::TargetInventory;
use crate::error::Result;

impl AwsProvider {
    /// RDS instance and cluster endpoints of one region.
    async fn rds_endpoints(&self, rc: &RegionClients) -> Result<Vec<String>> {
        let mut hosts = Vec::new();
        let mut pages = rc.rds.describe_db_instances().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("DescribeDBInstances", &rc.region, e))?;
            for db in page.db_instances() {
                if let Some(a) = db.endpoint().and_then(|e| e.address()) {
                    hosts.push(a.to_owned());
                }
            }
        }
        let mut pages = rc.rds.describe_db_clusters().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| aws_error("DescribeDBClusters", &rc.region, e))?;
            for c in page.db_clusters() {
                hosts.extend(c.endpoint().map(str::to_owned));
                hosts.extend(c.reader_endpoint().map(str::to_owned));
                hosts.extend(c.custom_endpoints().iter().cloned());
            }
        }
        Ok(hosts)
    }

    async fn buckets(&self, clients: &Clients) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut pages = clients.s3.list_buckets().into_paginator().send();
        while let Some(page) = pages.next().await {
            let region = self.spec.regions.first().map_or("", String::as_str);
            let page = page.map_err(|e| aws_error("ListBuckets", region, e))?;
            names.extend(
                page.buckets()
                    .iter()
                    .filter_map(|b| b.name().map(str::to_owned)),
            );
        }
        Ok(names)
    }

    pub(super) async fn targets(&self, clients: &Clients) -> TargetInventory {
        let mut targets = TargetInventory::default();
        let mut rds_complete = true;
        for rc in &clients.regions {
            match self.rds_endpoints(rc).await {
                Ok(hosts) => hosts
                    .iter()
                    .for_each(|h| targets.insert(TargetKind::Rds, h)),
                Err(e) => {
                    rds_complete = false;
                    tracing::warn!(region = %rc.region, error = %e, "RDS endpoints unknown");
                }
            }
        }
        if rds_complete {
            targets.complete_for.insert(TargetKind::Rds);
        }
        match self.buckets(clients).await {
            Ok(names) => {
                names
                    .iter()
                    .for_each(|n| targets.insert(TargetKind::S3Bucket, n));
                targets.complete_for.insert(TargetKind::S3Bucket);
            }
            Err(e) => tracing::warn!(error = %e, "S3 buckets unknown"),
        }
        targets
    }
}
