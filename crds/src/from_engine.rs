//! The detection engine's enums as the API's (feature `engine`).
//!
//! The engine knows nothing of Kubernetes, and the orphan rule keeps these `From` impls out of
//! the scanner crate, so they live here, behind an optional dependency on `snapsentry-engine`
//! that only the scanner turns on. Every variant is mapped by name, so a variant added on either
//! side fails to compile here instead of being mapped by accident.

use snapsentry_engine as engine;

use crate::{PackageFacts, PackageFileState, Severity, TargetKind};

impl From<engine::Severity> for Severity {
    fn from(s: engine::Severity) -> Self {
        match s {
            engine::Severity::Info => Severity::Info,
            engine::Severity::Low => Severity::Low,
            engine::Severity::Medium => Severity::Medium,
            engine::Severity::High => Severity::High,
            engine::Severity::Critical => Severity::Critical,
        }
    }
}

impl From<engine::TargetKind> for TargetKind {
    fn from(k: engine::TargetKind) -> Self {
        match k {
            engine::TargetKind::Vm => TargetKind::Vm,
            engine::TargetKind::StorageAccount => TargetKind::StorageAccount,
            engine::TargetKind::SqlDatabase => TargetKind::SqlDatabase,
            engine::TargetKind::Rds => TargetKind::Rds,
            engine::TargetKind::S3Bucket => TargetKind::S3Bucket,
            engine::TargetKind::GcsBucket => TargetKind::GcsBucket,
            engine::TargetKind::Cosmos => TargetKind::Cosmos,
            engine::TargetKind::Registry => TargetKind::Registry,
            engine::TargetKind::Host => TargetKind::Host,
            engine::TargetKind::None => TargetKind::None,
        }
    }
}

impl From<engine::packages::PackageFileState> for PackageFileState {
    fn from(s: engine::packages::PackageFileState) -> Self {
        use engine::packages::PackageFileState as E;
        match s {
            E::Unchanged => PackageFileState::Unchanged,
            E::Modified => PackageFileState::Modified,
            E::Unverified => PackageFileState::Unverified,
            E::Control => PackageFileState::Control,
        }
    }
}

impl From<&engine::packages::PackageFile> for PackageFacts {
    fn from(p: &engine::packages::PackageFile) -> Self {
        PackageFacts {
            name: p.name.clone(),
            version: p.version.clone(),
            state: p.state.into(),
        }
    }
}

/// The value of `metadata.confidence` (`high`, `medium`, `low`) for the engine's confidence.
pub fn confidence_value(c: engine::Confidence) -> &'static str {
    match c {
        engine::Confidence::Low => "low",
        engine::Confidence::Medium => "medium",
        engine::Confidence::High => "high",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every engine severity, in a match that stops compiling when one is added.
    fn all_severities() -> Vec<engine::Severity> {
        use engine::Severity::*;
        let all = vec![Info, Low, Medium, High, Critical];
        for s in &all {
            match s {
                Info | Low | Medium | High | Critical => {}
            }
        }
        all
    }

    fn all_target_kinds() -> Vec<engine::TargetKind> {
        use engine::TargetKind::*;
        let all = vec![
            Vm,
            StorageAccount,
            SqlDatabase,
            Rds,
            S3Bucket,
            GcsBucket,
            Cosmos,
            Registry,
            Host,
            None,
        ];
        for k in &all {
            match k {
                Vm | StorageAccount | SqlDatabase | Rds | S3Bucket | GcsBucket | Cosmos
                | Registry | Host | None => {}
            }
        }
        all
    }

    fn all_confidences() -> Vec<engine::Confidence> {
        use engine::Confidence::*;
        let all = vec![Low, Medium, High];
        for c in &all {
            match c {
                Low | Medium | High => {}
            }
        }
        all
    }

    #[test]
    fn every_severity_maps_to_the_same_name() {
        let mut mapped: Vec<Severity> = all_severities()
            .into_iter()
            .map(|s| {
                let api = Severity::from(s);
                assert_eq!(api.as_str(), s.as_str());
                assert_eq!(
                    serde_json::to_value(api).unwrap(),
                    serde_json::to_value(s).unwrap()
                );
                api
            })
            .collect();
        // Distinct and in the same order: "most severe first" sorts alike on both sides.
        let before = mapped.clone();
        mapped.sort();
        mapped.dedup();
        assert_eq!(mapped, before);
    }

    #[test]
    fn every_target_kind_maps_to_the_same_name() {
        let mut seen = Vec::new();
        for k in all_target_kinds() {
            let api = TargetKind::from(k);
            assert_eq!(
                serde_json::to_value(api).unwrap(),
                serde_json::to_value(k).unwrap()
            );
            assert_eq!(serde_json::to_value(api).unwrap(), api.as_str());
            assert!(!seen.contains(&api), "{api:?} twice");
            seen.push(api);
        }
    }

    #[test]
    fn every_confidence_has_its_serialized_name() {
        for c in all_confidences() {
            assert_eq!(serde_json::to_value(c).unwrap(), confidence_value(c));
        }
    }
}
