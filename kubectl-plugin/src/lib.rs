//! `kubectl snapsentry`: the views of snapsentry's findings that `kubectl get` tables cannot
//! give — findings counted by secret type, machine, cloud and severity (`summary`), one
//! machine's inventory of secrets (`machine`), attack paths as chains (`paths`), what the latest
//! scan changed (`diff`), the attack graph as SVG or DOT (`graph`) and a self-contained HTML
//! report (`report`). It only reads: SecretFindings, ScannedMachines and AttackPaths, through the
//! kubeconfig `kubectl` uses, or from a file of exported objects (`--objects`). See
//! docs/plugin.md.

pub mod cli;
pub mod convert;
pub mod diff;
pub mod fleet;
pub mod text;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server or the kubeconfig.
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// The kubeconfig could not be read.
    #[error("reading the kubeconfig: {0}")]
    Config(#[from] kube::config::KubeconfigError),
    /// The cluster configuration could not be inferred.
    #[error("finding the cluster: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    /// Writing the output.
    #[error("writing {path}: {source}")]
    Write {
        /// File written.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// `--objects FILE` could not be read or parsed.
    #[error("reading objects from {path}: {reason}")]
    Objects {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// `machine NAME` names no ScannedMachine.
    #[error("no ScannedMachine {name:?} in {scope}")]
    NoMachine {
        /// The name asked for.
        name: String,
        /// Namespace or "all namespaces".
        scope: String,
    },
}
