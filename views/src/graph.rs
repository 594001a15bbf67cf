//! The attack graph: internet → exposed machine → secret → the resource it opens. Nodes are
//! machines holding open findings, those findings, the resources they open (from the operator's
//! assessment and from attack paths) and, when any of those machines is exposed, the internet.

use std::collections::BTreeMap;

use snapsentry_crds::Severity;

use crate::escape::dot_escape;
use crate::model::{Report, Target};

/// Most secret nodes drawn; the worst are kept, the rest counted in [`Graph::omitted`].
pub const MAX_SECRETS: usize = 150;

/// What a node stands for (and the column it is drawn in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeKind {
    /// The internet, pointing at exposed machines.
    Internet,
    /// A machine holding open findings.
    Machine,
    /// One open finding.
    Secret,
    /// A resource a secret opens (a VM target is named by its machine).
    Target,
}

/// One node.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Stable id (`m:<machine>`, `s:<machine>/<finding>`, `t:<kind>:<name>`, `internet`).
    pub id: String,
    /// What it stands for.
    pub kind: NodeKind,
    /// First line (machine name, secret type, target).
    pub label: String,
    /// Second line (cloud, path, kind).
    pub detail: String,
    /// A secret's severity.
    pub severity: Option<Severity>,
    /// A machine reachable from the internet.
    pub exposed: bool,
}

/// One edge, by node index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    /// Index of the source node.
    pub from: usize,
    /// Index of the target node.
    pub to: usize,
    /// A word on the edge (`as bob` for an SSH key's user).
    pub label: Option<String>,
}

/// The attack graph of a report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    /// Nodes, grouped by kind in drawing order.
    pub nodes: Vec<Node>,
    /// Edges, sorted.
    pub edges: Vec<Edge>,
    /// Open findings left out beyond [`MAX_SECRETS`].
    pub omitted: usize,
}

impl Graph {
    /// The graph of a report's open findings and attack paths.
    pub fn of(report: &Report) -> Self {
        let mut g = Graph::default();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let add = |g: &mut Graph, index: &mut BTreeMap<String, usize>, node: Node| -> usize {
            *index.entry(node.id.clone()).or_insert_with(|| {
                g.nodes.push(node);
                g.nodes.len() - 1
            })
        };

        // Secrets to draw: the worst first when there are too many.
        let mut secrets: Vec<(&crate::Machine, &crate::Finding)> = report
            .machines
            .iter()
            .flat_map(|m| {
                m.findings
                    .iter()
                    .filter(|f| f.is_open())
                    .map(move |f| (m, f))
            })
            .collect();
        if secrets.len() > MAX_SECRETS {
            secrets.sort_by_key(|s| std::cmp::Reverse(s.1.severity));
            g.omitted = secrets.len() - MAX_SECRETS;
            secrets.truncate(MAX_SECRETS);
        }
        // Machines exposed first, then by name; their secrets worst first.
        secrets.sort_by(|(ma, fa), (mb, fb)| {
            (
                !ma.exposed,
                &ma.name,
                std::cmp::Reverse(fa.severity),
                &fa.name,
            )
                .cmp(&(
                    !mb.exposed,
                    &mb.name,
                    std::cmp::Reverse(fb.severity),
                    &fb.name,
                ))
        });

        if secrets.iter().any(|(m, _)| m.exposed) {
            add(
                &mut g,
                &mut index,
                Node {
                    id: "internet".to_owned(),
                    kind: NodeKind::Internet,
                    label: "internet".to_owned(),
                    detail: String::new(),
                    severity: None,
                    exposed: false,
                },
            );
        }
        let mut edges = Vec::new();
        for (m, _) in &secrets {
            let at = add(
                &mut g,
                &mut index,
                Node {
                    id: format!("m:{}", m.name),
                    kind: NodeKind::Machine,
                    label: m.name.clone(),
                    detail: if m.exposed {
                        format!("{} · exposed", m.cloud.as_str())
                    } else {
                        m.cloud.as_str().to_owned()
                    },
                    severity: None,
                    exposed: m.exposed,
                },
            );
            if m.exposed {
                edges.push(Edge {
                    from: 0,
                    to: at,
                    label: None,
                });
            }
        }
        let mut secret_at: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (m, f) in &secrets {
            let machine = index[&format!("m:{}", m.name)];
            let path = f
                .locations
                .first()
                .map(|l| l.split_once(':').map_or(l.as_str(), |(_, p)| p))
                .unwrap_or_default();
            let at = add(
                &mut g,
                &mut index,
                Node {
                    id: format!("s:{}/{}", m.name, f.name),
                    kind: NodeKind::Secret,
                    label: f.secret_type.clone(),
                    detail: path.to_owned(),
                    severity: Some(f.severity),
                    exposed: false,
                },
            );
            secret_at.insert((&m.name, &f.name), at);
            edges.push(Edge {
                from: machine,
                to: at,
                label: None,
            });
        }
        let mut target_edges: Vec<(usize, &Target, Option<String>)> = Vec::new();
        for p in &report.paths {
            if let Some(at) = secret_at.get(&(p.entry.as_str(), p.finding.as_str())) {
                target_edges.push((*at, &p.target, p.user.as_ref().map(|u| format!("as {u}"))));
            }
        }
        for (m, f) in &secrets {
            if let Some(t) = &f.target {
                let at = secret_at[&(m.name.as_str(), f.name.as_str())];
                if !target_edges.iter().any(|(s, tt, _)| *s == at && *tt == t) {
                    target_edges.push((at, t, None));
                }
            }
        }
        target_edges.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
        for (secret, target, label) in target_edges {
            let at = add(
                &mut g,
                &mut index,
                Node {
                    id: format!("t:{}:{}", target.kind.as_str(), target.name),
                    kind: NodeKind::Target,
                    label: target.name.clone(),
                    detail: target.kind.as_str().to_owned(),
                    severity: None,
                    exposed: false,
                },
            );
            edges.push(Edge {
                from: secret,
                to: at,
                label,
            });
        }
        edges.sort();
        edges.dedup_by(|a, b| a.from == b.from && a.to == b.to);
        g.edges = edges;
        g
    }

