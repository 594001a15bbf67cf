//! Installation-wide pod settings of scanner Jobs: what the chart's `imagePullSecrets`,
//! `scanner.image.pullPolicy` and
//! `scanner.{nodeSelector,tolerations,affinity,priorityClassName,podAnnotations,podLabels}` give
//! every Job, passed to the operator as one JSON value (`SNAPSENTRY_SCANNER_POD`).
//!
//! A ScanPolicy's `spec.scanner.nodeSelector` and `tolerations` replace the defaults' (a policy
//! that names its own scanner nodes means exactly those); extra labels never replace the
//! operator's own Job labels, which select and own the Job.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, LocalObjectReference, PodSpec, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use snapsentry_crds::ScannerSpec;

/// Pod settings every scanner Job gets unless its policy says otherwise.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScannerPodDefaults {
    /// Pull secrets of the scanner image.
    #[serde(default)]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// The scanner container's `imagePullPolicy` (`Always`, `IfNotPresent`, `Never`); empty or
    /// absent leaves the Kubernetes default.
    #[serde(default)]
    pub image_pull_policy: Option<String>,
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    #[serde(default)]
    pub affinity: Option<Affinity>,
    /// Empty means none.
    #[serde(default)]
    pub priority_class_name: Option<String>,
    /// Annotations of the Job's pods.
    #[serde(default, rename = "podAnnotations")]
    pub annotations: BTreeMap<String, String>,
    /// Extra labels of the Job's pods.
    #[serde(default, rename = "podLabels")]
    pub labels: BTreeMap<String, String>,
}

impl ScannerPodDefaults {
    /// Parses the JSON of `SNAPSENTRY_SCANNER_POD` (an unknown key is an error: a typo would
    /// otherwise be dropped silently).
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Sets the pod's scheduling and pull settings (the pull policy on every container): the
    /// policy's node selector and tolerations where it has them, else these defaults.
    pub fn apply_to_pod(&self, pod: &mut PodSpec, scanner: &ScannerSpec) {
        let node_selector = if scanner.node_selector.is_empty() {
            &self.node_selector
        } else {
            &scanner.node_selector
        };
        let tolerations = if scanner.tolerations.is_empty() {
            &self.tolerations
        } else {
            &scanner.tolerations
        };
        pod.node_selector = (!node_selector.is_empty()).then(|| node_selector.clone());
        pod.tolerations = (!tolerations.is_empty()).then(|| tolerations.clone());
        pod.affinity = self.affinity.clone().filter(|a| *a != Affinity::default());
        pod.priority_class_name = self
            .priority_class_name
            .clone()
            .filter(|name| !name.is_empty());
        pod.image_pull_secrets =
            (!self.image_pull_secrets.is_empty()).then(|| self.image_pull_secrets.clone());
        if let Some(policy) = self.image_pull_policy.as_ref().filter(|p| !p.is_empty()) {
            for container in &mut pod.containers {
                container.image_pull_policy = Some(policy.clone());
            }
        }
    }

    /// Adds the extra labels (never over the Job's own) and annotations to the pod template's
    /// metadata.
    pub fn apply_to_meta(&self, meta: &mut ObjectMeta) {
        if !self.labels.is_empty() {
            let labels = meta.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in &self.labels {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        if !self.annotations.is_empty() {
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .extend(self.annotations.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Container;

    const CHART: &str = r#"{"imagePullSecrets":[{"name":"regcred"}],"imagePullPolicy":"Never",
        "nodeSelector":{"pool":"scan"},"tolerations":[{"key":"scan","operator":"Exists"}],
        "affinity":{"nodeAffinity":{}},"priorityClassName":"low",
        "podAnnotations":{"a":"1"},"podLabels":{"team":"sec","snapsentry.io/policy":"spoof"}}"#;

    #[test]
    fn the_charts_json_and_a_typo() {
        let d = ScannerPodDefaults::from_json(CHART).unwrap();
        assert_eq!(d.image_pull_secrets[0].name, "regcred");
        assert_eq!(d.priority_class_name.as_deref(), Some("low"));
        assert_eq!(
            ScannerPodDefaults::from_json("{}").unwrap(),
            Default::default()
        );
        let e = ScannerPodDefaults::from_json(r#"{"nodeSelektor":{}}"#).unwrap_err();
        assert!(e.to_string().contains("nodeSelektor"), "{e}");
    }

    #[test]
    fn the_policy_wins_for_placement_the_job_for_its_labels() {
        let d = ScannerPodDefaults::from_json(CHART).unwrap();
        let mut pod = PodSpec {
            containers: vec![Container::default()],
            ..Default::default()
        };
        d.apply_to_pod(&mut pod, &ScannerSpec::default());
        assert_eq!(
            pod.containers[0].image_pull_policy.as_deref(),
            Some("Never")
        );
        assert_eq!(pod.node_selector.as_ref().unwrap()["pool"], "scan");
        assert_eq!(pod.tolerations.as_ref().unwrap().len(), 1);
        assert!(pod.affinity.is_some());
        assert_eq!(pod.priority_class_name.as_deref(), Some("low"));
        assert_eq!(pod.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");

        let policy = ScannerSpec {
            node_selector: BTreeMap::from([("zone".into(), "a".into())]),
            ..Default::default()
        };
        d.apply_to_pod(&mut pod, &policy);
        assert_eq!(
            pod.node_selector,
            Some(BTreeMap::from([("zone".into(), "a".into())]))
        );

        let mut meta = ObjectMeta {
            labels: Some(BTreeMap::from([(
                "snapsentry.io/policy".into(),
                "lab".into(),
            )])),
            ..Default::default()
        };
        d.apply_to_meta(&mut meta);
        let labels = meta.labels.unwrap();
        assert_eq!(labels["snapsentry.io/policy"], "lab");
        assert_eq!(labels["team"], "sec");
        assert_eq!(meta.annotations.unwrap()["a"], "1");
    }

    #[test]
    fn no_defaults_change_nothing() {
        let mut pod = PodSpec::default();
        ScannerPodDefaults::default().apply_to_pod(&mut pod, &ScannerSpec::default());
        assert_eq!(pod, PodSpec::default());
        let mut meta = ObjectMeta::default();
        ScannerPodDefaults::default().apply_to_meta(&mut meta);
        assert_eq!(meta, ObjectMeta::default());
    }
}
