//! The reference tree builder itself: what every filesystem test compares against must be right.

mod common;

use common::{Features, build_tree};
use snapsentry_disk::fs::FileKind;

#[test]
fn reference_tree_holds_every_feature() {
    let tree = build_tree(Features::POSIX);
    let n = &tree.nodes;
    assert_eq!(n["/usr/local/bin/tool"].perm, 0o4755);
    assert_eq!(
        n["/usr/local/bin/tool"].sha256,
        n["/usr/local/bin/tool-hardlink"].sha256
    );
    assert_eq!(n["/home/admin/key-link"].kind, FileKind::Symlink);
    assert_eq!(n["/home/admin/.ssh/id_ed25519"].uid, 1000);
    assert_eq!(n["/var/old/1975.txt"].mtime, 170_000_000);
    assert_eq!(n["/var/lib/sparse.img"].size, 40 * 256 * 1024 + 1000);
    assert!(n.contains_key("/données/résumé-日本語.txt"));
    assert!(n.len() > 3000);
}
