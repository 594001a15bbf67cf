//! The views of snapsentry's results that people read, as pure functions of a [`Report`]:
//!
//! - [`Summary`]: findings by secret type (most common first), by machine, by cloud and by
//!   severity;
//! - [`Graph`]: the attack graph (internet → exposed machine → secret → target), written as DOT
//!   ([`Graph::dot`]) or drawn as SVG by our own layout ([`Graph::svg`]), no Graphviz needed;
//! - [`html::render`]: one self-contained HTML page (inline CSS and SVG, no script, nothing
//!   fetched) with the summary, the graph, the attack paths and a table per machine.
//!
//! Both the kubectl plugin (from the cluster's objects) and `snapsentry-scan … --format html`
//! (from one disk) build a [`Report`] and render it here. A report never holds a secret value:
//! findings carry at most a redacted prefix and a keyed fingerprint. Everything that came from a
//! disk (paths, type names, user names) is escaped on the way out.

mod escape;
mod graph;
pub mod html;
mod model;
mod summary;
mod svg;

pub use escape::{dot_escape, html_escape};
pub use graph::{Edge, Graph, Node, NodeKind};
pub use model::{Finding, Machine, PathView, Report, Target};
pub use summary::{CloudRow, MachineRow, Summary, TypeRow};
