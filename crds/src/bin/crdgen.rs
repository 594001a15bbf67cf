//! Print snapsentry's CustomResourceDefinitions as YAML.
//!
//! `cargo run -p snapsentry-crds --bin crdgen > crds/snapsentry.io_crds.yaml` (or `make crds`,
//! which also refreshes the Helm chart's copy). A test fails when the committed files drift.

fn main() {
    print!("{}", snapsentry_crds::crds_yaml());
}
