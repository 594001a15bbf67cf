"""Shared by the real-software corpus writers (`generate.py`, `apps.py`, `devtools.py`): the
Debian tools that make hashes, and the `Corpus`/`File` builders that label what they write."""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
from pathlib import Path

TOOLS = {"htpasswd": "apache2-utils", "mkpasswd": "whois", "openssl": "openssl", "git": "git"}


def run(*args: str, env: dict | None = None, stdin: str | None = None) -> str:
    out = subprocess.run(args, input=stdin, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        sys.exit(f"generate.py: {' '.join(args[:2])} failed: {out.stderr.strip()}")
    return out.stdout


def htpasswd(flag: str, user: str, password: str) -> str:
    """One `user:hash` line as `htpasswd -n -b` prints it (-B bcrypt, -m apr1, -s SHA, -d DES,
    -2 SHA-256 crypt, -5 SHA-512 crypt)."""
    return run("htpasswd", "-nb" + flag, user, password).strip()


def mkpasswd(method: str, password: str) -> str:
    return run("mkpasswd", "-m", method, password).strip()


def openssl_passwd(flag: str, password: str) -> str:
    return run("openssl", "passwd", flag, password).strip()


class Corpus:
    def __init__(self, out: Path, seed: int):
        self.out = out
        self.rng = random.Random(seed)
        self.files: list[dict] = []

    def strong(self, n: int = 18) -> str:
        alphabet = string.ascii_letters + string.digits
        while True:
            v = "".join(self.rng.choice(alphabet) for _ in range(n))
            if any(c.isdigit() for c in v) and any(c.isupper() for c in v[1:]):
                return v

    def key(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def file(self, path: str, family: str, source: str, *, crlf: bool = False) -> "File":
        f = File(self, path, family, source, crlf)
        return f


class File:
    def __init__(self, corpus: Corpus, path: str, family: str, source: str, crlf: bool):
        self.corpus, self.path, self.family, self.source, self.crlf = corpus, path, family, source, crlf
        self.lines: list[str] = []
        self.secrets: list[dict] = []
        self.decoys: list[dict] = []

    def add(self, *lines: str) -> "File":
        for text in lines:
            self.lines.extend(text.split("\n"))
        return self

    def secret(self, text: str, *, weak: bool = False, at: int = 0) -> "File":
        """Add `text` (maybe several lines); the secret is on its line `at` (0-based)."""
        self.secrets.append({"line": len(self.lines) + 1 + at, "weak": weak})
        return self.add(text)

    def decoy(self, text: str, kind: str, *, at: int = 0) -> "File":
        self.decoys.append({"line": len(self.lines) + 1 + at, "kind": kind})
        return self.add(text)

    def write(self) -> None:
        dest = self.corpus.out / self.path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        nl = "\r\n" if self.crlf else "\n"
        dest.write_text(nl.join(self.lines) + nl)
        self.corpus.files.append({"path": self.path, "family": self.family, "source": self.source,
                                  "secrets": self.secrets, "decoys": self.decoys})