    /// The graph in Graphviz's DOT language (left to right; exposed machines red, secrets
    /// coloured by severity).
    pub fn dot(&self) -> String {
        let mut out = String::from(
            "digraph attack_graph {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n",
        );
        for n in &self.nodes {
            let (shape, color) = match n.kind {
                NodeKind::Internet => ("ellipse", "#c62828"),
                NodeKind::Machine if n.exposed => ("box", "#c62828"),
                NodeKind::Machine => ("box", "#37474f"),
                NodeKind::Secret => ("note", severity_color(n.severity)),
                NodeKind::Target => ("box3d", "#1565c0"),
            };
            let label = if n.detail.is_empty() {
                n.label.clone()
            } else {
                format!("{}\n{}", n.label, n.detail)
            };
            out.push_str(&format!(
                "  \"{}\" [label=\"{}\", shape={shape}, color=\"{color}\"];\n",
                dot_escape(&n.id),
                dot_escape(&label)
            ));
        }
        for e in &self.edges {
            let label = e
                .label
                .as_ref()
                .map(|l| format!(" [label=\"{}\"]", dot_escape(l)))
                .unwrap_or_default();
            out.push_str(&format!(
                "  \"{}\" -> \"{}\"{label};\n",
                dot_escape(&self.nodes[e.from].id),
                dot_escape(&self.nodes[e.to].id)
            ));
        }
        if self.omitted > 0 {
            out.push_str(&format!(
                "  label=\"{} more open finding(s) not drawn\";\n",
                self.omitted
            ));
        }
        out.push_str("}\n");
        out
    }
}

/// Colour of a severity (border of secret nodes, badges in the report).
pub(crate) fn severity_color(s: Option<Severity>) -> &'static str {
    match s {
        Some(Severity::Critical) => "#b71c1c",
        Some(Severity::High) => "#e65100",
        Some(Severity::Medium) => "#f9a825",
        Some(Severity::Low) => "#2e7d32",
        _ => "#607d8b",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::*;

    fn ids(g: &Graph) -> Vec<&str> {
        g.nodes.iter().map(|n| n.id.as_str()).collect()
    }

    fn edge_ids(g: &Graph) -> Vec<(String, String, Option<String>)> {
        g.edges
            .iter()
            .map(|e| {
                (
                    g.nodes[e.from].id.clone(),
                    g.nodes[e.to].id.clone(),
                    e.label.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn internet_machines_secrets_targets() {
        let g = Graph::of(&lab());
        assert_eq!(
            ids(&g),
            [
                "internet",
                "m:lab-web-01",
                "m:lab-app-01",
                "s:lab-web-01/web-key",
                "s:lab-web-01/web-aws",
                "s:lab-app-01/app-aws",
                "s:lab-app-01/app-pw",
                "t:vm:lab-db-01",
                "t:rds:billing.x.eu-west-1.rds.amazonaws.com",
            ]
        );
        let edges = edge_ids(&g);
        for want in [
            ("internet", "m:lab-web-01", None),
            ("m:lab-web-01", "s:lab-web-01/web-key", None),
            ("s:lab-web-01/web-key", "t:vm:lab-db-01", Some("as bob")),
            (
                "s:lab-app-01/app-pw",
                "t:rds:billing.x.eu-west-1.rds.amazonaws.com",
                None,
            ),
        ] {
            let want = (
                want.0.to_owned(),
                want.1.to_owned(),
                want.2.map(str::to_owned),
            );
            assert!(edges.contains(&want), "{want:?} not in {edges:?}");
        }
        // The path's edge and the finding's own target are one edge; the app is not exposed;
        // the resolved token is not drawn.
        assert_eq!(edges.len(), 7, "{edges:?}");
        assert!(!ids(&g).iter().any(|i| i.contains("slack")));
    }

    #[test]
    fn dot_is_escaped_and_complete() {
        let g = Graph::of(&lab());
        let dot = g.dot();
        assert!(dot.starts_with("digraph attack_graph {"));
        assert!(dot.ends_with("}\n"));
        assert_eq!(dot.matches(" -> ").count(), g.edges.len());
        assert!(dot.contains("\"s:lab-web-01/web-key\" -> \"t:vm:lab-db-01\" [label=\"as bob\"];"));
        // Quotes from a disk cannot end a DOT string.
        let mut r = lab();
        r.machines[0].findings[1].locations = vec!["p1:/a\"] ; evil [x=\"".to_owned()];
        let dot = Graph::of(&r).dot();
        assert!(dot.contains("/a\\\"] ; evil [x=\\\""), "{dot}");
    }

    #[test]
    fn too_many_secrets_keep_the_worst() {
        let mut r = lab();
        let many: Vec<_> = (0..MAX_SECRETS + 5)
            .map(|i| {
                finding(
                    &format!("x{i}"),
                    "Generic password",
                    Severity::Low,
                    "active",
                )
            })
            .collect();
        r.machines[2].findings = many;
        let g = Graph::of(&r);
        assert_eq!(g.omitted, 9);
        let secrets = g
            .nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Secret)
            .count();
        assert_eq!(secrets, MAX_SECRETS);
        assert!(ids(&g).contains(&"s:lab-web-01/web-key"));
    }
}
