"""Deterministic generators for realistic-looking (random, never real) secret values.

Shared by `saas_rules.py` (rule examples) and `generate.py` (the labelled corpus), so a rule's
examples and the corpus plant values of the same shape. Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import zlib

DIGITS = string.digits
HEX = "0123456789abcdef"
HEXU = "0123456789ABCDEF"
LOWER = string.ascii_lowercase
UPPER = string.ascii_uppercase
LETTERS = string.ascii_letters
A62 = string.ascii_letters + string.digits
LO36 = string.ascii_lowercase + string.digits
UP36 = string.ascii_uppercase + string.digits
B64 = A62 + "+/"
B64U = A62 + "-_"
BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l".upper()

# Substrings that the engine's placeholder check treats as "not a real secret" (a port of
# engine/src/placeholder.rs: TEMPLATE_MARKERS and WEAK_MARKERS): random values must avoid them.
PLACEHOLDER_MARKERS = [
    "example", "changeme", "change_me", "change-me", "dummy", "placeholder", "your_", "your-",
    "yourpass", "yoursecret", "yourtoken", "yourkey", "xxxx", "****", "...", "\u2026", "####", "redacted",
    "sample", "fake", "test", "os.environ", "process.env", "getenv", "environ[", "env[", "env(",
    "secretkeyref", "valuefrom", "vault:", "keyvault", "lorem", "foobar", "insert",
    "replace", "todo", "fixme", "<%", "%>", "enc(", "%s", "anonymous",
]
PLACEHOLDER_WORDS = {
    "password", "passwd", "secret", "token", "none", "null", "nil", "true", "false", "undefined",
    "pass", "pwd", "admin", "root", "user", "username", "string", "value", "key", "apikey",
    "api_key", "required", "optional", "empty", "default", "prompt", "ask", "env", "yes", "no",
    "on", "off", "enabled", "disabled", "define", "undef",
}
DOCUMENTATION_VALUES = [
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    "AKIAI44QH8DHBEXAMPLE",
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
    "d-FL95Q19q7MQmFpd7hHD0Ty", "ZmssLNjJy2998hD4CTg2ejr2", "wbER7576mc_1YOII0dGk7jEE", "notasecret",
]


def is_placeholder(secret: str) -> bool:
    """Python port of the engine's built-in placeholder check (keep in step with placeholder.rs)."""
    t = secret.strip().strip("\"'").strip()
    if len(t) < 3 or all(c in "*x#.-_?X" for c in t):
        return True
    if any(d in t for d in DOCUMENTATION_VALUES):
        return True
    low = t.lower()
    if low in PLACEHOLDER_WORDS or any(m in low for m in PLACEHOLDER_MARKERS):
        return True
    if (all(c.isupper() or c in "_-" for c in t) and any(c.isalpha() for c in t)
            and (len(t) <= 12 or "_" in t or "-" in t)):
        return True
    if (t.startswith(("${", "$(", "%(", "{{", "#{")) or "${" in t or "{{" in t
            or (t[0] == "$" and all(c.isalnum() or c == "_" for c in t[1:]))
            or (t[0] == "$" and (t[1].isalpha() or t[1] in "_{") and "$" not in t[1:])
            or (t[0] == "%" and t[-1] == "%") or (t[0] == "<" and t[-1] == ">")
            or (t[0] == "[" and t[-1] == "]")):
        return True
    b = t.encode()
    if len(set(b)) <= 2 and len(b) >= 4:
        return True
    if len(b) >= 8 and any(len(b) % p == 0 and all(b[i:i + p] == b[:p] for i in range(0, len(b), p))
                           for p in range(1, 5)):
        return True
    seq = sum(1 for i in range(len(b) - 1) if b[i + 1] == (b[i] + 1) % 256)
    return len(b) >= 6 and seq + 1 == len(b)


def shannon_entropy(s: str) -> float:
    import math
    if not s:
        return 0.0
    data = s.encode()
    n = len(data)
    counts = {}
    for c in data:
        counts[c] = counts.get(c, 0) + 1
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def rng_for(*seed: object) -> random.Random:
    """A Random seeded from the given parts (stable across Python versions and runs)."""
    h = hashlib.sha256("\x1f".join(map(str, seed)).encode()).digest()
    return random.Random(int.from_bytes(h[:8], "big"))


