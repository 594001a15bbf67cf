//! Reading what the views need from the API server: the SecretFindings, ScannedMachines and
//! AttackPaths of a namespace (or all), optionally of one policy — from the API server or from a
//! file of exported objects.

use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::Deserialize as _;
use snapsentry_crds::{AttackPath, ScannedMachine, SecretFinding};

use crate::Error;

/// The objects of one scope.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    /// ScannedMachines, by name.
    pub machines: Vec<ScannedMachine>,
    /// SecretFindings, by name.
    pub findings: Vec<SecretFinding>,
    /// AttackPaths, by name.
    pub paths: Vec<AttackPath>,
}

/// Where to read.
#[derive(Clone, Debug)]
pub struct Scope {
    /// A namespace, or `None` for every namespace.
    pub namespace: Option<String>,
    /// Only this policy's objects.
    pub policy: Option<String>,
}

impl Scope {
    /// "namespace lab", "all namespaces", with the policy when one is given.
    pub fn describe(&self) -> String {
        let ns = self
            .namespace
            .as_ref()
            .map_or_else(|| "all namespaces".to_owned(), |n| format!("namespace {n}"));
        match &self.policy {
            Some(p) => format!("{ns}, policy {p}"),
            None => ns,
        }
    }
}

async fn list<K>(client: &Client, scope: &Scope) -> Result<Vec<K>, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = match &scope.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    Ok(api.list(&ListParams::default()).await?.items)
}

impl Fleet {
    /// Read the objects of `text` (YAML or JSON: a `List`, a multi-document stream, or both),
    /// keeping those in `scope`; other kinds are ignored.
    pub fn parse(text: &str, scope: &Scope) -> Result<Self, String> {
        let mut fleet = Fleet::default();
        let mut docs = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(text) {
            let v = serde_json::Value::deserialize(doc).map_err(|e| e.to_string())?;
            match v.get("items").and_then(serde_json::Value::as_array) {
                Some(items) => docs.extend(items.iter().cloned()),
                None if v.is_null() => {}
                None => docs.push(v),
            }
        }
        for v in docs {
            let kind = v
                .get("kind")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("")
                .to_owned();
            let name = v
                .pointer("/metadata/name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("?")
                .to_owned();
            let ns = v
                .pointer("/metadata/namespace")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            if scope.namespace.is_some() && ns != scope.namespace {
                continue;
            }
            let bad = |e: serde_json::Error| format!("{kind} {name}: {e}");
            match kind.as_str() {
                "ScannedMachine" => fleet.machines.push(serde_json::from_value(v).map_err(bad)?),
                "SecretFinding" => fleet.findings.push(serde_json::from_value(v).map_err(bad)?),
                "AttackPath" => fleet.paths.push(serde_json::from_value(v).map_err(bad)?),
                _ => {}
            }
        }
        fleet.keep_policy(scope);
        Ok(fleet)
    }

    fn keep_policy(&mut self, scope: &Scope) {
        if let Some(p) = &scope.policy {
            self.machines.retain(|m| &m.spec.policy == p);
            self.findings.retain(|f| &f.spec.policy == p);
            self.paths.retain(|a| &a.spec.policy == p);
        }
    }

    /// Read a scope's objects.
    pub async fn load(client: &Client, scope: &Scope) -> Result<Self, Error> {
        let mut fleet = Fleet {
            machines: list(client, scope).await?,
            findings: list(client, scope).await?,
            paths: list(client, scope).await?,
        };
        fleet.keep_policy(scope);
        Ok(fleet)
    }
}
