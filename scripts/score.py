#!/usr/bin/env python3
"""Score a secret-scanner report against the labelled corpus (tests/corpus/generate.py).

    scripts/score.py --labels OUT/labels.json --report web-01=web.json --report db-01=db.json ...
    scripts/score.py --labels OUT/labels.json --report all.json          # one scan of OUT itself
    scripts/score.py ... --min-precision 0.95 --min-recall 0.95           # exit 1 below either
    scripts/score.py ... --min-family-recall 0.8                          # ... or any family below

A report is snapsentry's `--format json` (findings[].path, .line, .ruleId, .secretType). With
`TREE=FILE` the report is of `snapsentry-scan dir OUT/TREE` (paths like `/etc/shadow`); a bare
FILE is a scan of OUT (paths like `/web-01/etc/shadow`). `--findings-jsonl` instead reads
already-normalised `{"tree"?, "path", "line"}` lines (what scripts/bench-compare.py feeds in).

Matching: a finding matches a label with the same tree and path whose line is within ±1
(`--line-tolerance`), or anywhere inside the label's `block` (the lines of a multi-line secret:
a PEM or PuTTY key, a service-account JSON file). Findings are first reduced to distinct (tree, path, line) locations, so
two rules firing on one line count once. Recall = required labels matched / required labels;
precision = locations matching an expected or optional label / all locations. Locations on a
decoy line, or on no label at all, are false positives, listed with --verbose. `optional`
labels (an access key id beside its secret, a password hash, an SSH host key) count neither way;
labels sharing a `pair` (an AWS key id and its secret) are found together.
Findings in test/fixture directories are what `--include-tests` adds; they sit on decoy lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def load_findings(args) -> list[dict]:
    trees = json.loads(Path(args.labels).read_text())["trees"]
    out = []
    for spec in args.report or []:
        tree, _, file = spec.rpartition("=") if "=" in spec else ("", "", spec)
        doc = json.loads(Path(file).read_text())
        for f in doc.get("findings", []):
            out.append(locate(tree, f["path"], int(f.get("line") or 0), trees,
                              f.get("secretType") or f.get("ruleId") or ""))
    for file in args.findings_jsonl or []:
        for line in Path(file).read_text().splitlines():
            if line.strip():
                f = json.loads(line)
                out.append(locate(f.get("tree", ""), f["path"], int(f.get("line") or 0), trees, f.get("type", "")))
    return out


def locate(tree: str, path: str, line: int, trees: list[str], kind: str) -> dict:
    path = "/" + path.replace("\\", "/").lstrip("/")
    if not tree:
        first = path.split("/")[1]
        if first in trees:
            tree, path = first, path[len(first) + 1:]
    return {"tree": tree, "path": path, "line": line, "kind": kind}


def distance(label: dict, line: int) -> int:
    """0 on the label's line; inside a multi-line secret's `block` (a PEM key, a service
    account JSON), 1 (any line of it may be reported); else the distance to its line."""
    if line == label["line"]:
        return 0
    block = label.get("block")
    if block and block[0] <= line <= block[1]:
        return 1
    return abs(label["line"] - line)


def score(labels: dict, findings: list[dict], tol: int):
    index = defaultdict(list)  # (tree, path) -> labels
    for e in labels["expected"]:
        index[(e["tree"], e["path"])].append(("expected", e))
    for d in labels["decoys"]:
        index[(d["tree"], d["path"])].append(("decoy", d))
    locations = {}
    for f in findings:
        locations.setdefault((f["tree"], f["path"], f["line"]), f)
    matched_labels = set()
    tp_locations, fp = 0, []
    for (tree, path, line), f in sorted(locations.items()):
        cands = [(distance(lab, line), kind != "expected", kind, lab)
                 for kind, lab in index.get((tree, path), []) if distance(lab, line) <= tol]
        # The label on the finding's own line decides (a decoy next to a secret stays a decoy);
        # only a line with no label borrows its nearest neighbour's.
        cands.sort(key=lambda c: (c[0], c[1]))
        best = cands[0] if cands else None
        if best and best[2] == "expected":
            matched_labels.add(id(best[3]))
            tp_locations += 1
        else:
            fp.append((tree, path, line, f["kind"], best[3]["kind"] if best else None))
    # A hit on one label of a pair (an AWS key id and its secret) finds the whole pair.
    pairs = defaultdict(list)
    for e in labels["expected"]:
        if e.get("pair"):
            pairs[(e["tree"], e["path"], e["pair"])].append(e)
    for group in pairs.values():
        if any(id(e) in matched_labels for e in group):
            matched_labels.update(id(e) for e in group)
    per_type = defaultdict(lambda: [0, 0])  # type -> [found, total]
    per_family = defaultdict(lambda: [0, 0])
    missed = []
    for e in labels["expected"]:
        if e.get("optional"):
            continue
        hit = id(e) in matched_labels
        for table, key in ((per_type, e["type"]), (per_family, e["family"])):
            table[key][1] += 1
            table[key][0] += hit
        if not hit:
            missed.append(e)
    required = sum(v[1] for v in per_type.values())
    recall = sum(v[0] for v in per_type.values()) / required if required else 1.0
    precision = tp_locations / len(locations) if locations else 1.0
    return {"locations": len(locations), "tp": tp_locations, "fp": fp, "missed": missed,
            "recall": recall, "precision": precision, "per_type": dict(per_type),
            "per_family": dict(per_family), "required": required}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", required=True)
    ap.add_argument("--report", action="append", help="[TREE=]snapsentry JSON report (repeatable)")
    ap.add_argument("--findings-jsonl", action="append", help="normalised findings, one JSON object a line")
    ap.add_argument("--line-tolerance", type=int, default=1)
    ap.add_argument("--min-precision", type=float, default=0.0)
    ap.add_argument("--min-recall", type=float, default=0.0)
    ap.add_argument("--min-family-recall", type=float, default=0.0,
                    help="also exit 1 when any one family's recall is below this (catches a whole "
                         "rule file going missing, which the overall recall can absorb)")
    ap.add_argument("--by", choices=["type", "family"], default="family", help="breakdown table")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="list misses and false positives")
    a = ap.parse_args()
    if not a.report and not a.findings_jsonl:
        ap.error("give --report or --findings-jsonl")
    labels = json.loads(Path(a.labels).read_text())
    s = score(labels, load_findings(a), a.line_tolerance)
    if a.json:
        print(json.dumps({k: v for k, v in s.items() if k not in ("fp", "missed")} |
                         {"fp": len(s["fp"]), "missed": len(s["missed"])}, indent=1))
    else:
        table = s["per_type"] if a.by == "type" else s["per_family"]
        fp_by = defaultdict(int)
        for *_, kind, _decoy in s["fp"]:
            fp_by[kind] += 1
        w = max([len(k) for k in table] + [10])
        print(f"{a.by:<{w}}  found/total  recall")
        for k in sorted(table):
            found, total = table[k]
            print(f"{k:<{w}}  {found:>5}/{total:<5}  {found / total:6.1%}")
        print(f"{'overall':<{w}}  {s['required'] - len(s['missed']):>5}/{s['required']:<5}  {s['recall']:6.1%}")
        print(f"\nlocations reported: {s['locations']}, true: {s['tp']}, false: {len(s['fp'])} "
              f"(on decoys: {sum(1 for x in s['fp'] if x[4])}); precision {s['precision']:.1%}")
        if a.verbose:
            for e in s["missed"]:
                print(f"  missed  {e['tree']}:{e['path']}:{e['line']}  {e['type']}")
            for tree, path, line, kind, decoy in s["fp"]:
                print(f"  false   {tree}:{path}:{line}  {kind}" + (f"  (decoy: {decoy})" if decoy else ""))
    ok = s["precision"] >= a.min_precision and s["recall"] >= a.min_recall
    if not ok:
        print(f"FAIL: precision {s['precision']:.3f} (min {a.min_precision}), recall {s['recall']:.3f} "
              f"(min {a.min_recall})", file=sys.stderr)
    low = sorted((k, f / t) for k, (f, t) in s["per_family"].items() if t and f / t < a.min_family_recall)
    for family, recall in low:
        print(f"FAIL: family {family} recall {recall:.3f} (min {a.min_family_recall})", file=sys.stderr)
    return 0 if ok and not low else 1


if __name__ == "__main__":
    sys.exit(main())
