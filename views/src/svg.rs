//! Drawing the attack graph as SVG with a layout of our own: four columns (internet, machines,
//! secrets, targets), nodes ordered so edges cross little (targets at the mean height of the
//! secrets pointing at them), edges as curves with arrowheads. No Graphviz, no script.

use crate::escape::html_escape;
use crate::graph::{Graph, NodeKind, severity_color};

/// Width of each column's nodes.
const WIDTHS: [f64; 4] = [90.0, 220.0, 250.0, 250.0];
/// Space between columns.
const GAP: f64 = 70.0;
/// Height of one node and of one row.
const NODE_H: f64 = 40.0;
const ROW_H: f64 = 54.0;
const MARGIN: f64 = 16.0;

fn column(kind: NodeKind) -> usize {
    match kind {
        NodeKind::Internet => 0,
        NodeKind::Machine => 1,
        NodeKind::Secret => 2,
        NodeKind::Target => 3,
    }
}

/// `s` cut to `n` characters with an ellipsis.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let keep: String = s.chars().take(n.saturating_sub(1)).collect();
        format!("{keep}…")
    }
}

impl Graph {
    /// The graph drawn as a standalone SVG document (also valid inline in HTML).
    pub fn svg(&self) -> String {
        // Rows: every column in node order, targets re-ordered by their sources' mean row.
        let mut rows: [Vec<usize>; 4] = Default::default();
        for (i, n) in self.nodes.iter().enumerate() {
            rows[column(n.kind)].push(i);
        }
        let mut row_of = vec![0.0f64; self.nodes.len()];
        for col in &rows[..3] {
            for (r, i) in col.iter().enumerate() {
                row_of[*i] = r as f64;
            }
        }
        let mean_source = |i: usize| {
            let sources: Vec<f64> = self
                .edges
                .iter()
                .filter(|e| e.to == i)
                .map(|e| row_of[e.from])
                .collect();
            sources.iter().sum::<f64>() / sources.len().max(1) as f64
        };
        let mut targets: Vec<(f64, usize)> =
            rows[3].iter().map(|i| (mean_source(*i), *i)).collect();
        targets.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        rows[3] = targets.into_iter().map(|(_, i)| i).collect();

        let used: Vec<usize> = (0..4).filter(|c| !rows[*c].is_empty()).collect();
        let tallest = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let height =
            MARGIN * 2.0 + tallest as f64 * ROW_H + if self.omitted > 0 { 20.0 } else { 0.0 };
        let mut x_of_col = [0.0f64; 4];
        let mut x = MARGIN;
        for c in &used {
            x_of_col[*c] = x;
            x += WIDTHS[*c] + GAP;
        }
        let width = (x - GAP + MARGIN).max(200.0);
        let mut pos = vec![(0.0f64, 0.0f64); self.nodes.len()];
        for c in &used {
            let col = &rows[*c];
            let top = MARGIN + (tallest - col.len()) as f64 * ROW_H / 2.0;
            for (r, i) in col.iter().enumerate() {
                pos[*i] = (x_of_col[*c], top + r as f64 * ROW_H);
            }
        }

        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"attack-graph\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"Helvetica, Arial, sans-serif\" role=\"img\" aria-label=\"Attack graph\">\n\
             <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#78909c\"/></marker></defs>\n\
             <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
        );
        if self.nodes.is_empty() {
            out.push_str(
                "<text x=\"16\" y=\"40\" font-size=\"13\" fill=\"#546e7a\">No open finding: nothing to draw.</text>\n",
            );
        }
        for e in &self.edges {
            let (fx, fy) = pos[e.from];
            let (tx, ty) = pos[e.to];
            let from_w = WIDTHS[column(self.nodes[e.from].kind)];
            let (sx, sy) = (fx + from_w, fy + NODE_H / 2.0);
            let (ex, ey) = (tx, ty + NODE_H / 2.0);
            let bend = ((ex - sx) / 2.0).max(30.0);
            out.push_str(&format!(
                "<path class=\"edge\" d=\"M{sx:.1},{sy:.1} C{:.1},{sy:.1} {:.1},{ey:.1} {ex:.1},{ey:.1}\" fill=\"none\" stroke=\"#90a4ae\" stroke-width=\"1.4\" marker-end=\"url(#arrow)\"/>\n",
                sx + bend,
                ex - bend
            ));
            if let Some(label) = &e.label {
                out.push_str(&format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#455a64\" text-anchor=\"middle\">{}</text>\n",
                    (sx + ex) / 2.0,
                    (sy + ey) / 2.0 - 4.0,
                    html_escape(&cut(label, 24))
                ));
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            let (x, y) = pos[i];
            let w = WIDTHS[column(n.kind)];
            let (fill, stroke, rx) = match n.kind {
                NodeKind::Internet => ("#ffebee", "#c62828", 20.0),
                NodeKind::Machine if n.exposed => ("#fff3f0", "#c62828", 4.0),
                NodeKind::Machine => ("#eceff1", "#37474f", 4.0),
                NodeKind::Secret => ("#fffde7", severity_color(n.severity), 2.0),
                NodeKind::Target => ("#e3f2fd", "#1565c0", 8.0),
            };
            let kind = match n.kind {
                NodeKind::Internet => "internet",
                NodeKind::Machine => "machine",
                NodeKind::Secret => "secret",
                NodeKind::Target => "target",
            };
            // About 7.5 px per character of 12 px bold text, 8 px of padding each side.
            let chars = ((w - 16.0) / 7.5) as usize;
            let full = if n.detail.is_empty() {
                n.label.clone()
            } else {
                format!("{} — {}", n.label, n.detail)
            };
            out.push_str(&format!(
                "<g class=\"node {kind}\"><title>{}</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.0}\" height=\"{NODE_H:.0}\" rx=\"{rx}\" fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"{}\"/>",
                html_escape(&full),
                if n.exposed || n.kind == NodeKind::Secret { 2 } else { 1 }
            ));
            let label_y = if n.detail.is_empty() {
                y + 24.0
            } else {
                y + 17.0
            };
            out.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{label_y:.1}\" font-size=\"12\" font-weight=\"bold\" fill=\"#263238\">{}</text>",
                x + 8.0,
                html_escape(&cut(&n.label, chars))
            ));
            if !n.detail.is_empty() {
                out.push_str(&format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#546e7a\">{}</text>",
                    x + 8.0,
                    y + 32.0,
                    html_escape(&cut(&n.detail, chars + 4))
                ));
            }
            out.push_str("</g>\n");
        }
        if self.omitted > 0 {
            out.push_str(&format!(
                "<text x=\"16\" y=\"{:.0}\" font-size=\"11\" fill=\"#546e7a\">{} more open finding(s) not drawn</text>\n",
                height - 10.0,
                self.omitted
            ));
        }
        out.push_str("</svg>\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::*;

    #[test]
    fn one_group_per_node_one_path_per_edge_all_inside() {
        let g = Graph::of(&lab());
        let svg = g.svg();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(svg.matches("<g class=\"node ").count(), g.nodes.len());
        assert_eq!(svg.matches("<path class=\"edge\"").count(), g.edges.len());
        assert_eq!(svg.matches("<g class=\"node machine\"").count(), 2);
        assert!(svg.contains(">as bob</text>"));
        // Every rectangle lies inside the drawing.
        let dims = |attr: &str| -> f64 {
            let at = svg.find(&format!("{attr}=\"")).unwrap() + attr.len() + 2;
            svg[at..svg[at..].find('"').unwrap() + at].parse().unwrap()
        };
        let (width, height) = (dims("width"), dims("height"));
        for rect in svg.split("<rect x=\"").skip(1) {
            let num = |s: &str| -> f64 { s[..s.find('"').unwrap()].parse().unwrap() };
            let x = num(rect);
            let y = num(&rect[rect.find("y=\"").unwrap() + 3..]);
            let w = num(&rect[rect.find("width=\"").unwrap() + 7..]);
            assert!(x >= 0.0 && y >= 0.0 && x + w <= width && y + NODE_H <= height);
        }
    }

    #[test]
    fn text_from_a_disk_is_escaped() {
        let svg = Graph::of(&lab()).svg();
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;"));
    }

    #[test]
    fn an_empty_graph_says_so() {
        let svg = Graph::default().svg();
        assert!(svg.contains("No open finding"));
        assert!(svg.ends_with("</svg>\n"));
    }
}
