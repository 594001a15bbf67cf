//! The committed CRD YAML must be exactly what `crdgen` prints (regenerate with `make crds`).

use std::path::Path;

#[test]
fn committed_crd_yaml_matches_crdgen() {
    let want = snapsentry_crds::crds_yaml();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for file in [
        "crds/snapsentry.io_crds.yaml",
        "charts/snapsentry/crds/crds.yaml",
    ] {
        let got = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e} (run `make crds`)"));
        assert!(
            got == want,
            "{file} differs from `crdgen` output: run `make crds` and commit"
        );
    }
}

#[test]
fn every_kind_is_namespaced_in_the_snapsentry_category_with_status() {
    for crd in snapsentry_crds::all_crds() {
        assert_eq!(crd.spec.group, "snapsentry.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["snapsentry".to_string()][..])
        );
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(
            v.additional_printer_columns
                .as_ref()
                .is_some_and(|c| c.len() >= 4),
            "{}",
            crd.spec.names.kind
        );
    }
}
