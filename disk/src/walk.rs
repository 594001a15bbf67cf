//! Walk every node of a [`Filesystem`], hostile-input safe.
//!
//! The walk owns recursion so that no filesystem reader has to: it builds `/`-separated absolute
//! paths, never follows symlinks, refuses to enter a directory twice (a corrupt or malicious
//! directory graph may contain cycles), and stops at depth, entry-count and name-length limits. A
//! directory that cannot be read is reported and skipped; the rest of the volume is still walked.

use std::collections::HashSet;
use std::ops::ControlFlow;

use crate::fs::{FileKind, Filesystem, Metadata, NodeId};
use crate::{DiskError, Result};

/// Bounds on a walk, so a hostile filesystem cannot make it run forever or fill memory.
#[derive(Clone, Debug)]
pub struct WalkLimits {
    /// Deepest directory nesting entered; deeper directories are reported as errors.
    pub max_depth: usize,
    /// Most nodes visited in one volume (files, directories, links together).
    pub max_nodes: u64,
    /// Longest path (bytes) reported; longer paths are reported as errors.
    pub max_path_len: usize,
}

impl Default for WalkLimits {
    fn default() -> Self {
        WalkLimits {
            max_depth: 256,
            max_nodes: 20_000_000,
            max_path_len: 16 * 1024,
        }
    }
}

/// One node found by the walk.
#[derive(Clone, Debug)]
pub struct WalkEntry {
    /// Absolute path inside the filesystem, `/`-separated (the root itself is not reported).
    pub path: String,
    /// The node, for [`crate::Filesystem::open`] and friends.
    pub node: NodeId,
    /// Its metadata.
    pub metadata: Metadata,
    /// For symlinks, the stored target (not followed).
    pub link_target: Option<String>,
}

/// A problem met during the walk that did not stop it.
#[derive(Debug)]
pub struct WalkError {
    /// Path of the directory or node concerned.
    pub path: String,
    /// What went wrong there.
    pub error: DiskError,
}

/// What a finished walk reports besides the entries it handed out.
#[derive(Debug, Default)]
pub struct WalkSummary {
    /// Nodes visited.
    pub nodes: u64,
    /// Problems met on the way, in walk order.
    pub errors: Vec<WalkError>,
    /// True when `max_nodes` was hit and the walk stopped early.
    pub truncated: bool,
}

/// Most errors kept in a [`WalkSummary`]; a shredded filesystem could otherwise produce one per node.
const MAX_ERRORS: usize = 1000;

