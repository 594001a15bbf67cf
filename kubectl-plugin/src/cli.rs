//! The command line (`kubectl snapsentry --help`).

use clap::{Parser, Subcommand, ValueEnum};

/// Views of snapsentry's findings: summary, machine, paths, diff, graph, report.
#[derive(Debug, Parser)]
#[command(name = "kubectl-snapsentry", bin_name = "kubectl snapsentry", version)]
pub struct Cli {
    /// Namespace of the objects (default: the kubeconfig context's namespace).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// Only the machines and findings of this ScanPolicy.
    #[arg(long, global = true)]
    pub policy: Option<String>,
    /// Kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Read the objects from this file (`kubectl get sf,sm,ap -o yaml` output, a List or a
    /// multi-document stream) instead of the API server: reports from an export, offline.
    #[arg(long, global = true, value_name = "FILE")]
    pub objects: Option<String>,
    /// What to show.
    #[command(subcommand)]
    pub command: Command,
}

/// The views.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open findings by secret type (most common first), by machine, by cloud and by severity.
    Summary,
    /// One machine: its facts and every finding with its metadata.
    Machine {
        /// ScannedMachine name.
        name: String,
    },
    /// Attack paths as chains: exposed machine → secret → target.
    Paths,
    /// What the latest scan of each machine changed: new, resolved and re-assessed findings.
    Diff,
    /// The attack graph (internet, machines, secrets, targets).
    Graph {
        /// `svg` (drawn without Graphviz) or `dot`.
        #[arg(long, value_enum, default_value_t = GraphFormat::Svg)]
        format: GraphFormat,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<String>,
    },
    /// A self-contained HTML report: summary, attack graph, paths, a table per machine.
    Report {
        /// The HTML file to write (`-` for standard output).
        #[arg(short, long)]
        output: String,
    },
}

/// Formats of `graph`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Scalable Vector Graphics.
    Svg,
    /// Graphviz DOT.
    Dot,
}
