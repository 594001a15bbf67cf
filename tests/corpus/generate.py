#!/usr/bin/env python3
"""Build the labelled secret-scanning corpus: four VM-like file trees plus `labels.json`.

    python3 tests/corpus/generate.py OUT [--seed 1] [--no-system-binaries]

writes

    OUT/web-01/   a Linux web server (nginx, PHP/WordPress, a Django and a Node app)
    OUT/db-01/    a database server (PostgreSQL, MySQL, backups, reporting jobs)
    OUT/ci-01/    a CI runner / developer box (kubeconfig, registries, cloud CLIs, SaaS tokens)
    OUT/win-01/   a Windows Server layout (PSReadLine, Panther/unattend.xml, IIS web.config, ...)
    OUT/labels.json

Every planted secret is a random value of the right shape (never a real credential); SSH keys
are real keys made by `ssh-keygen` and `puttygen`. `labels.json` lists

* `expected`: each secret a scanner should report, as `{tree, path, line, type, family,
  value_sha256, encoding}` (`path` as `snapsentry-scan dir OUT/<tree>` prints it: relative to
  the tree, starting with `/`; `line` 1-based, the first line for multi-line secrets);
  entries with `"optional": true` may be reported or not (an access key id next to its secret,
  an SSH host key, a password hash) and count neither way;
* `decoys`: lines that look like secrets but must not be reported by default (placeholders,
  documentation keys, Azurite's development key, public keys, commented templates, secrets in
  test/fixture directories, Windows' `*SENSITIVE*DATA*DELETED*`, ...), with a `kind`.

The trees also carry noise (logs, hashes, UUIDs, base64 blobs, minified JS, binaries). Windows
files use CRLF; `.reg` exports and one `unattend.xml` are UTF-16 LE with a BOM, as Windows
writes them. Everything is seeded (`--seed`): the same seed gives the same trees and labels,
except SSH/PuTTY keys, which the tools generate afresh (their lines and files do not move).
Standard library only (plus `ssh-keygen`; `puttygen` optional).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
import saas_rules  # noqa: E402
from tokgen import (  # noqa: E402
    A62, B64, B64U, DIGITS, HEX, LOWER, UPPER, github_token, k8s_bound_sa_token,
    k8s_legacy_sa_token, npm_token, rand, rng_for, uuid4,
)

SEED = 1


# ----------------------------------------------------------------------------------------------
# Trees, files and labels
# ----------------------------------------------------------------------------------------------
class File:
    def __init__(self, tree: "Tree", path: str, encoding: str, newline: str):
        self.tree, self.path, self.encoding, self.newline = tree, path, encoding, newline
        self.lines: list[str] = []
        self.marks: list[tuple] = []  # (line index, kind, attrs)
        self.block_all = False

    def add(self, *lines: str) -> "File":
        for text in lines:
            self.lines.extend(text.split("\n"))
        return self

    def _mark(self, text: str, kind: str, attrs: dict, offset: int = 0):
        first = len(self.lines)
        self.add(text)
        self.marks.append((first + offset, kind, attrs))
        return self

    def secret(self, text: str, type_: str, family: str, value: str, *, offset: int = 0,
               optional: bool = False, pair: str | None = None, block: bool = False) -> "File":
        """Add `text` (may span lines); the secret is on its first line (+offset). Labels with
        the same `pair` in one file are one credential (an AWS key id and its secret): a
        finding on any of their lines finds it."""
        assert value and value in text or optional or "\n" in value, (self.path, type_)
        if "\n" in text:
            block = True
        span = (len(self.lines), len(self.lines) + text.count("\n")) if block else None
        return self._mark(text, "secret", {"type": type_, "family": family, "value": value,
                                           "optional": optional, "pair": pair, "span": span}, offset)

    def whole_file_secret(self) -> "File":
        """The file is one credential (a service account JSON): its last label spans it all."""
        self.block_all = True
        return self

    def decoy(self, text: str, kind: str, note: str = "", *, offset: int = 0) -> "File":
        return self._mark(text, "decoy", {"kind": kind, "note": note}, offset)

    def data(self) -> bytes:
        text = self.newline.join(self.lines)
        if not text.endswith(self.newline):
            text += self.newline
        if self.encoding == "utf-16-le":
            return b"\xff\xfe" + text.encode("utf-16-le")
        if self.encoding == "utf-8-bom":
            return b"\xef\xbb\xbf" + text.encode("utf-8")
        return text.encode("utf-8")


class Tree:
    def __init__(self, name: str):
        self.name = name
        self.files: dict[str, File] = {}
        self.raw: dict[str, bytes] = {}
        self.copies: dict[str, str] = {}
        self.modes: dict[str, int] = {}

    def file(self, path: str, *, encoding: str = "utf-8", newline: str = "\n", mode: int | None = None) -> File:
        assert path.startswith("/") and path not in self.files, path
        f = File(self, path, encoding, newline)
        self.files[path] = f
        if mode is not None:
            self.modes[path] = mode
        return f

    def win(self, path: str, **kw) -> File:
        return self.file(path, newline="\r\n", **kw)

    def bytes(self, path: str, data: bytes):
        self.raw[path] = data

    def copy(self, path: str, source: str):
        self.copies[path] = source

    def write(self, root: Path, labels: dict):
        base = root / self.name
        for path, f in self.files.items():
            dest = base / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(f.data())
            if path in self.modes:
                os.chmod(dest, self.modes[path])
            for idx, kind, attrs in f.marks:
                entry = {"tree": self.name, "path": path, "line": idx + 1}
                if kind == "secret":
                    entry.update(type=attrs["type"], family=attrs["family"],
                                 value_sha256=hashlib.sha256(attrs["value"].encode()).hexdigest(),
                                 encoding=f.encoding)
                    if attrs["optional"]:
                        entry["optional"] = True
                    if attrs["pair"]:
                        entry["pair"] = attrs["pair"]
                    span = (0, len(f.lines) - 1) if f.block_all else attrs["span"]
                    if span:
                        entry["block"] = [span[0] + 1, span[1] + 1]
                    labels["expected"].append(entry)
                else:
                    entry.update(kind=attrs["kind"])
                    if attrs["note"]:
                        entry["note"] = attrs["note"]
                    labels["decoys"].append(entry)
        for path, data in self.raw.items():
            dest = base / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        for path, src in self.copies.items():
            dest = base / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)


# ----------------------------------------------------------------------------------------------
# Values
# ----------------------------------------------------------------------------------------------
class Values:
    """Seeded generators for the values the Defender secret types take."""

    def __init__(self, seed: int):
        self.seed = seed
        self.n = 0

    def rng(self, what: str):
        self.n += 1
        return rng_for("corpus", self.seed, what, self.n)

    def password(self, n: int = 16, specials: str = "!#%^*_+-") -> str:
        """A strong-looking password; in URLs and unquoted shell words use `url_password`."""
        r = self.rng("pw")
        while True:
            s = rand(r, A62, n - 3) + r.choice(specials) + rand(r, DIGITS, 1) + rand(r, UPPER, 1)
            s = "".join(r.sample(s, len(s)))
            if s[0].isalnum():
                return s

    def url_password(self, n: int = 16) -> str:
        return self.password(n, specials="_-~.")

    def aws_key_id(self) -> str:
        return "AKIA" + rand(self.rng("akid"), "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)

    def aws_secret(self) -> str:
        return rand(self.rng("aws"), B64, 40)

    def b64key(self, nbytes: int = 64) -> str:
        r = self.rng("b64")
        return base64.b64encode(bytes(r.getrandbits(8) for _ in range(nbytes))).decode()

    def hex(self, n: int) -> str:
        return rand(self.rng("hex"), HEX, n)

    def alnum(self, n: int) -> str:
        return rand(self.rng("an"), A62, n)

    def uuid(self) -> str:
        return uuid4(self.rng("uuid"))

    def aad_secret(self) -> str:
        r = self.rng("aad")
        return rand(r, A62, 3) + "8Q~" + rand(r, A62 + "_~.-", 30) + rand(r, A62, 1)

    def ado_pat(self) -> str:
        return rand(self.rng("ado"), "abcdefghijklmnopqrstuvwxyz234567", 52)

    def openai(self) -> str:
        r = self.rng("oai")
        return "sk-proj-" + rand(r, B64U, 73) + rand(r, A62, 1) + "T3BlbkFJ" + rand(r, B64U, 73) + rand(r, A62, 1)

    def sas(self) -> str:
        sig = quote(self.b64key(32), safe="")
        return (f"sv=2022-11-02&ss=bfqt&srt=sco&sp=rwdlacupiytfx&se=2027-06-30T18:00:00Z"
                f"&st=2026-11-01T09:00:00Z&spr=https&sig={sig}")

    def saas(self, rule_id: str) -> str:
        rule = next(r for r in saas_rules.RULES if r.id == rule_id)
        r = self.rng("saas-" + rule_id)
        return rule.gen(r) if callable(rule.gen) else saas_rules.build(r, rule.gen)


class Keys:
    """Real SSH keys from ssh-keygen / puttygen, in a temp dir."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="snapsentry-corpus-keys-"))
        self.n = 0

    def ssh(self, kind: str, fmt: str | None = None, comment: str = "", passphrase: str = "",
            bits: int | None = None) -> tuple[str, str]:
        """(private key text, public key line)."""
        self.n += 1
        p = self.dir / f"k{self.n}"
        cmd = ["ssh-keygen", "-q", "-t", kind, "-N", passphrase, "-C", comment, "-f", str(p)]
        if bits:
            cmd += ["-b", str(bits)]
        if fmt:
            cmd += ["-m", fmt]
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        return p.read_text().rstrip("\n"), Path(f"{p}.pub").read_text().strip()

    def putty(self, comment: str) -> str | None:
        if not shutil.which("puttygen"):
            return None
        self.n += 1
        p = self.dir / f"k{self.n}.ppk"
        subprocess.run(["puttygen", "-t", "rsa", "-b", "2048", "-C", comment, "-o", str(p),
                        "--new-passphrase", "/dev/null"], check=True, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return p.read_text().replace("\r\n", "\n").rstrip("\n")

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Noise
# ----------------------------------------------------------------------------------------------
def nginx_log(v: Values, n: int) -> list[str]:
    r = v.rng("nginx")
    paths = ["/", "/wp-login.php", "/api/v1/orders", "/static/app.min.js", "/health", "/favicon.ico",
             "/wp-admin/admin-ajax.php", "/api/v1/cart/" + uuid4(r)]
    out = []
    for i in range(n):
        ip = f"{r.randrange(1, 223)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(1, 255)}"
        out.append(f'{ip} - - [20/Nov/2026:{i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d} +0000] "GET '
                   f'{r.choice(paths)}?v={rand(r, HEX, 8)} HTTP/1.1" {r.choice([200, 200, 304, 404, 301])} '
                   f'{r.randrange(200, 90000)} "-" "Mozilla/5.0 (X11; Linux x86_64) req_id={uuid4(r)}"')
    return out


def app_log(v: Values, n: int) -> list[str]:
    r = v.rng("applog")
    out = []
    for i in range(n):
        out.append(f"2026-11-20T10:{i % 60:02d}:{(i * 13) % 60:02d}.{r.randrange(1000):03d}Z INFO "
                   f"worker-{r.randrange(8)} job={uuid4(r)} sha256={hashlib.sha256(str(i).encode()).hexdigest()} "
                   f"etag=\"{hashlib.md5(str(i).encode()).hexdigest()}\" took={r.randrange(900)}ms")
    return out


def minified_js(v: Values, size: int) -> str:
    r = v.rng("js")
    parts = []
    while sum(map(len, parts)) < size:
        name = rand(r, LOWER, 2)
        parts.append(f'function {name}(e,t){{return e.map(function(n){{return n.{rand(r, LOWER, 3)}===t?'
                     f'"{base64.b64encode(bytes(r.getrandbits(8) for _ in range(30))).decode()}":n}})}};'
                     f'var {name}_h="{hashlib.sha1(name.encode()).hexdigest()}",{name}_id="{uuid4(r)}";')
    return "".join(parts)


def random_bytes(v: Values, n: int) -> bytes:
    r = v.rng("bin")
    return bytes(r.getrandbits(8) for _ in range(n))


def hashes_file(v: Values, n: int) -> list[str]:
    r = v.rng("sums")
    return [f"{hashlib.sha256(bytes([i % 256, r.randrange(256)])).hexdigest()}  pkg-{i}.deb" for i in range(n)]


# ----------------------------------------------------------------------------------------------
# The trees
# ----------------------------------------------------------------------------------------------
def shadow(v: Values, t: Tree, users: list[str]):
    f = t.file("/etc/shadow", mode=0o640)
    for u in ["root", "daemon", "bin", "sys", "www-data", "nobody", "systemd-network", "sshd"]:
        if u == "root":
            salt, h = rand(v.rng("s"), A62 + "./", 16), rand(v.rng("h"), A62 + "./", 86)
            f.secret(f"root:$6${salt}${h}:20400:0:99999:7:::", "shadow-password-hash",
                     "credential-files", f"$6${salt}${h}", optional=True)
        else:
            f.add(f"{u}:*:20400:0:99999:7:::")
    for u in users:
        salt, h = rand(v.rng("s"), A62 + "./", 16), rand(v.rng("h"), A62 + "./", 86)
        f.secret(f"{u}:$y$j9T${salt}${h}:20410:0:99999:7:::", "shadow-password-hash", "credential-files",
                 f"$y$j9T${salt}${h}", optional=True)
    f.decoy("backup:!:20400:0:99999:7:::", "locked-account")


def ssh_dir(v: Values, t: Tree, keys: Keys, home: str, user: str, host: str, kind: str = "ed25519",
            fmt: str | None = None, name: str = "id_ed25519"):
    priv, pub = keys.ssh(kind, fmt, f"{user}@{host}")
    t.file(f"{home}/.ssh/{name}", mode=0o600).secret(priv, "ssh-private-key", "ssh", priv.split("\n")[1])
    t.file(f"{home}/.ssh/{name}.pub").decoy(pub, "public-key")
    other = keys.ssh("ed25519", None, "ops@bastion")[1]
    t.file(f"{home}/.ssh/authorized_keys", mode=0o600).decoy(other, "public-key", "authorized_keys").decoy(
        pub, "public-key", "authorized_keys")
    t.file(f"{home}/.ssh/known_hosts").add(
        f"|1|{v.b64key(20)}|{v.b64key(20)} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{v.alnum(43)}",
        "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl")


def aws_credentials(v: Values, t: Tree, path: str, win: bool = False):
    f = (t.win if win else t.file)(path, mode=0o600)
    kid, sec = v.aws_key_id(), v.aws_secret()
    f.add("[default]")
    f.secret(f"aws_access_key_id = {kid}", "aws-access-key-id", "aws", kid, optional=True, pair="default")
    f.secret(f"aws_secret_access_key = {sec}", "aws-access-key", "aws", sec, pair="default")
    f.add("region = eu-west-1", "", "[docs]")
    f.decoy("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "documentation-example")
    f.decoy("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "documentation-example")
    f.add("", "[ci]")
    f.decoy("aws_secret_access_key = ${AWS_SECRET_ACCESS_KEY}", "placeholder")
    return kid, sec


SAAS_FORMATS = {
    # name: (file name, header lines, line template, footer lines)
    "env": (".env", ["# integrations"], "{var}={v}", []),
    "yaml": ("integrations.yaml", ["integrations:"], '  {var_l}: "{v}"', []),
    "json": ("appsettings.json", ["{", '  "Integrations": {'], '    "{var}": "{v}",', ['    "Enabled": true', "  }", "}"]),
    "xml": ("web.config", ['<?xml version="1.0" encoding="utf-8"?>', "<configuration>", "  <appSettings>"],
            '    <add key="{var}" value="{v}" />', ["  </appSettings>", "</configuration>"]),
    "py": ("settings_local.py", ["# generated by the bootstrap script"], '{var} = "{v}"', []),
    "js": ("config.js", ["module.exports = {"], "  {var}: '{v}',", ["};"]),
}


def plant_saas(v: Values, t: Tree, directory: str, families: list[str], formats: list[str]):
    """Every SaaS rule of `families` once, spread over config files of several `formats`
    (`.env`, YAML, JSON, web.config, Python, JS). Rules with their own example shape (an
    `Authorization:` header, an `authtoken:` line) keep it and go to the first format's file."""
    rules = [r for r in saas_rules.RULES if r.family in families and not r.paths]
    rng = v.rng("plant-" + directory)
    files = {}
    for fmt in formats:
        name, header, _, _ = SAAS_FORMATS[fmt]
        files[fmt] = t.file(f"{directory}/{name}", mode=0o600).add(*header)
    for rule in rules:
        val = v.saas(rule.id)
        if rule.pos:
            fmt, tpl = formats[0], rule.pos[0]
        else:
            fmt = rng.choice(formats)
            tpl = SAAS_FORMATS[fmt][2].replace("{var}", rule.var).replace("{var_l}", rule.var.lower())
        text = tpl.replace("{v}", val).replace("{p}", "a1b2c3d4e5f6").replace("{{", "{").replace("}}", "}")
        lines = text.split("\n")
        at = next(i for i, ln in enumerate(lines) if val in ln)
        files[fmt].secret(text, rule.id, rule.family, val, offset=at)
    f = files[formats[0]]
    f.decoy("STRIPE_SECRET_KEY=sk_live_" + "x" * 24, "placeholder")
    f.decoy("SLACK_BOT_TOKEN=xoxb-your-bot-token", "placeholder")
    f.decoy("# GITLAB_TOKEN=<paste your glpat- token here>", "commented-template")
    f.decoy("HF_TOKEN=${HF_TOKEN}", "placeholder")
    for fmt in formats:
        files[fmt].add(*SAAS_FORMATS[fmt][3])


def web01(v: Values, keys: Keys) -> Tree:
    t = Tree("web-01")
    shadow(v, t, ["ubuntu", "deploy"])
    t.file("/etc/passwd").add("root:x:0:0:root:/root:/bin/bash", "ubuntu:x:1000:1000::/home/ubuntu:/bin/bash",
                              "deploy:x:1001:1001::/home/deploy:/bin/bash")
    t.file("/etc/hostname").add("web-01")
    # SSH: OpenSSH ed25519 for root, PEM RSA for ubuntu, host key (info only).
    ssh_dir(v, t, keys, "/root", "root", "web-01")
    ssh_dir(v, t, keys, "/home/ubuntu", "ubuntu", "web-01", "rsa", "PEM", "id_rsa")
    hk, hpub = keys.ssh("ed25519", None, "root@web-01")
    t.file("/etc/ssh/ssh_host_ed25519_key", mode=0o600).secret(hk, "ssh-host-key", "ssh", hk.split("\n")[1],
                                                                optional=True)
    t.file("/etc/ssh/ssh_host_ed25519_key.pub").decoy(hpub, "public-key")
    t.file("/etc/ssh/sshd_config").add("Port 22", "PermitRootLogin prohibit-password", "PasswordAuthentication no",
                                       "# PasswordAuthentication yes", "AuthorizedKeysFile .ssh/authorized_keys")
    aws_credentials(v, t, "/home/ubuntu/.aws/credentials")
    t.file("/home/ubuntu/.aws/config").add("[default]", "region = eu-west-1", "output = json")

    # The Django app.
    pw = v.password()
    dj = v.alnum(50)
    f = t.file("/srv/shop/shop/settings.py")
    f.add("import os", "from pathlib import Path", "", "BASE_DIR = Path(__file__).resolve().parent.parent", "")
    f.secret(f"SECRET_KEY = '{dj}'", "django-secret-key",
             "credential-files", dj)
    f.add("DEBUG = False", "ALLOWED_HOSTS = ['shop.contoso-retail.com']", "", "DATABASES = {", "    'default': {",
          "        'ENGINE': 'django.db.backends.postgresql',", "        'NAME': 'shop',",
          "        'USER': 'shop',")
    f.secret(f"        'PASSWORD': '{pw}',", "django-db-password", "credential-files", pw)
    f.add("        'HOST': 'shopdb.postgres.database.azure.com',", "        'PORT': '5432',", "    }", "}", "")
    f.decoy("# 'PASSWORD': os.environ.get('DB_PASSWORD', 'changeme'),", "placeholder")
    f.add("EMAIL_HOST = 'smtp.sendgrid.net'", "EMAIL_HOST_USER = 'apikey'")
    sg = v.saas("sendgrid-api-key")
    f.secret(f"EMAIL_HOST_PASSWORD = '{sg}'", "sendgrid-api-key", "saas-comms", sg)

    # The Node app's .env.
    f = t.file("/srv/api/.env", mode=0o600)
    f.add("NODE_ENV=production", "PORT=8080")
    pgpw = v.url_password()
    host = "orders-db.c9akciq32.eu-west-1.rds.amazonaws.com"
    f.secret(f"DATABASE_URL=postgres://orders:{pgpw}@{host}:5432/orders", "aws-rds-connection-string",
             "databases", pgpw)
    acct, key = "contosoretailprod", v.b64key(64)
    cs = f"DefaultEndpointsProtocol=https;AccountName={acct};AccountKey={key};EndpointSuffix=core.windows.net"
    f.secret(f"AZURE_STORAGE_CONNECTION_STRING={cs}", "azure-storage-connection-string", "azure", key)
    sk = v.saas("stripe-secret-key")
    f.secret(f"STRIPE_SECRET_KEY={sk}", "stripe-secret-key", "saas-payments", sk)
    wh = v.saas("stripe-webhook-secret")
    f.secret(f"STRIPE_WEBHOOK_SECRET={wh}", "stripe-webhook-secret", "saas-payments", wh)
    slack = v.saas("slack-webhook-url")
    f.secret(f"SLACK_WEBHOOK_URL={slack}", "slack-webhook-url", "saas-comms", slack.rsplit("/", 1)[1])
    redis_pw = v.url_password()
    f.secret(f"REDIS_URL=rediss://default:{redis_pw}@cache-prod.redis.cache.windows.net:6380/0",
             "redis-connection-string", "databases", redis_pw)
    f.decoy("SESSION_SECRET=${SESSION_SECRET}", "placeholder")
    f.decoy("MAILGUN_API_KEY=<your-mailgun-key>", "placeholder")
    f.decoy("# DB_PASSWORD=changeme", "commented-template")
    oai = v.openai()
    f.secret(f"OPENAI_API_KEY={oai}", "openai-api-key", "azure", oai)

    # WordPress.
    f = t.file("/var/www/html/wp-config.php")
    wpw = v.password()
    f.add("<?php", "/** The base configuration for WordPress */", "define( 'DB_NAME', 'wordpress' );",
          "define( 'DB_USER', 'wp_user' );")
    f.secret(f"define( 'DB_PASSWORD', '{wpw}' );", "wordpress-db-password", "credential-files", wpw)
    f.add("define( 'DB_HOST', 'localhost' );", "define( 'DB_CHARSET', 'utf8mb4' );")
    for k in ["AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY"]:
        salt = rand(v.rng("salt"), A62 + "!@#%^&*()-_[]{}<>~+=,.;:/?|", 64)
        f.secret(f"define( '{k}', '{salt}' );", "wordpress-salt", "credential-files", salt, optional=True)
    f.decoy("define( 'AUTH_SALT', 'put your unique phrase here' );", "placeholder")
    f.add("$table_prefix = 'wp_';", "require_once ABSPATH . 'wp-settings.php';")
    t.file("/var/www/html/wp-config-sample.php").add("<?php").decoy(
        "define( 'DB_PASSWORD', 'password_here' );", "placeholder").add("define( 'DB_HOST', 'localhost' );")

    # Scripts with signed URLs.
    f = t.file("/srv/api/scripts/fetch-assets.sh", mode=0o755)
    f.add("#!/bin/sh", "set -eu")
    kid = v.aws_key_id()
    s3 = (f"https://contoso-assets.s3.eu-west-1.amazonaws.com/releases/app-2.4.1.tar.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256"
          f"&X-Amz-Credential={kid}%2F20261120%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20261120T101500Z"
          f"&X-Amz-Expires=604800&X-Amz-SignedHeaders=host&X-Amz-Signature={v.hex(64)}")
    f.secret(f"curl -fsSL -o /tmp/app.tgz '{s3}'", "s3-presigned-url", "aws", s3.split("X-Amz-Signature=")[1])
    gcs = (f"https://storage.googleapis.com/contoso-ml-models/resnet50.onnx?X-Goog-Algorithm=GOOG4-RSA-SHA256"
           f"&X-Goog-Credential=loader%40contoso-ml.iam.gserviceaccount.com%2F20261120%2Fauto%2Fstorage%2Fgoog4_request"
           f"&X-Goog-Date=20261120T101500Z&X-Goog-Expires=86400&X-Goog-SignedHeaders=host&X-Goog-Signature={v.hex(512)}")
    f.secret(f"curl -fsSL -o /tmp/model.onnx '{gcs}'", "gcs-signed-url", "gcp", gcs.split("X-Goog-Signature=")[1])
    sas = v.sas()
    f.secret(f"azcopy copy 'https://{acct}.blob.core.windows.net/backups/site.tar.gz?{sas}' /tmp/site.tar.gz",
             "azure-sas-token", "azure", sas.split("sig=")[1])
    f.decoy("azcopy copy 'https://<account>.blob.core.windows.net/<container>?<SAS>' .", "placeholder")

    # GCP service account key and gcloud ADC.
    pk, _ = keys.ssh("rsa", "PKCS8", "", bits=2048)
    sa = {"type": "service_account", "project_id": "contoso-ml", "private_key_id": v.hex(40),
          "private_key": pk + "\n", "client_email": "loader@contoso-ml.iam.gserviceaccount.com",
          "client_id": rand(v.rng("cid"), DIGITS, 21), "auth_uri": "https://accounts.google.com/o/oauth2/auth",
          "token_uri": "https://oauth2.googleapis.com/token",
          "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
          "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/loader%40contoso-ml.iam.gserviceaccount.com",
          "universe_domain": "googleapis.com"}
    lines = json.dumps(sa, indent=2).split("\n")
    f = t.file("/srv/api/keys/contoso-ml-loader.json", mode=0o600).whole_file_secret()
    for ln in lines:
        if '"private_key":' in ln:
            f.secret(ln, "gcp-service-account-key", "gcp", pk.split("\n")[1])
        else:
            f.add(ln)
    rt = "1//0g" + rand(v.rng("rt"), B64U, 98)
    adc = ["{", '  "account": "",', '  "client_id": "764086051850-6qr4p6gpi6hn506pt8ejuq83di341hur.apps.googleusercontent.com",',
           '  "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty",']
    f = t.file("/home/ubuntu/.config/gcloud/application_default_credentials.json", mode=0o600).whole_file_secret()
    f.add(*adc[:3])
    f.decoy(adc[3], "public-client-secret", "gcloud's published installed-app client secret")
    f.add('  "quota_project_id": "contoso-ml",')
    f.secret(f'  "refresh_token": "{rt}",', "gcp-refresh-token", "gcp", rt)
    f.add('  "type": "authorized_user",', '  "universe_domain": "googleapis.com"', "}")

    # Git / netrc / docker.
    gh = github_token(v.rng("gh"))
    t.file("/home/deploy/.git-credentials", mode=0o600).secret(
        f"https://deploy-bot:{gh}@github.com", "github-token", "credential-files", gh)
    npw = v.password()
    t.file("/home/deploy/.netrc", mode=0o600).add("machine api.heroku.com", "  login deploy@contoso-retail.com").secret(
        f"  password {npw}", "netrc-password", "credential-files", npw).add(
        "machine example.com login anonymous password anonymous@")
    reg_pw = v.password()
    auth = base64.b64encode(f"deploy:{reg_pw}".encode()).decode()
    f = t.file("/home/deploy/.docker/config.json", mode=0o600)
    f.add("{", '  "auths": {', '    "registry.contoso-retail.com": {')
    f.secret(f'      "auth": "{auth}"', "docker-registry-auth", "credential-files", auth)
    f.add("    },", '    "https://index.docker.io/v1/": {}', "  },", '  "credsStore": "pass"', "}")

    # Shell history.
    f = t.file("/home/ubuntu/.bash_history", mode=0o600)
    f.add("sudo apt-get update", "ls -la /srv/api", "sudo systemctl restart nginx")
    p1 = v.password()
    f.secret(f"mysql -h 127.0.0.1 -u root -p'{p1}' shop", "shell-history-password", "shell-history", p1)
    f.decoy("mysql -u root -p", "password-prompt")
    p2 = v.password()
    f.secret(f"sshpass -p '{p2}' ssh admin@10.0.4.17", "shell-history-password", "shell-history", p2)
    p3 = v.password(specials="!#%^*_+-")
    f.secret(f"curl -u admin:{p3} https://jenkins.contoso-retail.com/api/json", "shell-history-password",
             "shell-history", p3)
    f.add("git pull", "tail -f /var/log/nginx/access.log")
    p4 = v.url_password()
    f.secret(f"export DB_PASSWORD={p4}", "shell-history-password", "shell-history", p4)
    f.decoy('export DB_PASSWORD="$(vault kv get -field=password secret/shop/db)"', "reference")
    f.decoy("export DB_PASSWORD=${DB_PASSWORD}", "placeholder")
    f.add("history | grep ssh", "exit")

    # Datadog agent + SaaS tokens of the observability/comms families.
    dd = v.saas("datadog-agent-api-key")
    t.file("/etc/datadog-agent/datadog.yaml").add("site: datadoghq.eu").secret(
        f"api_key: {dd}", "datadog-agent-api-key", "saas-observability", dd).add("logs_enabled: true")
    plant_saas(v, t, "/srv/integrations", ["saas-comms", "saas-observability"], ["env", "yaml", "json", "js"])

    # Decoys: docs, test fixtures.
    t.file("/usr/share/doc/awscli/examples/configure.txt").add("To configure:").decoy(
        "    aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "documentation-example").decoy(
        "    aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "documentation-example")
    fx = t.file("/srv/api/tests/fixtures/.env")
    fx.decoy(f"STRIPE_SECRET_KEY={v.saas('stripe-secret-key')}", "test-directory")
    fx.decoy(f"AWS_SECRET_ACCESS_KEY={v.aws_secret()}", "test-directory")
    tk, _ = keys.ssh("ed25519", None, "fixture")
    t.file("/srv/api/tests/fixtures/id_ed25519").decoy(tk, "test-directory")
    t.file("/srv/api/docker-compose.yml").add("services:", "  azurite:", "    image: mcr.microsoft.com/azure-storage/azurite",
                                              "    environment:").decoy(
        "      AZURE_STORAGE_CONNECTION_STRING: DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
        "BlobEndpoint=http://azurite:10000/devstoreaccount1;", "azurite-dev-key")

    # Noise.
    t.file("/var/log/nginx/access.log").add(*nginx_log(v, 4000))
    t.file("/srv/api/logs/app.log").add(*app_log(v, 3000))
    t.file("/var/www/html/static/app.min.js").add(minified_js(v, 400_000))
    gk = v.saas("google-api-key")
    t.file("/var/www/html/static/maps-init.min.js").secret(
        f'!function(){{var e={{apiKey:"{gk}",authDomain:"contoso-shop.firebaseapp.com"}};window.fb=e}}();',
        "google-api-key", "saas-cloud", gk)
    t.file("/var/lib/dpkg/info/sha256sums").add(*hashes_file(v, 2000))
    t.bytes("/srv/api/data/cache.bin", random_bytes(v, 1 << 20))
    t.bytes("/var/log/nginx/access.log.2.gz", gzip.compress("\n".join(nginx_log(v, 2000)).encode(), mtime=0))
    return t


def db01(v: Values, keys: Keys) -> Tree:
    t = Tree("db-01")
    shadow(v, t, ["dba", "postgres"])
    t.file("/etc/hostname").add("db-01")
    ssh_dir(v, t, keys, "/home/dba", "dba", "db-01", "ecdsa", "PEM", "id_ecdsa")
    # A TLS key in PKCS#8 and an encrypted OpenSSH key.
    p8, _ = keys.ssh("rsa", "PKCS8", "", bits=2048)
    t.file("/etc/ssl/private/db-01.key", mode=0o600).secret(p8, "ssh-private-key", "ssh", p8.split("\n")[1])
    enc, _ = keys.ssh("ed25519", None, "backup@db-01", passphrase="correct horse battery staple")
    t.file("/home/dba/.ssh/backup_ed25519", mode=0o600).secret(enc, "ssh-private-key", "ssh", enc.split("\n")[1])

    mpw = v.password()
    t.file("/root/.my.cnf", mode=0o600).add("[client]", "user=root").secret(
        f"password={mpw}", "mysql-client-password", "credential-files", mpw).add("host=localhost")
    dpw = v.password()
    t.file("/etc/mysql/debian.cnf", mode=0o600).add("[client]", "host     = localhost", "user     = debian-sys-maint").secret(
        f"password = {dpw}", "mysql-client-password", "credential-files", dpw).add("socket   = /var/run/mysqld/mysqld.sock")
    t.file("/etc/mysql/conf.d/client.cnf.example").add("[client]").decoy("#password = your_password", "commented-template")
    f = t.file("/var/lib/postgresql/.pgpass", mode=0o600)
    for h in ["localhost", "reporting-replica.postgres.database.azure.com"]:
        pw = v.password(specials="!#%^*_+-")
        f.secret(f"{h}:5432:*:postgres:{pw}", "pgpass-password", "credential-files", pw)
    f.decoy("*:*:*:replicator:<password>", "placeholder")

    # Backup job: libpq keyword form, s3cfg, Azure SQL via sqlcmd.
    f = t.file("/opt/backup/backup.sh", mode=0o700)
    f.add("#!/bin/bash", "set -euo pipefail", "STAMP=$(date +%F)")
    pw = v.password()
    f.secret(f'pg_dump "host=reporting.postgres.database.azure.com port=5432 dbname=reporting user=backup password={pw} sslmode=require" > /backup/reporting-$STAMP.sql',
             "azure-postgresql-connection-string", "databases", pw)
    pw = v.password()
    f.secret(f"export PGPASSWORD='{pw}'", "shell-history-password", "shell-history", pw)
    f.add("pg_dumpall -h localhost -U postgres > /backup/all-$STAMP.sql")
    acct, key = "contosobackups", v.b64key(64)
    f.secret(f'az storage blob upload --account-name {acct} --account-key "{key}" -c nightly -f /backup/all-$STAMP.sql',
             "azure-storage-account-key", "azure", key)
    kid, sec = v.aws_key_id(), v.aws_secret()
    s3 = t.file("/root/.s3cfg", mode=0o600)
    s3.add("[default]").secret(f"access_key = {kid}", "aws-access-key-id", "aws", kid, optional=True,
                               pair="default").secret(
        f"secret_key = {sec}", "s3cfg-secret", "credential-files", sec, pair="default").add("host_base = s3.amazonaws.com",
                                                                          "use_https = True")

    # Reporting app: ADO.NET / JDBC / ODBC / URI forms for every managed database.
    f = t.file("/opt/reporting/appsettings.json")
    f.add("{", '  "ConnectionStrings": {')
    pw = v.password()
    f.secret(f'    "Sql": "Server=tcp:contoso-reporting.database.windows.net,1433;Initial Catalog=reports;Persist Security Info=False;User ID=reporter;Password={pw};MultipleActiveResultSets=False;Encrypt=True;",',
             "azure-sql-connection-string", "databases", pw)
    pw = v.password()
    f.secret(f'    "MySql": "Server=contoso-crm.mysql.database.azure.com;Port=3306;Database=crm;Uid=crm_app;Pwd={pw};SslMode=Required;",',
             "azure-mysql-connection-string", "databases", pw)
    ck = v.b64key(64)
    f.secret(f'    "Cosmos": "AccountEndpoint=https://contoso-events.documents.azure.com:443/;AccountKey={ck};",',
             "azure-cosmosdb-connection-string", "databases", ck)
    pw = v.password()
    f.secret(f'    "Pg": "Host=contoso-gis.postgres.database.azure.com;Database=gis;Username=gis;Password={pw};Ssl Mode=Require;"',
             "azure-postgresql-connection-string", "databases", pw)
    f.add("  },")
    f.decoy('  "Fallback": "Server=localhost;Database=reports;User ID=sa;Password=<YourStrong!Passw0rd>;"', "placeholder")
    f.add('  "Logging": { "LogLevel": { "Default": "Information" } }', "}")

    f = t.file("/opt/reporting/config/application.properties")
    f.add("spring.application.name=reporting", "server.port=8443")
    pw = v.password()
    f.secret(f"spring.datasource.url=jdbc:sqlserver://contoso-reporting.database.windows.net:1433;database=reports;user=reporter@contoso-reporting;password={pw};encrypt=true;",
             "azure-sql-connection-string", "databases", pw)
    f.add("spring.datasource.username=reporter")
    pw = v.password()
    f.secret(f"spring.datasource.password={pw}", "spring-datasource-password", "credential-files", pw)
    pw = v.url_password()
    f.secret(f"legacy.datasource.url=jdbc:mariadb://contoso-legacy.mariadb.database.azure.com:3306/legacy?user=legacy@contoso-legacy&password={pw}&useSSL=true",
             "azure-mariadb-connection-string", "databases", pw)
    pw = v.url_password()
    f.secret(f"billing.datasource.url=jdbc:mysql://billing.cqzx81hd2kq1.us-east-1.rds.amazonaws.com:3306/billing?user=billing&password={pw}",
             "aws-rds-connection-string", "databases", pw)
    f.decoy("archive.datasource.password=${ARCHIVE_DB_PASSWORD}", "placeholder")
    f = t.file("/etc/odbc.ini")
    f.add("[reporting]", "Driver=ODBC Driver 18 for SQL Server")
    pw = v.password()
    f.secret(f"ConnectionString=Driver={{ODBC Driver 18 for SQL Server}};Server=tcp:contoso-reporting.database.windows.net,1433;Database=reports;Uid=odbc_reader;Pwd={pw};Encrypt=yes;",
             "azure-sql-connection-string", "databases", pw)
    f = t.file("/opt/reporting/config/database.yml")
    f.add("production:", "  adapter: postgresql", "  host: analytics.cbh1rqk2lx9a.eu-central-1.rds.amazonaws.com",
          "  database: analytics", "  username: analytics")
    pw = v.password()
    f.secret(f"  password: {pw}", "rails-database-password", "credential-files", pw)
    mk = v.hex(32)
    t.file("/opt/reporting/config/master.key", mode=0o600).secret(mk, "rails-master-key", "credential-files", mk)
    f = t.file("/opt/reporting/.env")
    pw = v.url_password()
    f.secret(f"MONGO_URL=mongodb://events:{pw}@contoso-events.mongo.cosmos.azure.com:10255/?ssl=true&replicaSet=globaldb",
             "azure-cosmosdb-connection-string", "databases", pw)
    pw = v.password()
    f.secret(f"RDS_PASSWORD={pw}", "env-password", "credential-files", pw)
    f.decoy("PGPASSWORD=", "empty")

    f = t.file("/root/.bash_history", mode=0o600)
    f.add("systemctl status postgresql", "df -h /var/lib/postgresql")
    pw = v.url_password()
    f.secret(f"psql 'postgresql://postgres:{pw}@localhost:5432/postgres' -c 'select 1'", "shell-history-password",
             "shell-history", pw)
    pw = v.url_password()
    f.secret(f"mysql -uroot -p{pw} -e 'show databases'", "shell-history-password", "shell-history", pw)
    f.decoy("mysql -u root -p$MYSQL_ROOT_PASSWORD", "reference")
    f.add("crontab -l", "vi /opt/backup/backup.sh")

    # Decoys: docs sample, test data.
    t.file("/usr/share/doc/postgresql-common/pgpass.sample").decoy("hostname:port:database:username:password", "placeholder")
    fx = t.file("/opt/reporting/src/test/resources/application-test.properties")
    fx.decoy(f"spring.datasource.password={v.password()}", "test-directory")
    # Noise.
    t.file("/var/log/postgresql/postgresql-16-main.log").add(*app_log(v, 3000))
    t.file("/opt/backup/checksums.sha256").add(*hashes_file(v, 1500))
    t.bytes("/var/lib/postgresql/16/main/base/16384/2619", random_bytes(v, 2 << 20))
    return t


def ci01(v: Values, keys: Keys) -> Tree:
    t = Tree("ci-01")
    H = "/home/runner"
    shadow(v, t, ["runner"])
    t.file("/etc/hostname").add("ci-01")
    ssh_dir(v, t, keys, H, "runner", "ci-01")
    ppk = keys.putty("deploy@ci-01")
    if ppk:
        lines = ppk.split("\n")
        at = next(n for n, l in enumerate(lines) if l.startswith("Private-Lines")) + 1
        t.file(f"{H}/keys/deploy.ppk", mode=0o600).secret(ppk, "ssh-private-key", "ssh", lines[at], offset=at)

    # kubeconfig with client key and a service account token.
    ck, _ = keys.ssh("ecdsa", "PEM", "", bits=256)
    ckd = base64.b64encode((ck + "\n").encode()).decode()
    sat = k8s_legacy_sa_token(v.rng("sat"), "ci", "deployer")
    f = t.file(f"{H}/.kube/config", mode=0o600)
    f.add("apiVersion: v1", "kind: Config", "clusters:", "- cluster:",
          f"    certificate-authority-data: {v.b64key(700)}", "    server: https://10.0.0.1:6443",
          "  name: prod", "users:", "- name: admin", "  user:",
          f"    client-certificate-data: {v.b64key(800)}")
    f.secret(f"    client-key-data: {ckd}", "kubeconfig-credential", "credential-files", ckd)
    f.add("- name: deployer", "  user:")
    f.secret(f"    token: {sat}", "kubernetes-service-account-token", "saas-devtools", sat)
    f.add("contexts:", "- context: {cluster: prod, user: admin}", "  name: prod", "current-context: prod")
    bound = k8s_bound_sa_token(v.rng("bound"), "ci", "runner")
    t.file("/var/run/secrets/kubernetes.io/serviceaccount/token").secret(bound, "kubernetes-service-account-token",
                                                                          "saas-devtools", bound)

    # Registries and package managers.
    npm = npm_token(v.rng("npm"))
    leg = v.uuid()
    f = t.file(f"{H}/.npmrc", mode=0o600)
    f.secret(f"//registry.npmjs.org/:_authToken={npm}", "npm-token", "credential-files", npm)
    f.secret(f"//npm.pkg.contoso.internal/:_authToken={leg}", "npm-legacy-token", "saas-devtools", leg)
    f.decoy("//npm.pkg.github.com/:_authToken=${GITHUB_TOKEN}", "placeholder")
    pypi = v.saas("pypi-token")
    t.file(f"{H}/.pypirc", mode=0o600).add("[distutils]", "index-servers = pypi", "", "[pypi]", "username = __token__").secret(
        f"password = {pypi}", "pypi-token", "saas-devtools", pypi)
    acr = v.alnum(42) + "+ACR" + v.alnum(6)
    auth = base64.b64encode(f"contosoacr:{acr}".encode()).decode()
    dh = v.saas("docker-hub-token")
    dauth = base64.b64encode(f"contosoci:{dh}".encode()).decode()
    f = t.file(f"{H}/.docker/config.json", mode=0o600)
    f.add("{", '  "auths": {', '    "contosoacr.azurecr.io": {')
    f.secret(f'      "auth": "{auth}"', "azure-container-registry-key", "azure", auth)
    f.add("    },", '    "https://index.docker.io/v1/": {')
    f.secret(f'      "auth": "{dauth}"', "docker-registry-auth", "credential-files", dauth)
    f.add("    }", "  }", "}")
    gho = github_token(v.rng("gho"), "gho_")
    t.file(f"{H}/.config/gh/hosts.yml", mode=0o600).add("github.com:", "    user: contoso-ci").secret(
        f"    oauth_token: {gho}", "github-token", "credential-files", gho).add("    git_protocol: https")
    pat = v.ado_pat()
    f = t.file(f"{H}/.git-credentials", mode=0o600)
    f.secret(f"https://contoso:{pat}@dev.azure.com", "azure-devops-pat", "azure", pat)
    glpat = v.saas("gitlab-pat")
    f.secret(f"https://oauth2:{glpat}@gitlab.contoso.io", "gitlab-pat", "saas-devtools", glpat)
    glrt = v.saas("gitlab-runner-auth-token")
    t.file("/etc/gitlab-runner/config.toml", mode=0o600).add("concurrent = 4", "", "[[runners]]", '  name = "ci-01"',
                                                            '  url = "https://gitlab.contoso.io"').secret(
        f'  token = "{glrt}"', "gitlab-runner-auth-token", "saas-devtools", glrt).add('  executor = "docker"')
    tfc = v.saas("terraform-cloud-token")
    t.file(f"{H}/.terraform.d/credentials.tfrc.json", mode=0o600).add("{", '  "credentials": {', '    "app.terraform.io": {').secret(
        f'      "token": "{tfc}"', "terraform-cloud-token", "saas-devtools", tfc).add("    }", "  }", "}")
    hvs = v.saas("vault-service-token")
    t.file(f"{H}/.vault-token", mode=0o600).secret(hvs, "vault-service-token", "saas-devtools", hvs)
    dapi = "dapi" + v.hex(32)
    t.file(f"{H}/.databrickscfg", mode=0o600).add("[DEFAULT]", "host = https://adb-4412345678901234.5.azuredatabricks.net").secret(
        f"token = {dapi}", "databricks-token", "azure", dapi)

    # Azure CLI caches.
    sec = v.aad_secret()
    f = t.file(f"{H}/.azure/service_principal_entries.json", mode=0o600)
    f.add("[", "  {", f'    "client_id": "{v.uuid()}",')
    f.secret(f'    "client_secret": "{sec}",', "azure-cli-token-cache", "azure", sec)
    f.add(f'    "tenant": "{v.uuid()}"', "  }", "]")
    rt = "1.AXkA" + rand(v.rng("msal"), B64U, 700)
    f = t.file(f"{H}/.azure/msal_token_cache.json", mode=0o600)
    f.add("{", '  "RefreshToken": {', f'    "{v.uuid()}.{v.uuid()}-login.microsoftonline.com-refreshtoken-04b07795-8ddb-461a-bbee-02f9e1bf7b46--": {{',
          '      "credential_type": "RefreshToken",')
    f.secret(f'      "secret": "{rt}",', "azure-cli-token-cache", "azure", rt)
    f.add('      "client_id": "04b07795-8ddb-461a-bbee-02f9e1bf7b46"', "    }", "  }", "}")

    # The platform service: one of each Azure service key.
    f = t.file(f"{H}/work/platform/appsettings.Production.json")
    f.add("{")
    sec = v.aad_secret()
    f.add('  "AzureAd": {', '    "Instance": "https://login.microsoftonline.com/",', f'    "ClientId": "{v.uuid()}",')
    f.secret(f'    "ClientSecret": "{sec}"', "azure-ad-client-secret", "azure", sec)
    f.add("  },")
    cog = v.hex(32)
    f.secret(f'  "CognitiveServices": {{ "Endpoint": "https://contoso-vision.cognitiveservices.azure.com/", "Key": "{cog}" }},',
             "azure-cognitive-services-key", "azure", cog)
    appc = v.b64key(32)
    f.secret(f'  "AppConfig": "Endpoint=https://contoso-config.azconfig.io;Id={v.alnum(4)}-l0-s0:{v.alnum(20)};Secret={appc}",',
             "azure-app-configuration", "azure", appc)
    sr = v.b64key(32)
    f.secret(f'  "SignalR": "Endpoint=https://contoso-live.service.signalr.net;AccessKey={sr};Version=1.0;",',
             "azure-signalr", "azure", sr)
    wps = v.b64key(32)
    f.secret(f'  "WebPubSub": "Endpoint=https://contoso-chat.webpubsub.azure.com;AccessKey={wps};Version=1.0;",',
             "azure-web-pubsub", "azure", wps)
    acs = v.b64key(64)
    f.secret(f'  "CommunicationServices": "endpoint=https://contoso-sms.communication.azure.com/;accesskey={acs}",',
             "azure-communication-services", "azure", acs)
    apim = v.hex(32)
    f.secret(f'  "Apim": {{ "BaseUrl": "https://contoso-api.azure-api.net", "Ocp-Apim-Subscription-Key": "{apim}" }},',
             "azure-apim-key", "azure", apim)
    bot = v.aad_secret()
    f.secret(f'  "MicrosoftAppId": "{v.uuid()}", "MicrosoftAppPassword": "{bot}",', "azure-bot-framework-secret",
             "azure", bot)
    eg = v.b64key(32)
    f.secret(f'  "EventGrid": {{ "TopicEndpoint": "https://orders.westeurope-1.eventgrid.azure.net/api/events", "aeg-sas-key": "{eg}" }},',
             "azure-event-grid-key", "azure", eg)
    maps = rand(v.rng("maps"), B64U, 43)
    f.secret(f'  "Maps": "https://atlas.microsoft.com/search/address/json?api-version=1.0&subscription-key={maps}",',
             "azure-maps-key", "azure", maps)
    ml = v.alnum(32)
    f.secret(f'  "ScoringEndpoint": {{ "Uri": "https://churn-model.westeurope.inference.ml.azure.com/score", "ApiKey": "{ml}" }},',
             "azure-ml-key", "azure", ml)
    batch = v.b64key(64)
    f.secret(f'  "Batch": {{ "AccountUrl": "https://contosobatch.westeurope.batch.azure.com", "AccountKey": "{batch}" }},',
             "azure-batch-key", "azure", batch)
    mws = "amzn.mws." + v.uuid()
    f.secret(f'  "MwsAuthToken": "{mws}",', "amazon-mws-token", "aws", mws)
    f.decoy('  "StorageEmulator": "UseDevelopmentStorage=true",', "azurite-dev-key")
    f.decoy('  "ClientSecretTemplate": "<client-secret>"', "placeholder")
    f.add('  "AllowedHosts": "*"', "}")

    # Publish profile and management certificate.
    up = v.alnum(60)
    f = t.file(f"{H}/work/platform/contoso-web.PublishSettings")
    f.add("<publishData>")
    f.secret(f'  <publishProfile profileName="contoso-web - Web Deploy" publishMethod="MSDeploy" publishUrl="contoso-web.scm.azurewebsites.net:443" msdeploySite="contoso-web" userName="$contoso-web" userPWD="{up}" destinationAppUrl="https://contoso-web.azurewebsites.net" SQLServerDBConnectionString="" hostingProviderForumLink="" controlPanelLink="https://portal.azure.com" webSystem="WebSites"><databases /></publishProfile>',
             "azure-publish-profile", "azure", up)
    f.add("</publishData>")
    cert = v.b64key(2400)
    f = t.file(f"{H}/work/legacy/contoso.publishsettings")
    f.add('<?xml version="1.0" encoding="utf-8"?>', "<PublishData>",
          '  <PublishProfile SchemaVersion="2.0" PublishMethod="AzureServiceManagementAPI">',
          f'    <Subscription ServiceManagementUrl="https://management.core.windows.net" Id="{v.uuid()}" Name="Contoso Production"')
    f.secret(f'      ManagementCertificate="{cert}" />', "azure-management-certificate", "azure", cert)
    f.add("  </PublishProfile>", "</PublishData>")

    # zsh history (extended format).
    f = t.file(f"{H}/.zsh_history", mode=0o600)
    f.add(": 1763650000:0;cd ~/work/platform", ": 1763650012:0;dotnet build -c Release")
    pw = v.url_password()
    f.secret(f": 1763650100:0;docker login contosoacr.azurecr.io -u contosoacr -p {pw}", "shell-history-password",
             "shell-history", pw)
    sp = v.aad_secret()
    f.secret(f": 1763650200:0;az login --service-principal -u {v.uuid()} -p {sp} --tenant contoso.onmicrosoft.com",
             "azure-ad-client-secret", "azure", sp)
    upw = v.password()
    f.secret(f": 1763650300:0;az login -u ci-admin@contoso.onmicrosoft.com -p '{upw}'", "azure-ad-user-credentials",
             "azure", upw)
    oai = v.openai()
    f.secret(f": 1763650400:0;export OPENAI_API_KEY={oai}", "openai-api-key", "azure", oai)
    f.decoy(": 1763650500:0;export OPENAI_API_KEY=sk-...", "placeholder")
    f.decoy(": 1763650600:0;docker login -u contosoci --password-stdin < ~/.docker-pass", "reference")

    # SaaS tokens of the developer-facing families.
    plant_saas(v, t, f"{H}/work/platform/config", ["saas-devtools", "saas-ai"], ["env", "py", "yaml", "json"])
    plant_saas(v, t, f"{H}/work/infra/bootstrap", ["saas-cloud", "saas-identity", "saas-payments"],
               ["env", "xml", "js", "yaml"])

    # Decoys: a spec directory with real-looking secrets, docs.
    tk, tp = keys.ssh("rsa", "PEM", "fixture", bits=2048)
    t.file(f"{H}/work/platform/spec/fixtures/deploy_key").decoy(tk, "test-directory")
    t.file(f"{H}/work/platform/spec/fixtures/deploy_key.pub").decoy(tp, "public-key")
    t.file(f"{H}/work/platform/test/config.json").decoy(
        f'{{"github_token": "{github_token(v.rng("ghfx"))}"}}', "test-directory")
    t.file(f"{H}/work/platform/README.md").add("# Platform", "", "Set your token:", "").decoy(
        "    export GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "placeholder").add("").decoy(
        "    az login -u <user> -p <password>", "placeholder")

    # Noise: build logs, lockfiles, binaries.
    t.file(f"{H}/work/platform/build.log").add(*app_log(v, 5000))
    t.file(f"{H}/work/platform/package-lock.json").add(*[
        f'    "node_modules/pkg-{i}": {{ "version": "1.{i}.0", "integrity": "sha512-{base64.b64encode(hashlib.sha512(str(i).encode()).digest()).decode()}" }},'
        for i in range(3000)])
    t.file(f"{H}/work/platform/wwwroot/js/vendor.min.js").add(minified_js(v, 600_000))
    t.bytes(f"{H}/work/platform/bin/Release/net8.0/Platform.dll", random_bytes(v, 1 << 20))
    return t


def win01(v: Values, keys: Keys) -> Tree:
    t = Tree("win-01")
    U = "/Users/Administrator"
    # PSReadLine history: UTF-8, CRLF.
    f = t.win(f"{U}/AppData/Roaming/Microsoft/Windows/PowerShell/PSReadLine/ConsoleHost_history.txt")
    f.add("Get-Service W3SVC", "Import-Module WebAdministration")
    pw = v.password()
    f.secret(f"$pw = ConvertTo-SecureString '{pw}' -AsPlainText -Force", "powershell-history-password",
             "windows", pw)
    pw = v.url_password()
    f.secret(f"net user svc_backup {pw} /add", "powershell-history-password", "windows", pw)
    pw = v.password()
    f.secret(f"cmdkey /add:fileserver01 /user:CONTOSO\\svc_backup /pass:{pw}", "powershell-history-password",
             "windows", pw)
    pw = v.password()
    f.secret(f"sqlcmd -S contoso-erp.database.windows.net -U erp_admin -P '{pw}' -Q \"SELECT 1\"",
             "azure-sql-connection-string", "databases", pw)
    sec = v.aad_secret()
    f.secret(f"$env:AZURE_CLIENT_SECRET = '{sec}'", "azure-ad-client-secret", "azure", sec)
    upw = v.password()
    f.secret(f"az login -u ops@contoso.onmicrosoft.com -p '{upw}'", "azure-ad-user-credentials", "azure", upw)
    f.decoy("$cred = Get-Credential", "prompt")
    f.decoy("$pw = Read-Host -AsSecureString", "prompt")
    f.add("iisreset", "Get-ChildItem C:\\inetpub\\wwwroot")

    # unattend.xml: Panther copy in UTF-16 LE (plain text password), sysprep copy sanitised.
    apw, alpw = v.password(), v.password()
    alb64 = base64.b64encode((alpw + "Password").encode("utf-16-le")).decode()
    f = t.win("/Windows/Panther/unattend.xml", encoding="utf-16-le")
    f.add('<?xml version="1.0" encoding="utf-16"?>', '<unattend xmlns="urn:schemas-microsoft-com:unattend">',
          '  <settings pass="oobeSystem">',
          '    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">',
          "      <UserAccounts>", "        <AdministratorPassword>")
    f.secret(f"          <Value>{apw}</Value>", "unattend-password", "windows", apw)
    f.add("          <PlainText>true</PlainText>", "        </AdministratorPassword>", "      </UserAccounts>",
          "      <AutoLogon>", "        <Password>")
    f.secret(f"          <Value>{alb64}</Value>", "unattend-password", "windows", alb64)
    f.add("          <PlainText>false</PlainText>", "        </Password>", "        <Enabled>true</Enabled>",
          "        <Username>Administrator</Username>", "      </AutoLogon>", "    </component>", "  </settings>",
          "</unattend>")
    f = t.win("/Windows/System32/Sysprep/Panther/unattend.xml")
    f.add('<?xml version="1.0" encoding="utf-8"?>', "<unattend>", "  <AdministratorPassword>")
    f.decoy("    <Value>*SENSITIVE*DATA*DELETED*</Value>", "sanitised")
    f.add("    <PlainText>true</PlainText>", "  </AdministratorPassword>", "</unattend>")

    # IIS web.config (UTF-8 with BOM, CRLF).
    f = t.win("/inetpub/wwwroot/web.config", encoding="utf-8-bom")
    pw = v.password()
    f.add('<?xml version="1.0" encoding="utf-8"?>', "<configuration>", "  <connectionStrings>")
    f.secret(f'    <add name="ErpDb" connectionString="Data Source=contoso-erp.database.windows.net;Initial Catalog=erp;User ID=erp_web;Password={pw};Encrypt=True" providerName="System.Data.SqlClient" />',
             "webconfig-connection-string", "windows", pw)
    f.decoy('    <add name="LocalDb" connectionString="Server=(localdb)\\MSSQLLocalDB;Integrated Security=true" />', "no-secret")
    f.add("  </connectionStrings>", "  <appSettings>")
    acct, key = "contosoerpfiles", v.b64key(64)
    f.secret(f'    <add key="StorageConnection" value="DefaultEndpointsProtocol=https;AccountName={acct};AccountKey={key};EndpointSuffix=core.windows.net" />',
             "azure-storage-connection-string", "azure", key)
    f.decoy('    <add key="SmtpPassword" value="" />', "empty")
    f.add("  </appSettings>", "  <system.web>")
    vk, dk = v.hex(128).upper(), v.hex(64).upper()
    f.secret(f'    <machineKey validationKey="{vk}" decryptionKey="{dk}" validation="HMACSHA256" decryption="AES" />',
             "aspnet-machine-key", "windows", vk, optional=True)
    f.add("  </system.web>", "</configuration>")
    f = t.win("/Windows/System32/inetsrv/config/applicationHost.config")
    f.add("<configuration>", "  <system.applicationHost>", "    <applicationPools>")
    f.decoy('      <add name="ErpPool"><processModel identityType="SpecificUser" userName="CONTOSO\\svc_erp" password="[enc:IISWASOnlyCngProvider:' + v.b64key(96) + ':enc]" /></add>',
            "encrypted")
    f.add("    </applicationPools>", "  </system.applicationHost>", "</configuration>")

    # ASP.NET Core app settings of a second app.
    f = t.win("/inetpub/portal/appsettings.Production.json")
    pw = v.password()
    f.add("{", '  "ConnectionStrings": {')
    f.secret(f'    "Default": "Server=tcp:contoso-portal.database.windows.net,1433;Database=portal;User Id=portal;Password={pw};"',
             "aspnet-connection-string", "windows", pw)
    f.add("  },", '  "AzureAd": {')
    sec = v.aad_secret()
    f.secret(f'    "ClientSecret": "{sec}",', "azure-ad-client-secret", "azure", sec)
    f.add(f'    "TenantId": "{v.uuid()}"', "  }", "}")
    f = t.win("/inetpub/portal/appsettings.Development.json")
    f.add("{", '  "ConnectionStrings": {')
    f.decoy('    "Default": "Server=(localdb)\\\\mssqllocaldb;Database=portal;Trusted_Connection=True;"', "no-secret")
    f.decoy('    "Storage": "UseDevelopmentStorage=true"', "azurite-dev-key")
    f.add("  }", "}")

    # FileZilla and WinSCP.
    fzp = v.password()
    b = base64.b64encode(fzp.encode()).decode()
    f = t.win(f"{U}/AppData/Roaming/FileZilla/sitemanager.xml")
    f.add('<?xml version="1.0" encoding="UTF-8"?>', '<FileZilla3 version="3.66.4" platform="windows">', "  <Servers>",
          "    <Server>", "      <Host>ftp.contoso-partner.com</Host>", "      <Port>21</Port>", "      <User>contoso</User>")
    f.secret(f'      <Pass encoding="base64">{b}</Pass>', "filezilla-password", "credential-files", b)
    f.add("    </Server>", "  </Servers>", "</FileZilla3>")
    wsp = rand(v.rng("winscp"), "0123456789ABCDEF", 64)
    f = t.win(f"{U}/Documents/winscp-sessions.reg", encoding="utf-16-le")
    f.add("Windows Registry Editor Version 5.00", "",
          "[HKEY_CURRENT_USER\\Software\\Martin Prikryl\\WinSCP 2\\Sessions\\deploy@sftp.contoso.io]",
          '"HostName"="sftp.contoso.io"', '"UserName"="deploy"')
    f.secret(f'"Password"="{wsp}"', "winscp-password", "credential-files", wsp)
    f = t.win(f"{U}/AppData/Roaming/WinSCP.ini")
    f.add("[Sessions\\backup@files.contoso.io]", "HostName=files.contoso.io", "UserName=backup")
    wsp2 = rand(v.rng("winscp2"), "0123456789ABCDEF", 72)
    f.secret(f"Password={wsp2}", "winscp-password", "credential-files", wsp2)

    # Credentials in the profile.
    aws_credentials(v, t, f"{U}/.aws/credentials", win=True)
    ppk = keys.putty("administrator@win-01")
    if ppk:
        lines = ppk.split("\n")
        i = next(n for n, l in enumerate(lines) if l.startswith("Private-Lines")) + 1
        t.win(f"{U}/Documents/keys/prod-bastion.ppk").secret(ppk, "ssh-private-key", "ssh", lines[i], offset=i)
    pk, pub = keys.ssh("rsa", None, "administrator@win-01", bits=3072)
    t.win(f"{U}/.ssh/id_rsa").secret(pk, "ssh-private-key", "ssh", pk.split("\n")[1])
    t.win(f"{U}/.ssh/id_rsa.pub").decoy(pub, "public-key")
    t.win("/ProgramData/ssh/administrators_authorized_keys").decoy(pub, "public-key")
    cert = v.b64key(2400)
    f = t.win(f"{U}/Downloads/Contoso-Production-11-20-2026-credentials.publishsettings")
    f.add('<?xml version="1.0" encoding="utf-8"?>', "<PublishData>",
          '  <PublishProfile SchemaVersion="2.0" PublishMethod="AzureServiceManagementAPI">',
          f'    <Subscription ServiceManagementUrl="https://management.core.windows.net" Id="{v.uuid()}" Name="Contoso Production"')
    f.secret(f'      ManagementCertificate="{cert}" />', "azure-management-certificate", "azure", cert)
    f.add("  </PublishProfile>", "</PublishData>")
    # An exported registry hive snippet with an AutoLogon password (UTF-16 LE).
    alp = v.password()
    f = t.win("/Windows/Temp/winlogon-export.reg", encoding="utf-16-le")
    f.add("Windows Registry Editor Version 5.00", "",
          "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\Winlogon]",
          '"AutoAdminLogon"="1"', '"DefaultUserName"="Administrator"')
    f.secret(f'"DefaultPassword"="{alp}"', "windows-autologon-password", "windows", alp)
    # SaaS tokens used by a scheduled integration script.
    f = t.win("/ProgramData/Contoso/Integrations/sync.ps1")
    f.add("# nightly CRM sync", "$ErrorActionPreference = 'Stop'")
    for rid, var in [("okta-api-token", "OKTA_API_TOKEN"), ("hubspot-private-app-token", "HubSpotToken"),
                     ("atlassian-api-token", "JiraApiToken"), ("sendgrid-api-key", "SendGridKey"),
                     ("teams-incoming-webhook-url", "TeamsWebhook")]:
        val = v.saas(rid)
        shown = val
        secret = val.split("/IncomingWebhook/")[1].split("/")[0] if rid == "teams-incoming-webhook-url" else val
        if rid == "okta-api-token":
            f.secret(f"$headers = @{{ Authorization = 'SSWS {shown}' }}", rid, "saas-identity", secret)
        else:
            f.secret(f"${var} = '{shown}'", rid, saas_rules_family(rid), secret)
    f.decoy("$ApiKey = '<your-api-key>'", "placeholder")

    # Noise: copies of system binaries, logs.
    t.file("/Windows/Logs/CBS/CBS.log").add(*app_log(v, 3000))
    t.bytes("/Windows/System32/contoso-agent.dll", random_bytes(v, 1 << 20))
    fx = t.win("/inetpub/portal/tests/appsettings.Test.json")
    fx.decoy(f'{{ "ClientSecret": "{v.aad_secret()}" }}', "test-directory")
    return t


def saas_rules_family(rule_id: str) -> str:
    return next(r.family for r in saas_rules.RULES if r.id == rule_id)


def system_binaries(t: Tree, dests: list[tuple[str, str]]):
    for dest, src in dests:
        if os.path.exists(src):
            t.copy(dest, src)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--no-system-binaries", action="store_true",
                    help="do not copy /bin/ls, /bin/bash etc. into the trees (fully seeded output)")
    a = ap.parse_args()
    if not shutil.which("ssh-keygen"):
        print("generate.py: ssh-keygen is required", file=sys.stderr)
        return 2
    out: Path = a.out
    for name in ("web-01", "db-01", "ci-01", "win-01"):
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    v = Values(a.seed)
    keys = Keys()
    try:
        trees = [web01(v, keys), db01(v, keys), ci01(v, keys), win01(v, keys)]
    finally:
        keys.cleanup()
    if not a.no_system_binaries:
        system_binaries(trees[0], [("/usr/bin/ls", "/bin/ls"), ("/usr/bin/bash", "/bin/bash")])
        system_binaries(trees[1], [("/usr/bin/ssh-keygen", "/usr/bin/ssh-keygen"), ("/usr/bin/tar", "/bin/tar")])
        system_binaries(trees[2], [("/usr/bin/git", "/usr/bin/git"), ("/usr/bin/python3", sys.executable)])
        system_binaries(trees[3], [("/Windows/System32/ls.exe", "/bin/ls")])
    labels = {"version": 1, "seed": a.seed, "trees": [t.name for t in trees], "expected": [], "decoys": []}
    for t in trees:
        t.write(out, labels)
    (out / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    req = [e for e in labels["expected"] if not e.get("optional")]
    print(f"wrote {len(trees)} trees under {out}: {len(req)} expected findings "
          f"(+{len(labels['expected']) - len(req)} optional), {len(labels['decoys'])} decoys")
    return 0


if __name__ == "__main__":
    sys.exit(main())