/// Walk `fs` depth-first from its root, calling `visit` for every node except the root.
/// `visit` may return `ControlFlow::Break(())` to stop early.
///
/// Fails only when the root itself cannot be read; everything below is best effort and
/// recorded in the summary.
pub fn walk(
    fs: &dyn Filesystem,
    limits: &WalkLimits,
    mut visit: impl FnMut(WalkEntry) -> ControlFlow<()>,
) -> Result<WalkSummary> {
    let mut summary = WalkSummary::default();
    let root = fs.root();
    let mut entered: HashSet<NodeId> = HashSet::new();
    entered.insert(root);
    // Read the root eagerly: a volume whose root is unreadable is a failed volume.
    let root_entries = fs.read_dir(root)?;
    // Stack of (directory path, depth, entries still to visit).
    let mut stack: Vec<(String, usize, std::vec::IntoIter<crate::fs::DirEntry>)> =
        vec![(String::new(), 0, root_entries.into_iter())];

    let record = |summary: &mut WalkSummary, path: String, error: DiskError| {
        if summary.errors.len() < MAX_ERRORS {
            summary.errors.push(WalkError { path, error });
        }
    };

    while let Some((dir_path, depth, entries)) = stack.last_mut() {
        let Some(entry) = entries.next() else {
            stack.pop();
            continue;
        };
        let (dir_path, depth) = (dir_path.clone(), *depth);
        if entry.name.is_empty() || entry.name.contains(['/', '\0']) {
            record(
                &mut summary,
                dir_path.clone(),
                DiskError::corrupt("directory entry", "empty name or name with '/' or NUL"),
            );
            continue;
        }
        let path = format!("{dir_path}/{}", entry.name);
        if path.len() > limits.max_path_len {
            record(
                &mut summary,
                dir_path,
                DiskError::Limit("path too long".into()),
            );
            continue;
        }
        summary.nodes += 1;
        if summary.nodes > limits.max_nodes {
            summary.truncated = true;
            record(
                &mut summary,
                path,
                DiskError::Limit(format!("more than {} nodes", limits.max_nodes)),
            );
            break;
        }
        let metadata = match fs.metadata(entry.node) {
            Ok(m) => m,
            Err(error) => {
                record(&mut summary, path, error);
                continue;
            }
        };
        let kind = metadata.kind;
        let link_target = if kind == FileKind::Symlink {
            match fs.read_link(entry.node) {
                Ok(t) => Some(t),
                Err(error) => {
                    record(&mut summary, path.clone(), error);
                    None
                }
            }
        } else {
            None
        };
        let node = entry.node;
        let flow = visit(WalkEntry {
            path: path.clone(),
            node,
            metadata,
            link_target,
        });
        if flow.is_break() {
            break;
        }
        if kind != FileKind::Dir {
            continue;
        }
        if depth + 1 > limits.max_depth {
            record(
                &mut summary,
                path,
                DiskError::Limit(format!("deeper than {}", limits.max_depth)),
            );
            continue;
        }
        if !entered.insert(node) {
            record(
                &mut summary,
                path,
                DiskError::corrupt("directory", "directory cycle"),
            );
            continue;
        }
        match fs.read_dir(node) {
            Ok(children) => stack.push((path, depth + 1, children.into_iter())),
            Err(error) => record(&mut summary, path, error),
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{DirEntry, FileContent};
    use std::collections::HashMap;

    /// A filesystem made of a map, able to express cycles and broken nodes.
    struct MapFs {
        dirs: HashMap<NodeId, Vec<(String, NodeId)>>,
        kinds: HashMap<NodeId, FileKind>,
    }

    impl Filesystem for MapFs {
        fn kind(&self) -> &'static str {
            "map"
        }
        fn label(&self) -> Option<String> {
            None
        }
        fn root(&self) -> NodeId {
            1
        }
        fn read_dir(&self, dir: NodeId) -> Result<Vec<DirEntry>> {
            let d = self
                .dirs
                .get(&dir)
                .ok_or_else(|| DiskError::NotFound(format!("dir {dir}")))?;
            Ok(d.iter()
                .map(|(n, id)| DirEntry {
                    name: n.clone(),
                    node: *id,
                    kind: None,
                })
                .collect())
        }
        fn metadata(&self, node: NodeId) -> Result<Metadata> {
            let k = self
                .kinds
                .get(&node)
                .ok_or_else(|| DiskError::corrupt("inode", "bad"))?;
            Ok(Metadata::new(*k, 0))
        }
        fn open(&self, _: NodeId) -> Result<Box<dyn FileContent + '_>> {
            Err(DiskError::NotFound("no content".into()))
        }
        fn read_link(&self, _: NodeId) -> Result<String> {
            Ok("/target".into())
        }
    }

    #[test]
    fn cycles_bad_nodes_and_names_are_reported_not_fatal() {
        let mut dirs = HashMap::new();
        dirs.insert(
            1,
            vec![
                ("a".into(), 2),
                ("bad".into(), 9),
                ("x/y".into(), 3),
                ("l".into(), 4),
            ],
        );
        dirs.insert(2, vec![("loop".into(), 1), ("f".into(), 3)]);
        let kinds = HashMap::from([
            (1, FileKind::Dir),
            (2, FileKind::Dir),
            (3, FileKind::File),
            (4, FileKind::Symlink),
        ]);
        let fs = MapFs { dirs, kinds };
        let mut paths = vec![];
        let summary = walk(&fs, &WalkLimits::default(), |e| {
            paths.push((e.path, e.link_target));
            ControlFlow::Continue(())
        })
        .unwrap();
        let names: Vec<_> = paths.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["/a", "/a/loop", "/a/f", "/l"]);
        assert_eq!(paths[3].1.as_deref(), Some("/target"));
        // The loop back to the root, the unreadable node, and the name with a slash.
        assert_eq!(summary.errors.len(), 3, "{:?}", summary.errors);
    }

    #[test]
    fn depth_and_node_limits_hold() {
        // A chain 1 → 2 → 3 → … of 100 directories.
        let mut dirs = HashMap::new();
        let mut kinds = HashMap::new();
        for i in 1..=100u64 {
            dirs.insert(i, vec![("d".to_string(), i + 1)]);
            kinds.insert(i, FileKind::Dir);
        }
        kinds.insert(101, FileKind::Dir);
        dirs.insert(101, vec![]);
        let fs = MapFs { dirs, kinds };
        let limits = WalkLimits {
            max_depth: 10,
            ..WalkLimits::default()
        };
        let mut n = 0;
        let s = walk(&fs, &limits, |_| {
            n += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(n, 11);
        assert_eq!(s.errors.len(), 1);
        let limits = WalkLimits {
            max_nodes: 5,
            ..WalkLimits::default()
        };
        let s = walk(&fs, &limits, |_| ControlFlow::Continue(())).unwrap();
        assert!(s.truncated);
    }
}
