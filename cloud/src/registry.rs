//! Which cloud serves a `spec.providers[]` entry: the one place that knows every cloud module, so
//! the [`Provider`] trait and the clouds implementing it do not depend on each other.

use snapsentry_crds::ProviderSpec;

use crate::aws::AwsProvider;
use crate::azure::AzureProvider;
use crate::error::{Error, Result};
use crate::gcp::GcpProvider;
use crate::images::ImagesSource;
use crate::provider::Provider;

/// The provider for one `spec.providers[]` entry.
pub fn from_spec(spec: &ProviderSpec) -> Result<Box<dyn Provider>> {
    if let Some(images) = &spec.images {
        return Ok(Box::new(ImagesSource::new(images.clone())));
    }
    if let Some(aws) = &spec.aws {
        return Ok(Box::new(AwsProvider::new(aws.clone())));
    }
    if let Some(azure) = &spec.azure {
        return Ok(Box::new(AzureProvider::new(azure.clone())));
    }
    if let Some(gcp) = &spec.gcp {
        return Ok(Box::new(GcpProvider::new(gcp.clone())));
    }
    Err(Error::Provider {
        provider: "none",
        message: "set exactly one of aws, azure, gcp, images".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use snapsentry_crds::{GcpProvider, ImagesProvider};

    use snapsentry_crds::Cloud;

    use super::*;

    #[test]
    fn providers_from_spec() {
        let images = ProviderSpec {
            aws: None,
            azure: None,
            gcp: None,
            images: Some(ImagesProvider {
                persistent_volume_claim: None,
                machines: vec![],
            }),
        };
        assert_eq!(from_spec(&images).unwrap().cloud(), Cloud::Image);
        let gcp = ProviderSpec {
            images: None,
            gcp: Some(GcpProvider {
                projects: vec!["p".into()],
                zones: vec![],
                credentials_secret: None,
                scanner_zones: vec!["europe-west1-b".into()],
                endpoint_url: None,
                selector: Default::default(),
                snapshot_strategy: None,
            }),
            ..images.clone()
        };
        assert_eq!(from_spec(&gcp).unwrap().cloud(), Cloud::Gcp);
        let aws = ProviderSpec {
            images: None,
            aws: Some(snapsentry_crds::AwsProvider {
                regions: vec!["eu-west-1".into()],
                credentials_secret: None,
                assume_role_arn: None,
                external_id: None,
                endpoint_url: None,
                selector: Default::default(),
                snapshot_strategy: None,
            }),
            ..images.clone()
        };
        assert_eq!(from_spec(&aws).unwrap().cloud(), Cloud::Aws);
        let azure = ProviderSpec {
            aws: None,
            azure: Some(snapsentry_crds::AzureProvider {
                subscriptions: vec!["00000000-0000-0000-0000-000000000001".into()],
                resource_groups: vec![],
                tenant_id: None,
                client_id: None,
                credentials_secret: None,
                arm_endpoint: None,
                authority_host: None,
                selector: Default::default(),
                snapshot_strategy: None,
            }),
            ..aws.clone()
        };
        assert_eq!(from_spec(&azure).unwrap().cloud(), Cloud::Azure);
        let none = ProviderSpec {
            images: None,
            ..images
        };
        assert!(from_spec(&none).is_err());
    }
}
