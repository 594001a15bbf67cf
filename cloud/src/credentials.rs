//! What the clouds share in finding a provider's credentials. Each cloud tries its own sources
//! in its own order (see its `clients` module); the first, where the policy names one, is always
//! the policy's `credentialsSecret`, read here. Errors are the cloud's own credentials error,
//! made by the caller's `refused` of a reason that names the Secret, its namespace or a key, never
//! a value.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::ProviderContext;
use crate::error::{Error, Result};

/// The policy's `credentialsSecret` `name`, read from the policy's namespace with the context's
/// Kubernetes client.
pub(crate) async fn policy_secret(
    ctx: &ProviderContext,
    name: &str,
    refused: impl Fn(String) -> Error,
) -> Result<Secret> {
    let client = ctx
        .client
        .clone()
        .ok_or_else(|| refused("no Kubernetes client to read it with".into()))?;
    let api: Api<Secret> = Api::namespaced(client, &ctx.namespace);
    api.get_opt(name)
        .await?
        .ok_or_else(|| refused(format!("not found in namespace {}", ctx.namespace)))
}

/// The value of `key` in a credentials Secret as text, trimmed; `None` when absent or empty.
pub(crate) fn secret_text(
    secret: &Secret,
    key: &str,
    refused: impl Fn(String) -> Error,
) -> Result<Option<String>> {
    let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) else {
        return Ok(None);
    };
    let value = std::str::from_utf8(&bytes.0)
        .map_err(|_| refused(format!("key {key} is not UTF-8")))?
        .trim();
    Ok((!value.is_empty()).then(|| value.to_owned()))
}