def rand(rng: random.Random, alphabet: str, n: int) -> str:
    """n random characters from alphabet, avoiding placeholder markers and long runs."""
    while True:
        s = "".join(rng.choice(alphabet) for _ in range(n))
        low = s.lower()
        if not any(m in low for m in PLACEHOLDER_MARKERS) and not any(
                s[i] == s[i + 1] == s[i + 2] for i in range(len(s) - 2)):
            return s


def build(rng: random.Random, parts) -> str:
    """Concatenate parts: str literals, (alphabet, n) tuples, or callables taking rng."""
    out = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
        elif callable(p):
            out.append(p(rng))
        else:
            alphabet, n = p
            out.append(rand(rng, alphabet, n))
    return "".join(out)


def uuid4(rng: random.Random) -> str:
    h = rand(rng, HEX, 32)
    h = h[:12] + "4" + h[13:16] + rng.choice("89ab") + h[17:]
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(rng: random.Random, payload: dict, header: dict | None = None) -> str:
    """A structurally valid JWT with a random (not verifiable) RS256 signature."""
    header = header or {"alg": "RS256", "kid": rand(rng, B64U, 43)}
    sig = bytes(rng.getrandbits(8) for _ in range(256))
    enc = lambda o: b64url(json.dumps(o, separators=(",", ":")).encode())  # noqa: E731
    return f"{enc(header)}.{enc(payload)}.{b64url(sig)}"


def k8s_legacy_sa_token(rng: random.Random, namespace: str = "kube-system",
                        sa: str = "deployer") -> str:
    secret = f"{sa}-token-{rand(rng, LO36, 5)}"
    return jwt(rng, {
        "iss": "kubernetes/serviceaccount",
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": secret,
        "kubernetes.io/serviceaccount/service-account.name": sa,
        "kubernetes.io/serviceaccount/service-account.uid": uuid4(rng),
        "sub": f"system:serviceaccount:{namespace}:{sa}",
    }, {"alg": "RS256", "kid": rand(rng, B64U, 43)})


def k8s_bound_sa_token(rng: random.Random, namespace: str = "default", sa: str = "default") -> str:
    iat = 1_790_000_000 + rng.randrange(10_000_000)
    return jwt(rng, {
        "aud": ["https://kubernetes.default.svc.cluster.local"],
        "exp": iat + 31_536_000, "iat": iat,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "kubernetes.io": {
            "namespace": namespace,
            "pod": {"name": f"{sa}-{rand(rng, LO36, 10)}-{rand(rng, LO36, 5)}", "uid": uuid4(rng)},
            "serviceaccount": {"name": sa, "uid": uuid4(rng)},
            "warnafter": iat + 3607},
        "nbf": iat,
        "sub": f"system:serviceaccount:{namespace}:{sa}",
    }, {"alg": "RS256", "kid": rand(rng, B64U, 43)})


def _base62(n: int, width: int) -> str:
    digits = string.digits + string.ascii_uppercase + string.ascii_lowercase
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = digits[r] + out
    return out.rjust(width, "0")


def with_crc_checksum(prefix: str, random30: str) -> str:
    """GitHub/npm token: prefix + 30 random base62 + base62(CRC32(random30)) in 6 chars."""
    return prefix + random30 + _base62(zlib.crc32(random30.encode()) & 0xFFFFFFFF, 6)


def github_token(rng: random.Random, prefix: str = "ghp_") -> str:
    return with_crc_checksum(prefix, rand(rng, A62, 30))


def npm_token(rng: random.Random) -> str:
    return with_crc_checksum("npm_", rand(rng, A62, 30))


def b64_alignments(text: str) -> list[str]:
    """The three base64url renderings of `text` at each byte offset, trimmed to the stable part."""
    out = []
    for pad in range(3):
        enc = b64url(b"\0" * pad + text.encode())
        start = (pad * 8 + 5) // 6  # first char that depends only on `text`
        end = ((pad + len(text)) * 8) // 6  # last full char
        out.append(enc[start:end])
    return out
