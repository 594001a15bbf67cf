//! AWS SDK configuration shared by both sides: every client of the control plane (EC2, RDS, S3)
//! and of the data plane (EBS direct) is built from a [`loader`] and, for cross-account access,
//! an [`assume_role`] credentials provider.

use aws_config::sts::AssumeRoleProvider;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

/// The SDK configuration loader for `region`: default credential chain (environment, web
/// identity, profile, container, instance metadata) unless the caller sets a provider, and the
/// HTTPS client of every AWS call — hyper on rustls with the ring crypto provider, the one kube
/// already uses (the SDK's default TLS stack is off in this workspace).
pub(crate) fn loader(region: &str) -> ConfigLoader {
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https)
        .region(Region::new(region.to_owned()))
}

/// Credentials of `role`, assumed (and refreshed) with the credentials of `base` through STS in
/// `base`'s region and at its endpoint; `external_id` as the role's trust policy requires.
pub(crate) async fn assume_role(
    base: &SdkConfig,
    role: &str,
    external_id: Option<&str>,
    session_name: &str,
) -> AssumeRoleProvider {
    let mut builder = AssumeRoleProvider::builder(role)
        .session_name(session_name)
        .configure(base);
    if let Some(id) = external_id {
        builder = builder.external_id(id);
    }
    builder.build().await
}
