//! The SDK clients of an [`AwsProvider`] (EC2 and RDS per region, one S3 client), built on first
//! use from the default credential chain or the policy's `credentialsSecret`, optionally
//! exchanged for an assumed role; and how SDK failures become [`Error`]s.

use std::sync::Arc;

use aws_config::{Region, SdkConfig};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use k8s_openapi::api::core::v1::Secret;

use super::AwsProvider;
use super::sdk;
use crate::ProviderContext;
use crate::credentials::{policy_secret, secret_text};
use crate::error::{Error, Result};

/// Keys of a `credentialsSecret`.
pub const ACCESS_KEY_ID_KEY: &str = "accessKeyId";
pub const SECRET_ACCESS_KEY_KEY: &str = "secretAccessKey";
pub const SESSION_TOKEN_KEY: &str = "sessionToken";

/// SDK clients of one provider.
pub(super) struct Clients {
    /// Per region, in the order of `spec.regions`.
    pub(super) regions: Vec<RegionClients>,
    pub(super) s3: aws_sdk_s3::Client,
}

pub(super) struct RegionClients {
    pub(super) region: String,
    pub(super) ec2: aws_sdk_ec2::Client,
    pub(super) rds: aws_sdk_rds::Client,
}

/// An AWS SDK failure as text: the operation, its error code and message (never credentials).
pub(super) fn aws_error<E, R>(operation: &str, region: &str, e: SdkError<E, R>) -> Error
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    Error::Aws {
        operation: operation.to_owned(),
        region: region.to_owned(),
        code: e.code().map(str::to_owned),
        message: DisplayErrorContext(&e).to_string(),
    }
}

pub(super) fn provider_error(message: impl Into<String>) -> Error {
    Error::Provider {
        provider: "aws",
        message: message.into(),
    }
}

/// Static credentials from a `credentialsSecret`'s data. Errors name the Secret and the key,
/// never a value.
pub fn secret_credentials(secret: &Secret) -> Result<aws_sdk_ec2::config::Credentials> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let refused = |reason: String| Error::AwsCredentials {
        secret: name.clone(),
        reason,
    };
    let get = |key: &str| secret_text(secret, key, refused);
    let required = |key: &str| -> Result<String> {
        get(key)?.ok_or_else(|| refused(format!("key {key} is missing or empty")))
    };
    Ok(aws_sdk_ec2::config::Credentials::new(
        required(ACCESS_KEY_ID_KEY)?,
        required(SECRET_ACCESS_KEY_KEY)?,
        get(SESSION_TOKEN_KEY)?,
        None,
        "snapsentry-credentials-secret",
    ))
}

impl AwsProvider {
    pub(super) async fn clients(&self, ctx: &ProviderContext) -> Result<Arc<Clients>> {
        self.clients
            .get_or_try_init(|| async { self.build_clients(ctx).await.map(Arc::new) })
            .await
            .cloned()
    }

    async fn build_clients(&self, ctx: &ProviderContext) -> Result<Clients> {
        let first = self
            .spec
            .regions
            .first()
            .ok_or_else(|| provider_error("spec.providers[].aws.regions is empty"))?;
        let mut loader = sdk::loader(first);
        if let Some(url) = &self.spec.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(name) = &self.spec.credentials_secret {
            let secret = policy_secret(ctx, name, |reason| Error::AwsCredentials {
                secret: name.clone(),
                reason,
            })
            .await?;
            loader = loader.credentials_provider(secret_credentials(&secret)?);
        }
        let mut base: SdkConfig = loader.load().await;
        if let Some(role) = &self.spec.assume_role_arn {
            let provider =
                sdk::assume_role(&base, role, self.spec.external_id.as_deref(), "snapsentry").await;
            base = base
                .into_builder()
                .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                    provider,
                ))
                .build();
        }
        let regions = self
            .spec
            .regions
            .iter()
            .map(|r| RegionClients {
                region: r.clone(),
                ec2: aws_sdk_ec2::Client::from_conf(
                    aws_sdk_ec2::config::Builder::from(&base)
                        .region(Region::new(r.clone()))
                        .build(),
                ),
                rds: aws_sdk_rds::Client::from_conf(
                    aws_sdk_rds::config::Builder::from(&base)
                        .region(Region::new(r.clone()))
                        .build(),
                ),
            })
            .collect();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&base)
                .force_path_style(self.spec.endpoint_url.is_some())
                .build(),
        );
        Ok(Clients { regions, s3 })
    }

    pub(super) fn region<'c>(
        &self,
        clients: &'c Clients,
        region: Option<&str>,
    ) -> Result<&'c RegionClients> {
        let region = region
            .or_else(|| self.spec.regions.first().map(String::as_str))
            .unwrap_or_default();
        clients
            .regions
            .iter()
            .find(|r| r.region == region)
            .ok_or_else(|| {
                provider_error(format!("region {region} is not in the policy's regions"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        crate::testing::secret("aws-creds", pairs)
    }

    #[test]
    fn credentials_from_a_secret() {
        use aws_sdk_ec2::config::Credentials;
        let c: Credentials = secret_credentials(&secret(&[
            ("accessKeyId", "AKIAEXAMPLEEXAMPLE01"),
            ("secretAccessKey", "s3cr3t-value\n"),
            ("sessionToken", "tok"),
        ]))
        .unwrap();
        assert_eq!(c.access_key_id(), "AKIAEXAMPLEEXAMPLE01");
        assert_eq!(c.secret_access_key(), "s3cr3t-value");
        assert_eq!(c.session_token(), Some("tok"));
        let c = secret_credentials(&secret(&[
            ("accessKeyId", "AKIAEXAMPLEEXAMPLE01"),
            ("secretAccessKey", "s3cr3t-value"),
        ]))
        .unwrap();
        assert_eq!(c.session_token(), None);
        let e = secret_credentials(&secret(&[("accessKeyId", "AKIAEXAMPLEEXAMPLE01")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "AWS credentials Secret aws-creds: key secretAccessKey is missing or empty"
        );
        assert!(!e.contains("AKIA"), "{e}");
    }
}
