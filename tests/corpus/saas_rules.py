#!/usr/bin/env python3
"""Source of the SaaS and platform token rules in `engine/rules/saas-*.yaml`.

Each rule below carries a value generator; this script writes the YAML files with freshly
generated (deterministic, random, never real) positive examples and built-in negative examples,
and `generate.py` plants values from the same generators in the labelled corpus, so the rules,
their examples and the corpus cannot drift apart.

    python3 tests/corpus/saas_rules.py --write        # regenerate engine/rules/saas-*.yaml
    python3 tests/corpus/saas_rules.py --check [--rulecheck BIN]   # lint + run examples

`--check` emulates the engine (keywords prefilter, secret group, validators, placeholder check)
in Python; with `--rulecheck` (a tiny helper binary that runs the Rust `regex` crate with the
engine's builder settings) regexes are compiled and matched exactly as the engine does. The
authoritative check is the engine's own test (`cargo test -p snapsentry-engine`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tokgen import (  # noqa: E402
    A62, B64, B64U, BECH32, DIGITS, HEX, HEXU, LETTERS, LO36, UP36,
    b64_alignments, build, jwt as make_jwt, is_placeholder, k8s_bound_sa_token, k8s_legacy_sa_token, rand,
    rng_for, shannon_entropy, uuid4,
)

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "engine" / "rules"

# Right boundary for values whose alphabet includes '-' (where `\b` would misfire).
END = r"(?:[^0-9A-Za-z_-]|\z)"
# Between a context word (e.g. `DD_API_KEY`) and its value: rest of the name, then `=`, `:`,
# `: "`, `=>`, quotes or spaces, or `" value="` (.NET `<add key="…" value="…" />`).
SEP = r"""[\w.-]{0,24}(?:"[ \t]+value=|[\s"':=>]{1,6})[\s"']{0,2}"""
B64END = r"(?:[^0-9A-Za-z+/=_-]|\z)"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def uuid_gen(rng):
    return uuid4(rng)


@dataclass
class Rule:
    family: str
    id: str
    title: str
    secret_type: str
    severity: str
    keywords: list
    regex: str
    gen: object  # parts list for tokgen.build, or callable(rng) -> str
    var: str  # variable name used in the default example lines
    pos: list | None = None  # templates with {v}; default: `VAR=value` and a JSON line
    neg: list = field(default_factory=list)  # extra negative examples (plain text)
    validators: list = field(default_factory=list)
    confidence: str | None = None
    paths: list = field(default_factory=list)
    example_path: str | None = None
    target: dict | None = None
    window: int | None = None
    no_auto_neg: bool = False
    gen2: object = None  # optional second shape, used for every other value

    def value(self, i: int) -> str:
        rng = rng_for("saas-rule", self.id, i)
        gen = self.gen2 if self.gen2 is not None and i % 2 == 0 else self.gen
        return gen(rng) if callable(gen) else build(rng, gen)


RULES: list[Rule] = []


def R(family, id, title, stype, sev, kw, regex, gen, var, **kw2):
    RULES.append(Rule(family, id, title, stype, sev, list(kw), regex, gen, var, **kw2))


# Rules whose prefix is made of base64 characters (see `prefixed`).
B64SAFE = {
    "square-access-token", "jfrog-api-key", "jfrog-reference-token", "bitbucket-app-password",
    "atlassian-api-token", "atlassian-access-token", "gitlab-runner-registration-token", "nuget-api-key",
    "crates-io-token", "google-api-key", "alibaba-access-key-id", "tencent-secret-id", "yandex-api-key",
    "easypost-api-key", "grafana-api-key", "new-relic-license-key", "mailchimp-api-key", "trello-token",
    "twitter-bearer-token", "firebase-cloud-messaging-key", "salesforce-access-token", "octopus-deploy-api-key",
    "onepassword-secret-key", "heroku-api-key-v2",
}


def prefixed(family, id, title, stype, sev, prefix_re, body_re, gen, var, kw, end=r"\b", b64safe=False,
             **kw2):
    """A token recognised by its own prefix: `\\b(prefix body)END`. `b64safe`: the prefix is made
    of base64 characters, so also refuse `+`, `/`, `=` and `-` around the token (a PEM or
    base64 blob holds `EAAA…`, `AKCp…` or `AIza…` often enough to matter)."""
    b64safe = b64safe or id in B64SAFE
    start = r"(?:^|[^0-9A-Za-z+/_-])" if b64safe else r"\b"
    if b64safe and end in (r"\b", END):
        end = B64END
    R(family, id, title, stype, sev, kw, rf"{start}({prefix_re}{body_re}){end}", gen, var, **kw2)


def ctx(family, id, title, stype, sev, words_re, value_re, gen, var, kw, end=r"\b", **kw2):
    """A value recognised by a context word before it (`DATADOG_API_KEY=...`)."""
    kw2.setdefault("confidence", "medium")
    R(family, id, title, stype, sev, kw, rf"(?i:{words_re}){SEP}({value_re}){end}", gen, var, **kw2)


# ----------------------------------------------------------------------------------------------
# saas-devtools: source hosting, CI/CD, package registries, infrastructure-as-code, secret stores
# ----------------------------------------------------------------------------------------------
F = "saas-devtools"
GL = "GitLab token"
prefixed(F, "gitlab-pat", "GitLab personal, project or group access token", GL, "high",
         r"glpat-", r"(?:[0-9A-Za-z_-]{20}|[0-9A-Za-z_-]{27,300}\.[0-9a-z]{2}\.[0-9a-z]{7,9})",
         ["glpat-", (B64U, 19), (A62, 1)], "GITLAB_TOKEN", ["glpat-"], end=END,
         gen2=["glpat-", (B64U, 35), (A62, 1), ".01.", (LO36, 9)])
prefixed(F, "gitlab-deploy-token", "GitLab deploy token", GL, "high", r"gldt-", r"[0-9A-Za-z_-]{20}",
         ["gldt-", (B64U, 19), (A62, 1)], "CI_DEPLOY_PASSWORD", ["gldt-"], end=END)
prefixed(F, "gitlab-runner-auth-token", "GitLab runner authentication token", GL, "high",
         r"glrt-", r"(?:t\d_)?[0-9A-Za-z_-]{20,40}", ["glrt-t1_", (B64U, 26), (A62, 1)],
         "RUNNER_TOKEN", ["glrt-"], end=END)
prefixed(F, "gitlab-runner-registration-token", "GitLab runner registration token", GL, "high",
         r"GR1348941", r"[0-9A-Za-z_-]{20}", ["GR1348941", (B64U, 19), (A62, 1)],
         "REGISTRATION_TOKEN", ["GR1348941"], end=END)
prefixed(F, "gitlab-cicd-job-token", "GitLab CI/CD job token", GL, "medium", r"glcbt-",
         r"[0-9a-f]{1,5}_[0-9A-Za-z_-]{20}", ["glcbt-", (HEX, 2), "_", (B64U, 19), (A62, 1)],
         "CI_JOB_TOKEN", ["glcbt-"], end=END)
prefixed(F, "gitlab-feed-token", "GitLab feed token", GL, "medium", r"glft-", r"[0-9A-Za-z_-]{20}",
         ["glft-", (B64U, 19), (A62, 1)], "GITLAB_FEED_TOKEN", ["glft-"], end=END)
prefixed(F, "gitlab-oauth-app-secret", "GitLab OAuth application secret", GL, "high", r"gloas-",
         r"[0-9A-Za-z_-]{64}", ["gloas-", (B64U, 63), (A62, 1)], "GITLAB_OAUTH_SECRET", ["gloas-"], end=END)
prefixed(F, "gitlab-scim-token", "GitLab SCIM token", GL, "high", r"glsoat-", r"[0-9A-Za-z_-]{20}",
         ["glsoat-", (B64U, 19), (A62, 1)], "GITLAB_SCIM_TOKEN", ["glsoat-"], end=END)
prefixed(F, "gitlab-incoming-mail-token", "GitLab incoming email token", GL, "medium", r"glimt-",
         r"[0-9A-Za-z_-]{25}", ["glimt-", (B64U, 24), (A62, 1)], "GITLAB_INCOMING_MAIL", ["glimt-"], end=END)
prefixed(F, "gitlab-agent-token", "GitLab agent for Kubernetes token", GL, "high", r"glagent-",
         r"[0-9A-Za-z_-]{50}", ["glagent-", (B64U, 49), (A62, 1)], "GITLAB_AGENT_TOKEN", ["glagent-"], end=END)
prefixed(F, "gitlab-feature-flags-token", "GitLab feature flags client token", GL, "low", r"glffct-",
         r"[0-9A-Za-z_-]{20}", ["glffct-", (B64U, 19), (A62, 1)], "UNLEASH_TOKEN", ["glffct-"], end=END)
prefixed(F, "bitbucket-app-password", "Bitbucket app password", "Bitbucket app password", "high",
         r"ATBB", r"[A-Za-z0-9]{32}", ["ATBB", (A62, 32)], "BITBUCKET_APP_PASSWORD", ["ATBB"])
prefixed(F, "atlassian-api-token", "Atlassian (Jira, Confluence, Bitbucket) API token",
         "Atlassian API token", "high", r"ATATT3", r"[A-Za-z0-9_-]{150,250}=[A-F0-9]{8}",
         ["ATATT3xFfGF0", (B64U, 170), (A62, 1), "=", (HEXU, 8)], "JIRA_API_TOKEN", ["ATATT3"])
prefixed(F, "atlassian-access-token", "Atlassian organization or Bitbucket access token",
         "Atlassian API token", "high", r"ATCTT3", r"[A-Za-z0-9_-]{150,250}=[A-F0-9]{8}",
         ["ATCTT3xFfGN0", (B64U, 170), (A62, 1), "=", (HEXU, 8)], "ATLASSIAN_ADMIN_KEY", ["ATCTT3"])
ctx(F, "atlassian-api-token-legacy", "Atlassian API token (legacy, 24 characters)",
    "Atlassian API token", "high", r"jira|confluence|atlassian", r"[A-Za-z0-9]{24}",
    [(A62, 24)], "JIRA_API_TOKEN", ["jira", "confluence", "atlassian"], validators=["entropy:3.5"],
    neg=["api_token: {v}"])
prefixed(F, "docker-hub-token", "Docker Hub personal or organization access token",
         "Docker Hub token", "high", r"dckr_(?:pat|oat)_", r"[A-Za-z0-9_-]{27}",
         ["dckr_pat_", (B64U, 26), (A62, 1)], "DOCKERHUB_TOKEN", ["dckr_pat_", "dckr_oat_"], end=END,
         target={"kind": "registry"})
prefixed(F, "jfrog-api-key", "JFrog Artifactory API key", "JFrog token", "high", r"AKCp",
         r"[A-Za-z0-9]{69}", ["AKCp", (A62, 69)], "ARTIFACTORY_API_KEY", ["AKCp"],
         target={"kind": "registry"})
prefixed(F, "jfrog-reference-token", "JFrog reference (identity) token", "JFrog token", "high",
         r"cmVmdGtuOjAxOj", r"[A-Za-z0-9]{50}", ["cmVmdGtuOjAxOjE3", (A62, 48)], "JFROG_ACCESS_TOKEN",
         ["cmVmdGtuOjAxOj"], target={"kind": "registry"})
prefixed(F, "postman-api-key", "Postman API key", "Postman API key", "high", r"PMAK-",
         r"[a-f0-9]{24}-[a-f0-9]{34}", ["PMAK-", (HEX, 24), "-", (HEX, 34)], "POSTMAN_API_KEY", ["PMAK-"])
prefixed(F, "linear-api-key", "Linear API key", "Linear API key", "high", r"lin_api_",
         r"[A-Za-z0-9]{40}", ["lin_api_", (A62, 40)], "LINEAR_API_KEY", ["lin_api_"])
prefixed(F, "linear-oauth-token", "Linear OAuth access token", "Linear API key", "high", r"lin_oauth_",
         r"[a-f0-9]{64}", ["lin_oauth_", (HEX, 64)], "LINEAR_TOKEN", ["lin_oauth_"])
prefixed(F, "circleci-token", "CircleCI personal or project API token", "CircleCI token", "high",
         r"CCIP(?:AT|RJ)_", r"[A-Za-z0-9]{22}_[a-f0-9]{40}", ["CCIPAT_", (A62, 22), "_", (HEX, 40)],
         "CIRCLECI_TOKEN", ["CCIPAT_", "CCIPRJ_"])
ctx(F, "circleci-token-legacy", "CircleCI API token (legacy, 40 hex)", "CircleCI token", "high",
    r"circle", r"[a-f0-9]{40}", [(HEX, 40)], "CIRCLE_TOKEN", ["circle"], validators=["entropy:3.0"])
ctx(F, "travis-ci-token", "Travis CI API token", "Travis CI token", "high", r"travis",
    r"[A-Za-z0-9_-]{22}", [(A62, 22)], "TRAVIS_API_TOKEN", ["travis"], end=END,
    validators=["entropy:3.5"])
prefixed(F, "buildkite-api-token", "Buildkite API access token", "Buildkite token", "high", r"bkua_",
         r"[a-f0-9]{40}", ["bkua_", (HEX, 40)], "BUILDKITE_API_TOKEN", ["bkua_"])
ctx(F, "buildkite-agent-token", "Buildkite agent registration token", "Buildkite token", "high",
    r"buildkite[\w.-]{0,10}agent", r"[a-f0-9]{50}", [(HEX, 50)], "BUILDKITE_AGENT_TOKEN",
    ["buildkite"], validators=["entropy:3.0"])
ctx(F, "snyk-api-token", "Snyk API token", "Snyk token", "high", r"snyk", UUID, uuid_gen,
    "SNYK_TOKEN", ["snyk"])
prefixed(F, "sonarqube-token", "SonarQube user, project or analysis token", "SonarQube token",
         "high", r"sq[upa]_", r"[a-f0-9]{40}", ["squ_", (HEX, 40)], "SONAR_TOKEN", ["squ_", "sqp_", "sqa_"])
ctx(F, "sonarqube-token-legacy", "SonarQube / SonarCloud token (legacy, 40 hex)", "SonarQube token",
    "high", r"sonar", r"[a-f0-9]{40}", [(HEX, 40)], "SONAR_TOKEN", ["sonar"],
    validators=["entropy:3.0"], pos=["sonar.login={v}", "SONAR_TOKEN: {v}"])
R(F, "npm-legacy-token", "npm access token (legacy UUID) in .npmrc", "npm token", "high",
  ["_authToken"], rf"(?i:_authToken)\s*=\s*[\"']?({UUID})\b", uuid_gen, "NPM_TOKEN",
  pos=["//registry.npmjs.org/:_authToken={v}", "//npm.pkg.internal.corp/:_authToken=\"{v}\""],
  neg=["//registry.npmjs.org/:_authToken=${NPM_TOKEN}", "{v}"], target={"kind": "registry"})
prefixed(F, "rubygems-api-key", "RubyGems API key", "RubyGems API key", "high", r"rubygems_",
         r"[a-f0-9]{48}", ["rubygems_", (HEX, 48)], "GEM_HOST_API_KEY", ["rubygems_"],
         pos=[":rubygems_api_key: {v}", "GEM_HOST_API_KEY={v}"], target={"kind": "registry"})
prefixed(F, "nuget-api-key", "NuGet.org API key", "NuGet API key", "high", r"oy2", r"[a-z0-9]{43}",
         ["oy2", (LO36, 43)], "NUGET_API_KEY", ["oy2"], validators=["entropy:3.5"],
         target={"kind": "registry"})
prefixed(F, "pypi-token", "PyPI upload token", "PyPI token", "high", r"pypi-AgEIcHlwaS5vcmc",
         r"[A-Za-z0-9_-]{50,400}", ["pypi-AgEIcHlwaS5vcmc", (B64U, 150), (A62, 1)], "TWINE_PASSWORD",
         ["pypi-AgEIcHlwaS5vcmc"], end="", pos=["password = {v}", "TWINE_PASSWORD={v}"],
         target={"kind": "registry"})
prefixed(F, "testpypi-token", "TestPyPI upload token", "PyPI token", "low", r"pypi-AgENdGVzdC5weXBpLm9yZw",
         r"[A-Za-z0-9_-]{50,400}", ["pypi-AgENdGVzdC5weXBpLm9yZw", (B64U, 150), (A62, 1)], "TWINE_PASSWORD",
         ["pypi-AgENdGVzdC5weXBpLm9yZw"], end="", pos=["password = {v}", "TWINE_PASSWORD={v}"])
prefixed(F, "crates-io-token", "crates.io API token", "crates.io token", "high", r"cio",
         r"[A-Za-z0-9]{32}", ["cio", (A62, 32)], "CARGO_REGISTRY_TOKEN", ["cio"],
         validators=["entropy:4.0"], pos=['token = "{v}"', "CARGO_REGISTRY_TOKEN={v}"])
prefixed(F, "clojars-token", "Clojars deploy token", "Clojars token", "high", r"CLOJARS_",
         r"[a-z0-9]{60}", ["CLOJARS_", (LO36, 60)], "CLOJARS_PASSWORD", ["CLOJARS_"])
VT = "HashiCorp Vault token"
prefixed(F, "vault-service-token", "HashiCorp Vault service token", VT, "critical", r"hvs\.",
         r"[A-Za-z0-9_-]{90,120}", ["hvs.CAESI", (B64U, 86), (A62, 1)], "VAULT_TOKEN", ["hvs."], end=END)
prefixed(F, "vault-batch-token", "HashiCorp Vault batch token", VT, "high", r"hvb\.",
         r"[A-Za-z0-9_-]{138,300}", ["hvb.AAAAAQ", (B64U, 140), (A62, 1)], "VAULT_TOKEN", ["hvb."], end=END)
prefixed(F, "vault-recovery-token", "HashiCorp Vault recovery token", VT, "critical", r"hvr\.",
         r"[A-Za-z0-9_-]{90,120}", ["hvr.CAESI", (B64U, 86), (A62, 1)], "VAULT_RECOVERY_TOKEN", ["hvr."], end=END)
ctx(F, "vault-legacy-token", "HashiCorp Vault token (legacy s. format)", VT, "critical",
    r"vault", r"s\.[A-Za-z0-9]{24}", ["s.", (A62, 24)], "VAULT_TOKEN", ["vault"],
    validators=["entropy:3.5"])
prefixed(F, "terraform-cloud-token", "Terraform Cloud / Enterprise API token", "Terraform Cloud token",
         "critical", r"[A-Za-z0-9]{14}\.atlasv1\.", r"[A-Za-z0-9_=-]{60,70}",
         [(A62, 14), ".atlasv1.", (B64U, 66), (A62, 1)], "TFE_TOKEN", [".atlasv1."], end=END,
         pos=['token = "{v}"', '{{"credentials": {{"app.terraform.io": {{"token": "{v}"}}}}}}'])
prefixed(F, "pulumi-access-token", "Pulumi access token", "Pulumi token", "high", r"pul-",
         r"[a-f0-9]{40}", ["pul-", (HEX, 40)], "PULUMI_ACCESS_TOKEN", ["pul-"])
ctx(F, "consul-acl-token", "HashiCorp Consul ACL token", "HashiCorp Consul token", "high",
    r"consul", UUID, uuid_gen, "CONSUL_HTTP_TOKEN", ["consul"])
ctx(F, "nomad-acl-token", "HashiCorp Nomad ACL token", "HashiCorp Nomad token", "high",
    r"nomad", UUID, uuid_gen, "NOMAD_TOKEN", ["nomad"])
prefixed(F, "doppler-token", "Doppler personal, CLI, service-account, SCIM or audit token",
         "Doppler token", "high", r"dp\.(?:pt|ct|sa|scim|audit)\.", r"[A-Za-z0-9]{40,44}",
         ["dp.pt.", (A62, 43)], "DOPPLER_TOKEN",
         ["dp.pt.", "dp.ct.", "dp.sa.", "dp.scim.", "dp.audit."])
prefixed(F, "doppler-service-token", "Doppler service token", "Doppler token", "high", r"dp\.st\.",
         r"(?:[a-z0-9_-]{2,35}\.)?[A-Za-z0-9]{40,44}", ["dp.st.prd.", (A62, 43)], "DOPPLER_TOKEN",
         ["dp.st."])
prefixed(F, "onepassword-service-account-token", "1Password service account token",
         "1Password token", "critical", r"ops_eyJ", r"[A-Za-z0-9+/=_-]{200,1500}",
         ["ops_eyJ", (B64U, 600)], "OP_SERVICE_ACCOUNT_TOKEN", ["ops_eyJ"], end="", window=2048)
prefixed(F, "onepassword-secret-key", "1Password account secret key", "1Password token", "critical",
         r"A3-", r"[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}",
         ["A3-", (UP36, 6), "-", (UP36, 6), "-", (UP36, 5), "-", (UP36, 5), "-", (UP36, 5), "-", (UP36, 5)],
         "OP_SECRET_KEY", ["A3-"])
prefixed(F, "age-secret-key", "age encryption secret key", "age secret key", "high",
         r"AGE-SECRET-KEY-1", r"[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
         ["AGE-SECRET-KEY-1", (BECH32, 58)], "SOPS_AGE_KEY", ["AGE-SECRET-KEY-1"],
         pos=["# public key: age1{p}\n{v}", "SOPS_AGE_KEY={v}"])
prefixed(F, "tailscale-key", "Tailscale auth, API or OAuth client key", "Tailscale key", "high",
         r"tskey-(?:auth|api|client|scim|webhook)-", r"[A-Za-z0-9]{10,18}-[A-Za-z0-9]{30,34}",
         ["tskey-auth-k", (A62, 10), "CNTRL-", (A62, 32)], "TS_AUTHKEY", ["tskey-"])
ctx(F, "ngrok-authtoken", "ngrok authtoken", "ngrok token", "high", r"ngrok|authtoken",
    r"[1-9][A-Za-z0-9]{26}_[A-Za-z0-9]{21}", ["2", (A62, 26), "_", (A62, 21)], "NGROK_AUTHTOKEN",
    ["ngrok", "authtoken"], pos=["authtoken: {v}", "NGROK_AUTHTOKEN={v}"])
prefixed(F, "jumpcloud-api-key", "JumpCloud API key", "JumpCloud API key", "high", r"jca_",
         r"[A-Za-z0-9]{36}", ["jca_", (A62, 36)], "JC_API_KEY", ["jca_"])
prefixed(F, "harness-pat", "Harness personal or service account token", "Harness token", "high",
         r"(?:pat|sat)\.", r"[A-Za-z0-9_-]{22}\.[a-f0-9]{24}\.[A-Za-z0-9]{20}",
         ["pat.", (B64U, 21), (A62, 1), ".", (HEX, 24), ".", (A62, 20)], "HARNESS_TOKEN", ["pat.", "sat."])
prefixed(F, "octopus-deploy-api-key", "Octopus Deploy API key", "Octopus Deploy API key", "high",
         r"API-", r"[A-Z0-9]{26,27}", ["API-", (UP36, 26)], "OCTOPUS_API_KEY", ["API-"],
         validators=["entropy:3.5"])
prefixed(F, "sourcegraph-token", "Sourcegraph access token", "Sourcegraph token", "high", r"sgp_",
         r"(?:[a-f0-9]{16}|local)_[a-f0-9]{40}", ["sgp_", (HEX, 16), "_", (HEX, 40)], "SRC_ACCESS_TOKEN", ["sgp_"])
prefixed(F, "readme-api-key", "ReadMe API key", "ReadMe API key", "medium", r"rdme_", r"[a-z0-9]{70}",
         ["rdme_", (LO36, 70)], "README_API_KEY", ["rdme_"])
prefixed(F, "infracost-api-key", "Infracost API key", "Infracost API key", "medium", r"ico-",
         r"[A-Za-z0-9]{32}", ["ico-", (A62, 32)], "INFRACOST_API_KEY", ["ico-"])
prefixed(F, "prefect-api-key", "Prefect Cloud API key", "Prefect API key", "high", r"pnu_",
         r"[A-Za-z0-9]{36}", ["pnu_", (A62, 36)], "PREFECT_API_KEY", ["pnu_"])
prefixed(F, "scalingo-api-token", "Scalingo API token", "Scalingo token", "high", r"tk-us-",
         r"[A-Za-z0-9_-]{48}", ["tk-us-", (B64U, 47), (A62, 1)], "SCALINGO_API_TOKEN", ["tk-us-"], end=END)
ctx(F, "codecov-token", "Codecov upload token", "Codecov token", "medium", r"codecov", UUID,
    uuid_gen, "CODECOV_TOKEN", ["codecov"])
prefixed(F, "figma-pat", "Figma personal access token", "Figma token", "medium", r"figd_",
         r"[A-Za-z0-9_-]{40}", ["figd_", (B64U, 39), (A62, 1)], "FIGMA_TOKEN", ["figd_"], end=END)
prefixed(F, "contentful-pat", "Contentful personal access token", "Contentful token", "high",
         r"CFPAT-", r"[A-Za-z0-9_-]{43}", ["CFPAT-", (B64U, 42), (A62, 1)], "CONTENTFUL_MANAGEMENT_TOKEN",
         ["CFPAT-"], end=END)
prefixed(F, "frameio-token", "Frame.io developer token", "Frame.io token", "medium", r"fio-u-",
         r"[A-Za-z0-9_=-]{64}", ["fio-u-", (B64U, 63), (A62, 1)], "FRAMEIO_TOKEN", ["fio-u-"], end=END)

_K8S_ALIGN = "|".join(b64_alignments('"kubernetes.io":{'))
R(F, "kubernetes-service-account-token", "Kubernetes service account token", "Kubernetes token",
  "high", ["eyJhbGciOiJSUzI1NiIsImtpZCI6"],
  r"\b(eyJhbGciOiJSUzI1NiIsImtpZCI6[A-Za-z0-9_-]{20,200}\.(?:eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50Ii"
  rf"|eyJ[A-Za-z0-9_-]{{0,600}}(?:{_K8S_ALIGN}))[A-Za-z0-9_-]{{20,4000}}\.[A-Za-z0-9_-]{{40,1000}})",
  k8s_bound_sa_token, "KUBE_TOKEN", gen2=k8s_legacy_sa_token, validators=["jwt"], window=4096, target={"kind": "host"},
  pos=["token: {v}", "{v}"],
  neg=["eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJ1c2VyLTQyIiwibmFtZSI6IkFsaWNlIn0.c2lnbmF0dXJl"])


# ----------------------------------------------------------------------------------------------
# saas-comms: chat, e-mail, SMS, ticketing, collaboration
# ----------------------------------------------------------------------------------------------
F = "saas-comms"
SL = "Slack token"
prefixed(F, "slack-bot-token", "Slack bot token", SL, "high", r"xoxb-",
         r"[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24}", ["xoxb-", (DIGITS, 12), "-", (DIGITS, 13), "-", (A62, 24)],
         "SLACK_BOT_TOKEN", ["xoxb-"])
prefixed(F, "slack-user-token", "Slack user token", SL, "high", r"xoxp-",
         r"[0-9]{10,13}-[0-9]{10,13}-[0-9]{10,13}-[a-f0-9]{32}",
         ["xoxp-", (DIGITS, 12), "-", (DIGITS, 12), "-", (DIGITS, 13), "-", (HEX, 32)], "SLACK_USER_TOKEN", ["xoxp-"])
prefixed(F, "slack-app-token", "Slack app-level token", SL, "high", r"xapp-",
         r"[0-9]-[A-Z0-9]{9,11}-[0-9]{10,13}-[a-f0-9]{64}",
         ["xapp-1-A", (UP36, 10), "-", (DIGITS, 13), "-", (HEX, 64)], "SLACK_APP_TOKEN", ["xapp-"])
prefixed(F, "slack-config-token", "Slack app configuration token", SL, "high", r"xoxe\.xox[bp]-",
         r"[0-9]-[A-Za-z0-9]{160,170}", ["xoxe.xoxp-1-", (A62, 166)], "SLACK_CONFIG_TOKEN", ["xoxe.xox"])
prefixed(F, "slack-config-refresh-token", "Slack configuration refresh token", SL, "high", r"xoxe-",
         r"[0-9]-[A-Za-z0-9]{140,150}", ["xoxe-1-", (A62, 146)], "SLACK_REFRESH_TOKEN", ["xoxe-"])
prefixed(F, "slack-legacy-token", "Slack legacy workspace, bot or user token", SL, "high",
         r"xox[aors]-", r"[0-9]{1,13}-[0-9A-Za-z-]{20,140}",
         ["xoxs-", (DIGITS, 11), "-", (DIGITS, 12), "-", (DIGITS, 12), "-", (HEX, 64)], "SLACK_LEGACY_TOKEN",
         ["xoxa-", "xoxo-", "xoxr-", "xoxs-"], end=END, validators=["entropy:3.0"])
R(F, "slack-webhook-url", "Slack incoming webhook URL", "Slack webhook", "medium", ["hooks.slack.com"],
  r"https://hooks\.slack\.com/services/T[A-Z0-9]{8,12}/B[A-Z0-9]{8,12}/(?P<secret>[A-Za-z0-9]{24})\b",
  ["https://hooks.slack.com/services/T", (UP36, 10), "/B", (UP36, 10), "/", (A62, 24)], "SLACK_WEBHOOK_URL")
R(F, "slack-workflow-webhook-url", "Slack workflow webhook URL", "Slack webhook", "medium",
  ["hooks.slack.com"],
  r"https://hooks\.slack\.com/(?:workflows|triggers)/T[A-Z0-9]{8,12}/A[A-Z0-9]{8,12}/[0-9]{15,20}/(?P<secret>[a-f0-9]{32})\b",
  ["https://hooks.slack.com/triggers/T", (UP36, 10), "/A", (UP36, 10), "/", (DIGITS, 18), "/", (HEX, 32)],
  "SLACK_WORKFLOW_URL")
ctx(F, "discord-bot-token", "Discord bot token", "Discord token", "high", r"discord",
    r"[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}",
    ["M", (A62, 23), ".", (B64U, 6), ".", (B64U, 37), (A62, 1)], "DISCORD_BOT_TOKEN", ["discord"], end=END)
R(F, "discord-webhook-url", "Discord webhook URL", "Discord webhook", "medium",
  ["discord.com/api/webhooks", "discordapp.com/api/webhooks"],
  rf"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/[0-9]{{17,20}}/(?P<secret>[A-Za-z0-9_-]{{60,68}}){END}",
  ["https://discord.com/api/webhooks/1", (DIGITS, 18), "/", (B64U, 67), (A62, 1)], "DISCORD_WEBHOOK")
R(F, "telegram-bot-token", "Telegram bot token", "Telegram bot token", "high", [":AA"],
  rf"(?:\b|/bot)([0-9]{{8,10}}:AA[A-Za-z0-9_-]{{33}}){END}", ["7", (DIGITS, 9), ":AA", (B64U, 32), (A62, 1)],
  "TELEGRAM_BOT_TOKEN", pos=["TELEGRAM_BOT_TOKEN={v}", "curl https://api.telegram.org/bot{v}/getMe"])
R(F, "teams-incoming-webhook-url", "Microsoft Teams incoming webhook URL", "Microsoft Teams webhook",
  "medium", ["webhook.office.com"],
  rf"https://[a-z0-9-]+\.webhook\.office\.com/webhookb2/{UUID}@{UUID}/IncomingWebhook/(?P<secret>[a-f0-9]{{32}})/{UUID}",
  ["https://contoso.webhook.office.com/webhookb2/", uuid_gen, "@", uuid_gen, "/IncomingWebhook/", (HEX, 32), "/", uuid_gen],
  "TEAMS_WEBHOOK_URL")
ctx(F, "twilio-auth-token", "Twilio auth token or API key secret", "Twilio credential", "high",
    r"twilio", r"[A-Za-z0-9]{32}", [(HEX, 32)], "TWILIO_AUTH_TOKEN", ["twilio"], validators=["entropy:3.2"])
prefixed(F, "sendgrid-api-key", "SendGrid API key", "SendGrid API key", "high", r"SG\.",
         r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}", ["SG.", (B64U, 22), ".", (B64U, 42), (A62, 1)],
         "SENDGRID_API_KEY", ["SG."], end=END)
prefixed(F, "mailgun-api-key", "Mailgun private API key", "Mailgun API key", "high", r"key-",
         r"[a-f0-9]{32}", ["key-", (HEX, 32)], "MAILGUN_API_KEY", ["key-"], validators=["entropy:3.0"])
ctx(F, "mailgun-signing-key", "Mailgun API or webhook signing key", "Mailgun API key", "high",
    r"mailgun", r"[a-f0-9]{32}-[a-f0-9]{8}-[a-f0-9]{8}", [(HEX, 32), "-", (HEX, 8), "-", (HEX, 8)],
    "MAILGUN_SIGNING_KEY", ["mailgun"])
prefixed(F, "mailchimp-api-key", "Mailchimp API key", "Mailchimp API key", "high", r"",
         r"[a-f0-9]{32}-us[0-9]{1,2}", [(HEX, 32), "-us", (DIGITS, 2)], "MAILCHIMP_API_KEY", ["-us"],
         validators=["entropy:3.0"])
ctx(F, "mandrill-api-key", "Mandrill (Mailchimp Transactional) API key", "Mailchimp API key", "high",
    r"mandrill", r"(?:md-)?[A-Za-z0-9_-]{22}", ["md-", (B64U, 21), (A62, 1)], "MANDRILL_API_KEY", ["mandrill"],
    end=END, validators=["entropy:3.5"])
ctx(F, "postmark-server-token", "Postmark server or account token", "Postmark token", "high",
    r"postmark", UUID, uuid_gen, "POSTMARK_SERVER_TOKEN", ["postmark"],
    pos=["X-Postmark-Server-Token: {v}", "POSTMARK_API_TOKEN={v}"])
prefixed(F, "brevo-api-key", "Brevo (Sendinblue) API or SMTP key", "Brevo API key", "high",
         r"x(?:keysib|smtpsib)-", r"[a-f0-9]{64}-[A-Za-z0-9]{16}", ["xkeysib-", (HEX, 64), "-", (A62, 16)],
         "BREVO_API_KEY", ["xkeysib-", "xsmtpsib-"])
prefixed(F, "resend-api-key", "Resend API key", "Resend API key", "high", r"re_",
         r"[A-Za-z0-9]{8}_[A-Za-z0-9]{24}", ["re_", (A62, 8), "_", (A62, 24)], "RESEND_API_KEY", ["re_"])
prefixed(F, "mailersend-api-token", "MailerSend API token", "MailerSend token", "high", r"mlsn\.",
         r"[a-f0-9]{64}", ["mlsn.", (HEX, 64)], "MAILERSEND_API_KEY", ["mlsn."])
ctx(F, "sparkpost-api-key", "SparkPost API key", "SparkPost API key", "high", r"sparkpost",
    r"[a-f0-9]{40}", [(HEX, 40)], "SPARKPOST_API_KEY", ["sparkpost"], validators=["entropy:3.0"])
ctx(F, "vonage-api-secret", "Vonage (Nexmo) API secret", "Vonage API secret", "high",
    r"vonage|nexmo", r"[A-Za-z0-9]{16}", [(A62, 16)], "VONAGE_API_SECRET", ["vonage", "nexmo"],
    validators=["entropy:3.3"])
ctx(F, "plivo-auth-token", "Plivo auth token", "Plivo auth token", "high", r"plivo",
    r"[A-Za-z0-9]{40}", [(A62, 40)], "PLIVO_AUTH_TOKEN", ["plivo"], validators=["entropy:4.0"])
ctx(F, "messagebird-api-key", "MessageBird API key", "MessageBird API key", "high", r"messagebird",
    r"[A-Za-z0-9]{25}", [(A62, 25)], "MESSAGEBIRD_API_KEY", ["messagebird"], validators=["entropy:3.5"])
ctx(F, "zendesk-api-token", "Zendesk API token", "Zendesk API token", "high", r"zendesk",
    r"[A-Za-z0-9]{40}", [(A62, 40)], "ZENDESK_API_TOKEN", ["zendesk"], validators=["entropy:4.0"])
ctx(F, "intercom-access-token", "Intercom access token", "Intercom token", "high", r"intercom",
    r"dG9rO[A-Za-z0-9+/_-]{40,80}={0,2}", ["dG9rOj", (B64, 53), (A62, 1), "="], "INTERCOM_ACCESS_TOKEN",
    ["intercom"], end="")
prefixed(F, "hubspot-private-app-token", "HubSpot private app token", "HubSpot token", "high",
         r"pat-(?:na|eu)[0-9]-", UUID, ["pat-na1-", uuid_gen], "HUBSPOT_ACCESS_TOKEN", ["pat-na", "pat-eu"])
ctx(F, "asana-pat", "Asana personal access token", "Asana token", "high", r"asana",
    r"[0-9]/[0-9]{13,16}(?:/[0-9]{13,16})?:[a-f0-9]{32}",
    ["2/", (DIGITS, 16), "/", (DIGITS, 16), ":", (HEX, 32)], "ASANA_TOKEN", ["asana"])
prefixed(F, "trello-token", "Trello API token", "Trello token", "high", r"ATTA", r"[a-f0-9]{64}[A-F0-9]{8}",
         ["ATTA", (HEX, 64), (HEXU, 8)], "TRELLO_TOKEN", ["ATTA"])
prefixed(F, "clickup-api-token", "ClickUp personal API token", "ClickUp token", "high", r"pk_",
         r"[0-9]{6,10}_[A-Z0-9]{32}", ["pk_", (DIGITS, 8), "_", (UP36, 32)], "CLICKUP_API_TOKEN", ["pk_"])
prefixed(F, "notion-integration-token", "Notion integration token (secret_)", "Notion token", "high",
         r"secret_", r"[A-Za-z0-9]{43}", ["secret_", (A62, 43)], "NOTION_TOKEN", ["secret_"],
         validators=["entropy:4.0"])
prefixed(F, "notion-token", "Notion integration token (ntn_)", "Notion token", "high", r"ntn_",
         r"[0-9]{11}[A-Za-z0-9]{35}", ["ntn_", (DIGITS, 11), (A62, 35)], "NOTION_TOKEN", ["ntn_"])
ctx(F, "airtable-token", "Airtable personal access token or API key", "Airtable token", "high",
    r"airtable", r"pat[A-Za-z0-9]{14}\.[a-f0-9]{64}|key[A-Za-z0-9]{14}",
    ["pat", (A62, 14), ".", (HEX, 64)], "AIRTABLE_API_KEY", ["airtable"])
prefixed(F, "typeform-pat", "Typeform personal access token", "Typeform token", "medium", r"tfp_",
         r"[A-Za-z0-9_-]{44}_[A-Za-z0-9_-]{14}", ["tfp_", (A62, 44), "_", (A62, 14)], "TYPEFORM_TOKEN", ["tfp_"],
         end=END)
prefixed(F, "dropbox-access-token", "Dropbox short-lived access token", "Dropbox token", "high",
         r"sl\.(?:u\.)?", r"[A-Za-z0-9_-]{130,1200}", ["sl.", (B64U, 137), (A62, 1)], "DROPBOX_TOKEN", ["sl."],
         end=END, window=2048)
prefixed(F, "twitter-bearer-token", "X (Twitter) app bearer token", "X (Twitter) token", "high",
         r"AAAAAAAAAAAAAAAAAAAAA", r"[A-Za-z0-9%]{0,60}%[0-9A-F]{2}[A-Za-z0-9%]{20,110}",
         ["AAAAAAAAAAAAAAAAAAAAA", (A62, 9), "AAAAAAA", (A62, 4), "%2B", (A62, 20), "%3D", (A62, 40)],
         "TWITTER_BEARER_TOKEN", ["AAAAAAAAAAAAAAAAAAAAA"], end="")
ctx(F, "facebook-app-secret", "Facebook / Meta app secret", "Meta app secret", "high",
    r"facebook|fb_app|meta_app", r"[a-f0-9]{32}", [(HEX, 32)], "FACEBOOK_APP_SECRET",
    ["facebook", "fb_app", "meta_app"], validators=["entropy:3.0"])
prefixed(F, "facebook-access-token", "Facebook / Meta access token", "Meta access token", "high",
         r"EAACEdEose0cBA", r"[A-Za-z0-9]{20,300}", ["EAACEdEose0cBA", (A62, 160)], "FB_ACCESS_TOKEN",
         ["EAACEdEose0cBA"])
ctx(F, "twitch-client-secret", "Twitch client secret or OAuth token", "Twitch token", "high", r"twitch",
    r"(?:oauth:)?[a-z0-9]{30}", [(LO36, 30)], "TWITCH_CLIENT_SECRET", ["twitch"], validators=["entropy:3.5"])
ctx(F, "pagerduty-api-key", "PagerDuty API key", "PagerDuty API key", "high", r"pagerduty",
    r"[A-Za-z0-9_+-]{20}", [(A62, 20)], "PAGERDUTY_TOKEN", ["pagerduty"], end=END,
    validators=["entropy:3.5"])
ctx(F, "opsgenie-api-key", "Opsgenie API key", "Opsgenie API key", "high", r"opsgenie|genie",
    UUID, uuid_gen, "OPSGENIE_API_KEY", ["opsgenie", "genie"], pos=["OPSGENIE_API_KEY={v}", "Authorization: GenieKey {v}"])


# ----------------------------------------------------------------------------------------------
# saas-payments: payment providers, commerce, shipping
# ----------------------------------------------------------------------------------------------
F = "saas-payments"
prefixed(F, "stripe-secret-key", "Stripe live secret key", "Stripe key", "critical", r"sk_live_",
         r"[A-Za-z0-9]{24,247}", ["sk_live_", (A62, 24)], "STRIPE_SECRET_KEY", ["sk_live_"])
prefixed(F, "stripe-restricted-key", "Stripe live restricted key", "Stripe key", "high", r"rk_live_",
         r"[A-Za-z0-9]{24,247}", ["rk_live_", (A62, 24)], "STRIPE_RESTRICTED_KEY", ["rk_live_"])
prefixed(F, "stripe-webhook-secret", "Stripe webhook signing secret", "Stripe key", "medium", r"whsec_",
         r"[A-Za-z0-9+/]{32,88}={0,2}", ["whsec_", (A62, 32)], "STRIPE_WEBHOOK_SECRET", ["whsec_"], end="")
prefixed(F, "square-access-token", "Square access token", "Square token", "critical", r"(?:EAAA|sq0atp-)",
         r"[A-Za-z0-9_-]{22,60}", ["EAAA", (B64U, 59), (A62, 1)], "SQUARE_ACCESS_TOKEN", ["EAAA", "sq0atp-"],
         end=END, validators=["entropy:4.0"])
prefixed(F, "square-oauth-secret", "Square OAuth application secret", "Square token", "high",
         r"sq0csp-", r"[A-Za-z0-9_-]{43}", ["sq0csp-", (B64U, 42), (A62, 1)], "SQUARE_OAUTH_SECRET",
         ["sq0csp-"], end=END)
prefixed(F, "braintree-access-token", "PayPal Braintree production access token",
         "PayPal/Braintree credential", "critical", r"access_token\$production\$",
         r"[a-z0-9]{16}\$[a-f0-9]{32}", ["access_token$production$", (LO36, 16), "$", (HEX, 32)],
         "BRAINTREE_ACCESS_TOKEN", ["access_token$production$"])
ctx(F, "braintree-private-key", "Braintree private key", "PayPal/Braintree credential", "high",
    r"braintree", r"[a-f0-9]{32}", [(HEX, 32)], "BRAINTREE_PRIVATE_KEY", ["braintree"],
    validators=["entropy:3.0"])
ctx(F, "paypal-client-secret", "PayPal REST client secret", "PayPal/Braintree credential", "high",
    r"paypal", r"E[A-Za-z0-9_-]{79}", ["E", (B64U, 78), (A62, 1)], "PAYPAL_CLIENT_SECRET", ["paypal"],
    end=END)
prefixed(F, "plaid-access-token", "Plaid production access token", "Plaid token", "high",
         r"access-(?:production|development)-", UUID, ["access-production-", uuid_gen], "PLAID_ACCESS_TOKEN",
         ["access-production-", "access-development-"])
ctx(F, "plaid-secret", "Plaid API secret", "Plaid token", "high", r"plaid", r"[a-f0-9]{30}",
    [(HEX, 30)], "PLAID_SECRET", ["plaid"], validators=["entropy:3.0"])
# The name must start a word (or follow `_`) and say "secret": `rzp` alone, or `razorpay` inside a
# word, turns up in base64 blobs (`…Qurzp⏎KUpR…`), which then matched as a 24-character secret.
ctx(F, "razorpay-key-secret", "Razorpay key secret", "Razorpay key", "high",
    r"(?:\b|_)razorpay[\w.-]{0,12}?secret", r"[A-Za-z0-9]{24}", [(A62, 24)], "RAZORPAY_KEY_SECRET",
    ["razorpay"], validators=["entropy:3.5"], end=B64END,
    neg=["MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qurzp\n"
         "KUpRKfFLfRYC9AIKjbJTWitX+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm",
         "RAZORPAY_KEY_ID=rzp_live_Zq8wM2rX9vLkT4"])
prefixed(F, "flutterwave-secret-key", "Flutterwave live secret key", "Flutterwave key", "high",
         r"FLWSECK-", r"[a-f0-9]{32}-X", ["FLWSECK-", (HEX, 32), "-X"], "FLW_SECRET_KEY", ["FLWSECK-"], end=END)
prefixed(F, "shopify-access-token", "Shopify Admin API, custom or private app token", "Shopify token",
         "critical", r"shp(?:at|ca|pa)_", r"[a-fA-F0-9]{32}", ["shpat_", (HEX, 32)], "SHOPIFY_ACCESS_TOKEN",
         ["shpat_", "shpca_", "shppa_"])
prefixed(F, "shopify-shared-secret", "Shopify app shared secret", "Shopify token", "high", r"shpss_",
         r"[a-fA-F0-9]{32}", ["shpss_", (HEX, 32)], "SHOPIFY_API_SECRET", ["shpss_"])
prefixed(F, "woocommerce-consumer-secret", "WooCommerce REST consumer secret", "WooCommerce key",
         "high", r"cs_", r"[a-f0-9]{40}", ["cs_", (HEX, 40)], "WC_CONSUMER_SECRET", ["cs_"])
prefixed(F, "shippo-api-token", "Shippo live API token", "Shippo token", "medium", r"shippo_live_",
         r"[a-f0-9]{40}", ["shippo_live_", (HEX, 40)], "SHIPPO_API_KEY", ["shippo_live_"])
prefixed(F, "easypost-api-key", "EasyPost production API key", "EasyPost API key", "medium", r"EZAK",
         r"[a-z0-9]{54}", ["EZAK", (LO36, 54)], "EASYPOST_API_KEY", ["EZAK"], validators=["entropy:4.0"])
prefixed(F, "duffel-api-token", "Duffel live API token", "Duffel token", "high", r"duffel_live_",
         r"[A-Za-z0-9_=-]{43}", ["duffel_live_", (B64U, 42), (A62, 1)], "DUFFEL_ACCESS_TOKEN", ["duffel_live_"],
         end=END)
ctx(F, "mollie-api-key", "Mollie live API key", "Mollie API key", "high", r"mollie", r"live_[A-Za-z0-9]{30}",
    ["live_", (A62, 30)], "MOLLIE_API_KEY", ["mollie"])
ctx(F, "gocardless-access-token", "GoCardless live access token", "GoCardless token", "high",
    r"gocardless", r"live_[A-Za-z0-9_=-]{40}", ["live_", (B64U, 39), (A62, 1)], "GOCARDLESS_ACCESS_TOKEN",
    ["gocardless"], end=END)
prefixed(F, "coinbase-cdp-key-name", "Coinbase Developer Platform API key secret", "Coinbase API key",
         "critical", r"organizations/[0-9a-f-]{36}/apiKeys/", r"[0-9a-f-]{36}",
         ["organizations/", uuid_gen, "/apiKeys/", uuid_gen], "COINBASE_API_KEY_NAME",
         ["/apiKeys/"], confidence="medium")


# ----------------------------------------------------------------------------------------------
# saas-ai: model providers, vector stores, ML platforms
# ----------------------------------------------------------------------------------------------
F = "saas-ai"
prefixed(F, "anthropic-api-key", "Anthropic API key", "Anthropic API key", "high", r"sk-ant-api03-",
         r"[A-Za-z0-9_-]{93}AA", ["sk-ant-api03-", (B64U, 93), "AA"], "ANTHROPIC_API_KEY", ["sk-ant-api03-"],
         end=END)
prefixed(F, "anthropic-admin-key", "Anthropic Admin API key", "Anthropic API key", "critical",
         r"sk-ant-admin01-", r"[A-Za-z0-9_-]{93}AA", ["sk-ant-admin01-", (B64U, 93), "AA"],
         "ANTHROPIC_ADMIN_KEY", ["sk-ant-admin01-"], end=END)
prefixed(F, "huggingface-token", "Hugging Face access token", "Hugging Face token", "high", r"hf_",
         r"[A-Za-z]{34}", ["hf_", (LETTERS, 34)], "HF_TOKEN", ["hf_"], validators=["entropy:4.0"])
prefixed(F, "huggingface-org-token", "Hugging Face organization API token", "Hugging Face token", "high",
         r"api_org_", r"[A-Za-z]{34}", ["api_org_", (LETTERS, 34)], "HF_ORG_TOKEN", ["api_org_"])
prefixed(F, "replicate-api-token", "Replicate API token", "Replicate token", "high", r"r8_",
         r"[A-Za-z0-9]{37}", ["r8_", (A62, 37)], "REPLICATE_API_TOKEN", ["r8_"])
prefixed(F, "groq-api-key", "Groq API key", "Groq API key", "high", r"gsk_", r"[A-Za-z0-9]{52}",
         ["gsk_", (A62, 52)], "GROQ_API_KEY", ["gsk_"])
prefixed(F, "perplexity-api-key", "Perplexity API key", "Perplexity API key", "high", r"pplx-",
         r"[A-Za-z0-9]{48}", ["pplx-", (A62, 48)], "PERPLEXITY_API_KEY", ["pplx-"])
prefixed(F, "xai-api-key", "xAI API key", "xAI API key", "high", r"xai-", r"[A-Za-z0-9]{80}",
         ["xai-", (A62, 80)], "XAI_API_KEY", ["xai-"])
prefixed(F, "openrouter-api-key", "OpenRouter API key", "OpenRouter API key", "high", r"sk-or-v1-",
         r"[a-f0-9]{64}", ["sk-or-v1-", (HEX, 64)], "OPENROUTER_API_KEY", ["sk-or-v1-"])
prefixed(F, "langsmith-api-key", "LangSmith API key", "LangSmith API key", "high", r"lsv2_(?:pt|sk)_",
         r"[a-f0-9]{32}_[a-f0-9]{10}", ["lsv2_pt_", (HEX, 32), "_", (HEX, 10)], "LANGCHAIN_API_KEY",
         ["lsv2_pt_", "lsv2_sk_"])
prefixed(F, "pinecone-api-key", "Pinecone API key", "Pinecone API key", "high", r"pcsk_",
         r"[A-Za-z0-9]{5,6}_[A-Za-z0-9]{60,70}", ["pcsk_", (A62, 6), "_", (A62, 65)], "PINECONE_API_KEY", ["pcsk_"])
prefixed(F, "tavily-api-key", "Tavily API key", "Tavily API key", "medium", r"tvly-",
         r"(?:dev-|prod-)?[A-Za-z0-9]{32}", ["tvly-", (A62, 32)], "TAVILY_API_KEY", ["tvly-"])
ctx(F, "cohere-api-key", "Cohere API key", "Cohere API key", "high", r"cohere|co_api",
    r"[A-Za-z0-9]{40}", [(A62, 40)], "COHERE_API_KEY", ["cohere", "co_api"], validators=["entropy:4.0"])
ctx(F, "mistral-api-key", "Mistral AI API key", "Mistral API key", "high", r"mistral",
    r"[A-Za-z0-9]{32}", [(A62, 32)], "MISTRAL_API_KEY", ["mistral"], validators=["entropy:4.0"])
ctx(F, "deepseek-api-key", "DeepSeek API key", "DeepSeek API key", "high", r"deepseek",
    r"sk-[a-f0-9]{32}", ["sk-", (HEX, 32)], "DEEPSEEK_API_KEY", ["deepseek"])
ctx(F, "elevenlabs-api-key", "ElevenLabs API key", "ElevenLabs API key", "medium",
    r"elevenlabs|eleven_labs|xi-api-key|xi_api_key", r"sk_[a-f0-9]{48}|[a-f0-9]{32}",
    ["sk_", (HEX, 48)], "ELEVENLABS_API_KEY", ["elevenlabs", "eleven_labs", "xi-api-key", "xi_api_key"])
ctx(F, "assemblyai-api-key", "AssemblyAI API key", "AssemblyAI API key", "medium", r"assemblyai|assembly_ai",
    r"[a-f0-9]{32}", [(HEX, 32)], "ASSEMBLYAI_API_KEY", ["assemblyai", "assembly_ai"], validators=["entropy:3.0"])
ctx(F, "wandb-api-key", "Weights & Biases API key", "Weights & Biases API key", "high", r"wandb",
    r"[a-f0-9]{40}", [(HEX, 40)], "WANDB_API_KEY", ["wandb"], validators=["entropy:3.0"])
ctx(F, "deepgram-api-key", "Deepgram API key", "Deepgram API key", "medium", r"deepgram",
    r"[a-f0-9]{40}", [(HEX, 40)], "DEEPGRAM_API_KEY", ["deepgram"], validators=["entropy:3.0"])
ctx(F, "stability-api-key", "Stability AI API key", "Stability AI API key", "medium", r"stability",
    r"sk-[A-Za-z0-9]{48}", ["sk-", (A62, 48)], "STABILITY_API_KEY", ["stability"])
ctx(F, "together-api-key", "Together AI API key", "Together AI API key", "medium", r"together",
    r"(?:tgp_v1_)?[A-Za-z0-9_-]{43}|[a-f0-9]{64}", [(HEX, 64)], "TOGETHER_API_KEY", ["together"],
    end=END, validators=["entropy:3.0"])


# ----------------------------------------------------------------------------------------------
# saas-cloud: hosting platforms, CDNs, PaaS, non-hyperscaler clouds, databases-as-a-service
# ----------------------------------------------------------------------------------------------
F = "saas-cloud"
prefixed(F, "digitalocean-token", "DigitalOcean personal access, OAuth or refresh token",
         "DigitalOcean token", "critical", r"do[por]_v1_", r"[a-f0-9]{64}", ["dop_v1_", (HEX, 64)],
         "DIGITALOCEAN_ACCESS_TOKEN", ["dop_v1_", "doo_v1_", "dor_v1_"], target={"kind": "vm"})
prefixed(F, "heroku-api-key-v2", "Heroku API key", "Heroku API key", "critical", r"HRKU-AA",
         r"[0-9A-Za-z_-]{58}", ["HRKU-AA", (B64U, 57), (A62, 1)], "HEROKU_API_KEY", ["HRKU-"], end=END)
ctx(F, "heroku-api-key", "Heroku API key (legacy UUID)", "Heroku API key", "critical", r"heroku",
    UUID, uuid_gen, "HEROKU_API_KEY", ["heroku"],
    pos=["HEROKU_API_KEY={v}", "heroku_api_key = \"{v}\""])
ctx(F, "cloudflare-api-token", "Cloudflare API token", "Cloudflare token", "critical",
    r"cloudflare|cf_api|cf-api", r"[A-Za-z0-9_-]{40}", [(B64U, 39), (A62, 1)], "CLOUDFLARE_API_TOKEN",
    ["cloudflare", "cf_api", "cf-api"], end=END, validators=["entropy:3.5"])
ctx(F, "cloudflare-global-api-key", "Cloudflare global API key", "Cloudflare token", "critical",
    r"cloudflare|cf_api|cf-api|x-auth-key", r"[a-f0-9]{37}", [(HEX, 37)], "CLOUDFLARE_API_KEY",
    ["cloudflare", "cf_api", "cf-api", "x-auth-key"], validators=["entropy:3.0"])
prefixed(F, "cloudflare-origin-ca-key", "Cloudflare Origin CA key", "Cloudflare token", "high",
         r"v1\.0-", r"[a-f0-9]{24}-[a-f0-9]{146}", ["v1.0-", (HEX, 24), "-", (HEX, 146)],
         "CF_ORIGIN_CA_KEY", ["v1.0-"])
ctx(F, "fastly-api-token", "Fastly API token", "Fastly token", "high", r"fastly",
    r"[A-Za-z0-9_-]{32}", [(B64U, 31), (A62, 1)], "FASTLY_API_TOKEN", ["fastly"], end=END,
    validators=["entropy:3.5"])
prefixed(F, "netlify-pat", "Netlify personal access token", "Netlify token", "high", r"nfp_",
         r"[A-Za-z0-9]{36}", ["nfp_", (A62, 36)], "NETLIFY_AUTH_TOKEN", ["nfp_"])
ctx(F, "netlify-token-legacy", "Netlify access token (legacy)", "Netlify token", "high", r"netlify",
    r"[A-Za-z0-9_-]{43}", [(B64U, 42), (A62, 1)], "NETLIFY_AUTH_TOKEN", ["netlify"], end=END,
    validators=["entropy:4.0"])
ctx(F, "vercel-token", "Vercel access token", "Vercel token", "high", r"vercel|now_token",
    r"(?:vc[pikr]_)?[A-Za-z0-9]{24}", [(A62, 24)], "VERCEL_TOKEN", ["vercel", "now_token"],
    validators=["entropy:3.5"])
prefixed(F, "supabase-pat", "Supabase personal access token", "Supabase token", "high", r"sbp_",
         r"[a-f0-9]{40}", ["sbp_", (HEX, 40)], "SUPABASE_ACCESS_TOKEN", ["sbp_"])
prefixed(F, "supabase-secret-key", "Supabase secret API key", "Supabase token", "critical",
         r"sb_secret_", r"[A-Za-z0-9_-]{31,40}", ["sb_secret_", (B64U, 30), (A62, 1)], "SUPABASE_SECRET_KEY",
         ["sb_secret_"], end=END)
prefixed(F, "planetscale-password", "PlanetScale database password", "PlanetScale credential",
         "critical", r"pscale_pw_", r"[A-Za-z0-9_.-]{43}", ["pscale_pw_", (B64U, 42), (A62, 1)],
         "DATABASE_PASSWORD", ["pscale_pw_"], end=END, target={"kind": "sql-database"})
prefixed(F, "planetscale-token", "PlanetScale service or OAuth token", "PlanetScale credential",
         "high", r"pscale_(?:tkn|oauth)_", r"[A-Za-z0-9_.-]{43}", ["pscale_tkn_", (B64U, 42), (A62, 1)],
         "PLANETSCALE_SERVICE_TOKEN", ["pscale_tkn_", "pscale_oauth_"], end=END)
prefixed(F, "neon-api-key", "Neon API key", "Neon API key", "high", r"napi_", r"[a-z0-9]{64}",
         ["napi_", (LO36, 64)], "NEON_API_KEY", ["napi_"])
prefixed(F, "flyio-token", "Fly.io access token", "Fly.io token", "high", r"fo1_", r"[A-Za-z0-9_-]{43}",
         ["fo1_", (B64U, 42), (A62, 1)], "FLY_API_TOKEN", ["fo1_"], end=END)
prefixed(F, "flyio-macaroon-token", "Fly.io macaroon token", "Fly.io token", "high", r"fm[12][ar]?_",
         r"[A-Za-z0-9+/_-]{100,1000}={0,2}", ["fm2_lJPE", (B64, 200), "=="], "FLY_API_TOKEN",
         ["fm1_", "fm2_", "fm1a_", "fm2r_"], end="", window=2048)
prefixed(F, "render-api-key", "Render API key", "Render API key", "high", r"rnd_", r"[A-Za-z0-9]{32}",
         ["rnd_", (A62, 32)], "RENDER_API_KEY", ["rnd_"])
ctx(F, "linode-token", "Linode (Akamai) personal access token", "Linode token", "critical",
    r"linode", r"[a-f0-9]{64}", [(HEX, 64)], "LINODE_TOKEN", ["linode"], target={"kind": "vm"})
ctx(F, "hetzner-cloud-token", "Hetzner Cloud API token", "Hetzner token", "critical", r"hetzner|hcloud",
    r"[A-Za-z0-9]{64}", [(A62, 64)], "HCLOUD_TOKEN", ["hetzner", "hcloud"], validators=["entropy:4.0"],
    target={"kind": "vm"})
ctx(F, "vultr-api-key", "Vultr API key", "Vultr API key", "critical", r"vultr", r"[A-Z0-9]{36}",
    [(UP36, 36)], "VULTR_API_KEY", ["vultr"], validators=["entropy:4.0"], target={"kind": "vm"})
ctx(F, "scaleway-secret-key", "Scaleway secret key", "Scaleway key", "critical", r"scaleway|scw_secret",
    UUID, uuid_gen, "SCW_SECRET_KEY", ["scaleway", "scw_secret"])
prefixed(F, "alibaba-access-key-id", "Alibaba Cloud AccessKey ID", "Alibaba Cloud access key", "medium",
         r"LTAI", r"[A-Za-z0-9]{12,20}", ["LTAI5t", (A62, 18)], "ALIBABA_CLOUD_ACCESS_KEY_ID", ["LTAI"],
         validators=["entropy:3.5"])
ctx(F, "alibaba-access-key-secret", "Alibaba Cloud AccessKey secret", "Alibaba Cloud access key",
    "critical", r"alibaba|aliyun|alicloud", r"[A-Za-z0-9]{30}", [(A62, 30)],
    "ALIBABA_CLOUD_ACCESS_KEY_SECRET", ["alibaba", "aliyun", "alicloud"], validators=["entropy:4.0"])
prefixed(F, "tencent-secret-id", "Tencent Cloud SecretId", "Tencent Cloud credential", "medium",
         r"AKID", r"[A-Za-z0-9]{32}", ["AKID", (A62, 32)], "TENCENTCLOUD_SECRET_ID", ["AKID"],
         validators=["entropy:4.0"])
ctx(F, "tencent-secret-key", "Tencent Cloud SecretKey", "Tencent Cloud credential", "critical",
    r"tencent|qcloud", r"[A-Za-z0-9]{32}", [(A62, 32)], "TENCENTCLOUD_SECRET_KEY", ["tencent", "qcloud"],
    validators=["entropy:4.0"])
ctx(F, "ibm-cloud-api-key", "IBM Cloud API key", "IBM Cloud API key", "critical", r"ibm|bluemix",
    r"[A-Za-z0-9_-]{44}", [(B64U, 43), (A62, 1)], "IBMCLOUD_API_KEY", ["ibm", "bluemix"], end=END,
    validators=["entropy:4.0"])
R(F, "oracle-oci-key-passphrase", "Oracle Cloud (OCI) API signing key passphrase", "Oracle Cloud credential",
  "high", ["pass_phrase"], r"(?m)^[ \t]*pass_phrase[ \t]*=[ \t]*(\S{4,128})", [(A62, 20)], "OCI",
  paths=[r"(^|/)\.oci/config$"], example_path="/home/opc/.oci/config",
  pos=["[DEFAULT]\nuser=ocid1.user.oc1..aaaaaaaa{p}\nkey_file=~/.oci/oci_api_key.pem\npass_phrase={v}\n",
       "[ADMIN]\npass_phrase = {v}\n"],
  neg=["pass_phrase={v}", {"path": "/home/opc/.oci/config", "text": "pass_phrase=<your-passphrase>\n"}],
  no_auto_neg=True)
ctx(F, "oracle-oci-auth-token", "Oracle Cloud (OCI) auth token", "Oracle Cloud credential", "high",
    r"oci[_-]?auth[_-]?token|oci[_-]?cli[_-]?auth", r"[A-Za-z0-9+:;(){}\[\]<>#_.-]{20}",
    [(A62 + "+:;()#_.", 20)], "OCI_AUTH_TOKEN", ["oci_auth", "oci-auth", "ociauth", "oci_cli_auth"],
    end=r"(?:[\s\"']|\z)", validators=["entropy:3.5"])
prefixed(F, "yandex-api-key", "Yandex Cloud API key", "Yandex Cloud credential", "high", r"AQVN",
         r"[A-Za-z0-9_-]{35,38}", ["AQVN", (B64U, 35), (A62, 1)], "YC_API_KEY", ["AQVN"], end=END)
prefixed(F, "yandex-oauth-token", "Yandex OAuth token", "Yandex Cloud credential", "high", r"y[0-3]_",
         r"[A-Za-z0-9_-]{55}", ["y0_", (B64U, 54), (A62, 1)], "YC_TOKEN", ["y0_", "y1_", "y2_", "y3_"], end=END,
         validators=["entropy:4.0"])
prefixed(F, "google-api-key", "Google / Firebase API key", "Google API key", "medium", r"AIza",
         r"[0-9A-Za-z_-]{35}", ["AIzaSy", (B64U, 32), (A62, 1)], "FIREBASE_API_KEY", ["AIza"], end=END)
prefixed(F, "google-oauth-client-secret", "Google OAuth client secret", "Google OAuth client secret",
         "high", r"GOCSPX-", r"[A-Za-z0-9_-]{28}", ["GOCSPX-", (B64U, 27), (A62, 1)], "GOOGLE_CLIENT_SECRET",
         ["GOCSPX-"], end=END)
prefixed(F, "firebase-cloud-messaging-key", "Firebase Cloud Messaging server key", "Google API key",
         "high", r"AAAA[A-Za-z0-9_-]{7}:APA91b", r"[A-Za-z0-9_-]{134}",
         ["AAAA", (B64U, 7), ":APA91b", (B64U, 133), (A62, 1)], "FCM_SERVER_KEY", [":APA91b"], end=END)
prefixed(F, "akamai-client-token", "Akamai EdgeGrid client token", "Akamai EdgeGrid credential", "medium",
         r"akab-", r"[a-z0-9]{16}-[a-z0-9]{16}", ["akab-", (LO36, 16), "-", (LO36, 16)], "AKAMAI_CLIENT_TOKEN",
         ["akab-"])
R(F, "akamai-client-secret", "Akamai EdgeGrid client secret in .edgerc", "Akamai EdgeGrid credential",
  "high", ["client_secret"], r"(?m)^[ \t]*client_secret[ \t]*=[ \t]*([A-Za-z0-9+/]{43}=)",
  [(B64, 43), "="], "EDGERC", paths=[r"(^|/)\.edgerc$"], example_path="/home/deploy/.edgerc",
  pos=["[default]\nclient_secret = {v}\nhost = akab-{p}.luna.akamaiapis.net\n",
       "[ccu]\nclient_secret={v}\n"],
  neg=["client_secret = {v}", {"path": "/home/deploy/.edgerc", "text": "client_secret = ${AKAMAI_SECRET}\n"}],
  no_auto_neg=True)
prefixed(F, "mapbox-secret-token", "Mapbox secret access token", "Mapbox token", "high", r"sk\.eyJ",
         r"[A-Za-z0-9_-]{20,200}\.[A-Za-z0-9_-]{20,30}", ["sk.eyJ1IjoiY", (B64U, 40), ".", (B64U, 21), (A62, 1)],
         "MAPBOX_SECRET_TOKEN", ["sk.eyJ"], end=END)
ctx(F, "algolia-admin-key", "Algolia admin API key", "Algolia API key", "high", r"algolia",
    r"[a-f0-9]{32}", [(HEX, 32)], "ALGOLIA_ADMIN_KEY", ["algolia"], validators=["entropy:3.0"])
R(F, "cloudinary-url", "Cloudinary URL with API secret", "Cloudinary credential", "high",
  ["cloudinary://"], r"cloudinary://[0-9]{15}:(?P<secret>[A-Za-z0-9_-]{27})@[a-z0-9-]+",
  ["cloudinary://", (DIGITS, 15), ":", (B64U, 26), (A62, 1), "@acme-media"], "CLOUDINARY_URL")
prefixed(F, "salesforce-access-token", "Salesforce access token", "Salesforce token", "high",
         r"00D[A-Za-z0-9]{12,15}!", r"[A-Za-z0-9._]{96}", ["00D", (A62, 12), "!AQ", (A62, 94)],
         "SF_ACCESS_TOKEN", ["00D"], end=r"(?:[^A-Za-z0-9._]|\z)")
R(F, "url-embedded-credentials", "Password embedded in a URL (scheme://user:password@host)",
  "URL credentials", "high", ["://"],
  r"\b(?:https?|ftps?|sftp|smb|amqps?|ldaps?|imaps?|smtps?|pop3s?|socks5h?|wss?|git|svn|nntp|rediss?|mongodb(?:\+srv)?|mqtts?|nats|kafka)://"
  r"[A-Za-z0-9._~%!$&*+,;=-]{1,64}:(?P<secret>[^\s:@/'\"`<>]{6,128})@(?P<host>[A-Za-z0-9][A-Za-z0-9.-]{0,252})",
  lambda rng: rand(rng, A62, 12) + rng.choice(["!", "#", "%25", "_", "-", "~"]) + rand(rng, A62, 5),
  "URL", target={"kind": "host", "group": "host"}, confidence="medium", validators=["entropy:2.8"],
  pos=["BROKER_URL=amqps://svc-orders:{v}@mq.prod.internal:5671/orders",
       "https://deploy:{v}@artifacts.corp.internal/repository/raw/"],
  neg=["https://user:${PASSWORD}@artifacts.corp.internal/", "https://user:password@localhost/",
       "git@github.com:acme/app.git", "https://artifacts.corp.internal/path?q=a:b@c",
       "const u = new URL('https://abc:xyz@example.com');", ":return: Masked proxy url, i.e. https://***:***@proxy.com",
       ".all(\"socks5h://Aladdin:opensesame@localhost:8887\")"],
  no_auto_neg=True)


# ----------------------------------------------------------------------------------------------
# saas-observability: monitoring, logging, error tracking, feature flags, analytics
# ----------------------------------------------------------------------------------------------
F = "saas-observability"
ctx(F, "datadog-api-key", "Datadog API key", "Datadog API key", "high",
    r"datadog[\w.-]{0,10}api[_-]?key|dd[_-]?api[_-]?key", r"[a-f0-9]{32}", [(HEX, 32)], "DD_API_KEY",
    ["datadog", "dd_api", "dd-api", "ddapi"], validators=["entropy:3.0"],
    pos=["DD_API_KEY={v}", "  datadog_api_key: \"{v}\"", "-H \"DD-API-KEY: {v}\""])
ctx(F, "datadog-app-key", "Datadog application key", "Datadog API key", "high",
    r"datadog[\w.-]{0,10}app(?:lication)?[_-]?key|dd[_-]?app(?:lication)?[_-]?key", r"[a-f0-9]{40}",
    [(HEX, 40)], "DD_APP_KEY", ["datadog", "dd_app", "dd-app", "ddapp"], validators=["entropy:3.0"],
    pos=["DD_APP_KEY={v}", "-H \"DD-APPLICATION-KEY: {v}\""])
R(F, "datadog-agent-api-key", "Datadog API key in the agent configuration", "Datadog API key", "high",
  ["api_key"], r"(?m)^[ \t]*api_key:[ \t]*[\"']?([a-f0-9]{32})\b", [(HEX, 32)], "DD",
  paths=[r"(^|/)datadog(-agent)?/datadog\.ya?ml$"], example_path="/etc/datadog-agent/datadog.yaml",
  validators=["entropy:3.0"], pos=["site: datadoghq.eu\napi_key: {v}\n", "api_key: \"{v}\"\n"],
  neg=["api_key: {v}", {"path": "/etc/datadog-agent/datadog.yaml", "text": "api_key: <DATADOG_API_KEY>\n"}],
  no_auto_neg=True)
NR = "New Relic key"
prefixed(F, "new-relic-user-key", "New Relic user API key", NR, "high", r"NRAK-", r"[A-Z0-9]{27}",
         ["NRAK-", (UP36, 27)], "NEW_RELIC_API_KEY", ["NRAK-"])
prefixed(F, "new-relic-insert-key", "New Relic insert key", NR, "medium", r"NRII-", r"[A-Za-z0-9_-]{32}",
         ["NRII-", (B64U, 31), (A62, 1)], "NEW_RELIC_INSERT_KEY", ["NRII-"], end=END)
prefixed(F, "new-relic-query-key", "New Relic Insights query key", NR, "medium", r"NRIQ-",
         r"[A-Za-z0-9_-]{32}", ["NRIQ-", (B64U, 31), (A62, 1)], "NEW_RELIC_QUERY_KEY", ["NRIQ-"], end=END)
prefixed(F, "new-relic-license-key", "New Relic ingest license key", NR, "medium", r"", r"[a-f0-9]{36}NRAL",
         [(HEX, 36), "NRAL"], "NEW_RELIC_LICENSE_KEY", ["NRAL"])
prefixed(F, "new-relic-browser-key", "New Relic browser API key", NR, "low", r"NRJS-", r"[a-f0-9]{19}",
         ["NRJS-", (HEX, 19)], "NEW_RELIC_BROWSER_KEY", ["NRJS-"])
prefixed(F, "sentry-user-token", "Sentry user auth token", "Sentry token", "high", r"sntryu_",
         r"[a-f0-9]{64}", ["sntryu_", (HEX, 64)], "SENTRY_AUTH_TOKEN", ["sntryu_"])
prefixed(F, "sentry-org-token", "Sentry organization auth token", "Sentry token", "high",
         r"sntrys_eyJpYXQiO", r"[A-Za-z0-9+/=]{60,400}_[A-Za-z0-9+/]{43}",
         ["sntrys_eyJpYXQiOjE3", (B64, 150), "_", (B64, 42), (A62, 1)], "SENTRY_AUTH_TOKEN", ["sntrys_"], end="")
R(F, "sentry-dsn-secret", "Sentry DSN with secret key (legacy)", "Sentry token", "medium", ["sentry"],
  r"https://[0-9a-f]{32}:(?P<secret>[0-9a-f]{32})@[A-Za-z0-9.-]*sentry[A-Za-z0-9.-]*/[0-9]+",
  ["https://", (HEX, 32), ":", (HEX, 32), "@sentry.io/", (DIGITS, 6)], "SENTRY_DSN")
R(F, "sentry-dsn", "Sentry DSN (public client key)", "Sentry DSN", "low", ["sentry.io"],
  r"https://(?P<secret>[0-9a-f]{32})@o[0-9]+\.ingest(?:\.[a-z]{2})?\.sentry\.io/[0-9]+",
  ["https://", (HEX, 32), "@o", (DIGITS, 6), ".ingest.sentry.io/", (DIGITS, 7)], "SENTRY_DSN", confidence="low")
GR = "Grafana token"
prefixed(F, "grafana-cloud-token", "Grafana Cloud access policy token", GR, "high", r"glc_",
         r"[A-Za-z0-9+/]{32,400}={0,2}", ["glc_eyJvIjoi", (B64, 120), "="], "GRAFANA_CLOUD_TOKEN", ["glc_"], end="")
prefixed(F, "grafana-service-account-token", "Grafana service account token", GR, "high", r"glsa_",
         r"[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}", ["glsa_", (A62, 32), "_", (HEX, 8)], "GRAFANA_TOKEN", ["glsa_"])
prefixed(F, "grafana-api-key", "Grafana API key (legacy)", GR, "high", r"eyJrIjoi",
         r"[A-Za-z0-9]{70,400}={0,2}", ["eyJrIjoi", (A62, 90), "=="], "GRAFANA_API_KEY", ["eyJrIjoi"], end="")
prefixed(F, "dynatrace-token", "Dynatrace API or platform token", "Dynatrace token", "high",
         r"dt0[a-z][0-9]{2}\.", r"[A-Z0-9]{24}\.[A-Z0-9]{64}", ["dt0c01.", (UP36, 24), ".", (UP36, 64)],
         "DT_API_TOKEN", ["dt0c0", "dt0s0", "dt0s1"])
ctx(F, "splunk-hec-token", "Splunk HTTP Event Collector token", "Splunk token", "high", r"splunk",
    UUID, uuid_gen, "SPLUNK_HEC_TOKEN", ["splunk"], pos=["Authorization: Splunk {v}", "SPLUNK_HEC_TOKEN={v}"])
ctx(F, "honeycomb-api-key", "Honeycomb API key", "Honeycomb API key", "medium", r"honeycomb",
    r"hc[a-z]{2}_[a-z0-9]{58}|[A-Za-z0-9]{22}|[a-f0-9]{32}", [(A62, 22)], "HONEYCOMB_API_KEY", ["honeycomb"],
    validators=["entropy:3.5"])
ctx(F, "rollbar-access-token", "Rollbar access token", "Rollbar token", "medium", r"rollbar",
    r"[a-f0-9]{32}", [(HEX, 32)], "ROLLBAR_ACCESS_TOKEN", ["rollbar"], validators=["entropy:3.0"])
ctx(F, "bugsnag-api-key", "Bugsnag API key", "Bugsnag API key", "low", r"bugsnag", r"[a-f0-9]{32}",
    [(HEX, 32)], "BUGSNAG_API_KEY", ["bugsnag"], validators=["entropy:3.0"])
prefixed(F, "honeybadger-pat", "Honeybadger personal auth token", "Honeybadger token", "medium", r"hbp_",
         r"[A-Za-z0-9]{36}", ["hbp_", (A62, 36)], "HONEYBADGER_PERSONAL_AUTH_TOKEN", ["hbp_"])
ctx(F, "launchdarkly-key", "LaunchDarkly API access token or SDK key", "LaunchDarkly key", "high",
    r"launchdarkly|ld_api|ld_sdk", rf"(?:api|sdk)-{UUID}", ["api-", uuid_gen], "LAUNCHDARKLY_ACCESS_TOKEN",
    ["launchdarkly", "ld_api", "ld_sdk"])
prefixed(F, "posthog-personal-api-key", "PostHog personal API key", "PostHog API key", "high", r"phx_",
         r"[A-Za-z0-9]{43}", ["phx_", (A62, 43)], "POSTHOG_PERSONAL_API_KEY", ["phx_"])
ctx(F, "sumologic-access-key", "Sumo Logic access key", "Sumo Logic access key", "high", r"sumo",
    r"[A-Za-z0-9]{64}", [(A62, 64)], "SUMO_ACCESS_KEY", ["sumo"], validators=["entropy:4.0"])
ctx(F, "logzio-token", "Logz.io shipping or API token", "Logz.io token", "medium", r"logz",
    r"[A-Za-z]{32}|" + UUID, [(LETTERS, 32)], "LOGZIO_TOKEN", ["logz"], validators=["entropy:3.5"])
ctx(F, "loggly-token", "Loggly customer token", "Loggly token", "medium", r"loggly", UUID, uuid_gen,
    "LOGGLY_TOKEN", ["loggly"])
ctx(F, "segment-write-key", "Segment write key", "Segment key", "low", r"segment[\w.-]{0,10}write",
    r"[A-Za-z0-9]{32}", [(A62, 32)], "SEGMENT_WRITE_KEY", ["segment"], validators=["entropy:4.0"])
prefixed(F, "segment-public-api-token", "Segment Public API token", "Segment key", "high", r"sgp_",
         r"[A-Za-z0-9]{64}", ["sgp_", (A62, 64)], "SEGMENT_TOKEN", ["sgp_"])


# ----------------------------------------------------------------------------------------------
# saas-identity: identity providers
# ----------------------------------------------------------------------------------------------
F = "saas-identity"
R(F, "okta-api-token", "Okta API token", "Okta API token", "critical", ["ssws", "okta"],
  rf"(?:SSWS[ \t]+|(?i:okta){SEP})(00[A-Za-z0-9_-]{{40}}){END}", ["00", (B64U, 39), (A62, 1)], "OKTA_API_TOKEN",
  pos=["Authorization: SSWS {v}", "OKTA_API_TOKEN={v}"], confidence="high")
ctx(F, "auth0-client-secret", "Auth0 client secret", "Auth0 credential", "high", r"auth0",
    r"[A-Za-z0-9_-]{64}", [(B64U, 63), (A62, 1)], "AUTH0_CLIENT_SECRET", ["auth0"], end=END,
    validators=["entropy:4.0"])
R(F, "auth0-management-token", "Auth0 Management API token", "Auth0 credential", "high", ["auth0"],
  rf"(?i:auth0){SEP}(eyJ[A-Za-z0-9_-]{{10,200}}\.eyJ[A-Za-z0-9_-]{{20,2000}}\.[A-Za-z0-9_-]{{20,1000}})",
  lambda rng: make_jwt(rng, {"iss": "https://acme.eu.auth0.com/", "sub": "svc@clients",
                                              "aud": "https://acme.eu.auth0.com/api/v2/", "exp": 1893456000}),
  "AUTH0_MGMT_TOKEN", validators=["jwt"], window=2048)
ctx(F, "duo-secret-key", "Duo integration secret key", "Duo secret key", "high", r"duo",
    r"[A-Za-z0-9]{40}", [(A62, 40)], "DUO_SECRET_KEY", ["duo"], validators=["entropy:4.0"],
    pos=["DUO_SECRET_KEY={v}", "duo_skey = {v}"])
prefixed(F, "stytch-secret", "Stytch live project secret", "Stytch secret", "high", r"secret-live-",
         r"[A-Za-z0-9_=-]{36}", ["secret-live-", (B64U, 35), (A62, 1)], "STYTCH_SECRET", ["secret-live-"], end=END)
ctx(F, "onelogin-client-secret", "OneLogin API client secret", "OneLogin credential", "high",
    r"onelogin", r"[a-f0-9]{64}", [(HEX, 64)], "ONELOGIN_CLIENT_SECRET", ["onelogin"],
    validators=["entropy:3.0"])
ctx(F, "keycloak-client-secret", "Keycloak client secret", "Keycloak credential", "high",
    r"keycloak[\w.-]{0,20}secret|kc[_-]client[_-]secret", r"[A-Za-z0-9]{32}", [(A62, 32)],
    "KEYCLOAK_CLIENT_SECRET", ["keycloak", "kc_client", "kc-client"], validators=["entropy:4.0"])
ctx(F, "clerk-secret-key", "Clerk secret key", "Clerk secret key", "high", r"clerk",
    r"sk_live_[A-Za-z0-9]{40,50}", ["sk_live_", (A62, 43)], "CLERK_SECRET_KEY", ["clerk"])


# ----------------------------------------------------------------------------------------------
# Emission
# ----------------------------------------------------------------------------------------------
FAMILY_DOC = {
    "saas-devtools": "source hosting, CI/CD, package registries, infrastructure as code, secret stores",
    "saas-comms": "chat, e-mail, SMS, ticketing and collaboration services",
    "saas-payments": "payment providers, commerce and shipping",
    "saas-ai": "AI model providers, vector stores and ML platforms",
    "saas-cloud": "hosting platforms, CDNs, PaaS, non-hyperscaler clouds, URL credentials",
    "saas-observability": "monitoring, logging, error tracking, feature flags and analytics",
    "saas-identity": "identity providers",
}


def q1(s: str) -> str:
    """YAML single-quoted scalar (no escapes; `'` doubled); regexes stay readable."""
    if "\n" in s:
        return json.dumps(s)
    return "'" + s.replace("'", "''") + "'"


def qd(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def examples(rule: Rule):
    v1, v2 = rule.value(1), rule.value(2)
    p = rand(rng_for("p", rule.id), LO36, 12)
    fill = lambda t, v: t.replace("{v}", v).replace("{p}", p).replace("{{", "{").replace("}}", "}")  # noqa: E731
    if rule.pos:
        tpls = rule.pos
        pos = [fill(t, v1 if i % 2 == 0 else v2) for i, t in enumerate(tpls)]
    else:
        pos = [f"export {rule.var}={v1}", f'  "{rule.var.lower()}": "{v2}",']
    neg = []
    if not rule.no_auto_neg:
        slug = rule.id.split("-")[0]
        neg.append(f"{rule.var}=<your-{slug}-token>")
        half = v1[: max(3, min(len(v1) // 2, 12))]
        neg.append(f"{rule.var}={half}")
    for t in rule.neg:
        if isinstance(t, dict):
            neg.append({"path": t["path"], "text": fill(t["text"], v1)})
        else:
            neg.append(fill(t, v1))
    if rule.example_path:
        pos = [{"path": rule.example_path, "text": t} for t in pos]
    return pos, neg


def emit_rule(rule: Rule) -> str:
    pos, neg = examples(rule)
    out = [f"  - id: {rule.id}", f"    title: {qd(rule.title)}", f"    secretType: {qd(rule.secret_type)}",
           f"    severity: {rule.severity}",
           "    keywords: [" + ", ".join(qd(k) for k in rule.keywords) + "]",
           f"    regex: {q1(rule.regex)}"]
    if rule.paths:
        out.append("    paths: [" + ", ".join(q1(p) for p in rule.paths) + "]")
    if rule.validators:
        out.append("    validators: [" + ", ".join(qd(v) for v in rule.validators) + "]")
    if rule.target:
        t = ", ".join(f"{k}: {v}" for k, v in rule.target.items())
        out.append(f"    target: {{ {t} }}")
    if rule.confidence:
        out.append(f"    confidence: {rule.confidence}")
    if rule.window:
        out.append(f"    window: {rule.window}")
    out.append("    examples:")

    def ex(e):
        if isinstance(e, dict):
            return f"{{ path: {qd(e['path'])}, text: {qd(e['text'])} }}"
        return qd(e)
    out.append("      positive:")
    out += [f"        - {ex(e)}" for e in pos]
    out.append("      negative:")
    out += [f"        - {ex(e)}" for e in neg]
    return "\n".join(out)


def write_all() -> list[Path]:
    written = []
    for fam in FAMILY_DOC:
        rules = [r for r in RULES if r.family == fam]
        head = (f"# snapsentry rules: {FAMILY_DOC[fam]}.\n"
                "#\n"
                "# Generated by tests/corpus/saas_rules.py (edit the rule there, then run it with --write):\n"
                "# the same value generators plant these secrets in the labelled corpus (tests/corpus/).\n"
                "# Example values are random and were never valid credentials.\n")
        text = head + "rules:\n" + "\n\n".join(emit_rule(r) for r in rules) + "\n"
        path = RULES_DIR / f"{fam}.yaml"
        path.write_text(text)
        written.append(path)
    return written


# ----------------------------------------------------------------------------------------------
# Check: a Python emulation of the engine's per-rule example test
# ----------------------------------------------------------------------------------------------
class Matcher:
    """Runs regexes with the Rust `regex` crate through `rulecheck`, or with Python `re`."""

    def __init__(self, rulecheck: str | None):
        self.proc = None
        if rulecheck:
            import subprocess
            self.proc = subprocess.Popen([rulecheck], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, regex: str, texts: list[str]):
        """Returns (error, [[(secret, start, whole), ...] per text])."""
        if self.proc:
            self.proc.stdin.write(json.dumps({"regex": regex, "texts": texts}) + "\n")
            self.proc.stdin.flush()
            res = json.loads(self.proc.stdout.readline())
            return res["error"], [[tuple(m) for m in ms] for ms in res["matches"]]
        pyre = regex.replace(r"\z", r"\Z").replace("(?P<", "(?P<")
        try:
            rx = re.compile(pyre, re.ASCII)
        except re.error as e:
            return str(e), []
        out = []
        for t in texts:
            ms = []
            for m in rx.finditer(t):
                g = "secret" if "secret" in rx.groupindex else (1 if rx.groups else 0)
                ms.append((m.group(g), m.start(g) if m.group(g) is not None else 0, m.group(0)))
            out.append(ms)
        return None, out


def run_validators(rule_validators, secret: str) -> bool:
    import base64
    for v in rule_validators:
        if v.startswith("entropy:"):
            if shannon_entropy(secret) < float(v.split(":")[1]):
                return False
        elif v == "jwt":
            parts = secret.split(".")
            if len(parts) != 3 or len(parts[0]) < 10 or len(parts[1]) < 4:
                return False
            try:
                dec = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)).decode()  # noqa: E731
                h, p = dec(parts[0]), dec(parts[1])
            except Exception:
                return False
            if not h.lstrip().startswith("{") or '"alg"' not in h or not p.lstrip().startswith("{"):
                return False
        else:
            raise SystemExit(f"check: validator {v} not emulated")
    return True


def findings(matcher: Matcher, spec: dict, text: str, path: str) -> list[str]:
    if spec.get("paths") and not any(re.search(p, path) for p in spec["paths"]):
        return []
    kws = [k.lower() for k in spec["keywords"]]
    if kws and not any(k in text.lower() for k in kws):
        return []
    err, ms = matcher.run(spec["regex"], [text])
    if err:
        raise SystemExit(f"{spec['id']}: regex error: {err}")
    out = []
    for secret, _start, whole in ms[0]:
        if secret is None:
            continue
        if not run_validators(spec.get("validators", []), secret):
            continue
        if spec.get("checkPlaceholder", True) and is_placeholder(secret):
            continue
        out.append(secret)
    return out


def check(rulecheck: str | None) -> int:
    import yaml
    matcher = Matcher(rulecheck)
    errors = 0
    ids = set()
    all_specs = []
    for f in sorted(RULES_DIR.glob("saas*.yaml")):
        doc = yaml.safe_load(f.read_text())
        for spec in doc["rules"]:
            all_specs.append((f.name, spec))
    for fname, spec in all_specs:
        rid = spec["id"]
        if rid in ids:
            print(f"{fname}: {rid}: duplicate id"); errors += 1
        ids.add(rid)
        err, _ = matcher.run(spec["regex"], [])
        if err:
            print(f"{fname}: {rid}: regex does not compile: {err}"); errors += 1
            continue
        for k in spec["keywords"]:
            if len(k) < 3:
                print(f"{fname}: {rid}: keyword {k!r} shorter than 3 bytes"); errors += 1
        ex = spec.get("examples", {})
        if len(ex.get("positive", [])) < 2 or len(ex.get("negative", [])) < 2:
            print(f"{fname}: {rid}: needs >= 2 positive and >= 2 negative examples"); errors += 1
        for e in ex.get("positive", []):
            text, path = (e["text"], e["path"]) if isinstance(e, dict) else (e, "/home/user/notes.txt")
            got = findings(matcher, spec, text, path)
            if not got:
                print(f"{fname}: {rid}: positive example yields no finding: {text[:100]!r}"); errors += 1
            # The keyword must lie inside the match so the engine's window always holds it.
            if spec["keywords"]:
                _, ms = matcher.run(spec["regex"], [text])
                for _, _, whole in ms[0]:
                    if not any(k.lower() in whole.lower() for k in spec["keywords"]):
                        print(f"{fname}: {rid}: no keyword inside match {whole[:60]!r}"); errors += 1
        for e in ex.get("negative", []):
            text, path = (e["text"], e["path"]) if isinstance(e, dict) else (e, "/home/user/notes.txt")
            got = findings(matcher, spec, text, path)
            if got:
                print(f"{fname}: {rid}: negative example yields a finding: {text[:100]!r}"); errors += 1
    # Noise: hashes, UUIDs, base64, hex that no SaaS rule may match.
    import hashlib
    import base64
    rng = rng_for("noise")
    noise = []
    for i in range(300):
        b = bytes(rng.getrandbits(8) for _ in range(48))
        noise += [hashlib.sha256(b).hexdigest(), hashlib.md5(b).hexdigest(), hashlib.sha1(b).hexdigest(),
                  base64.b64encode(b).decode(), base64.urlsafe_b64encode(b * 3).decode(), uuid4(rng),
                  f"sha512-{base64.b64encode(hashlib.sha512(b).digest()).decode()}",
                  f"id={uuid4(rng)} key={hashlib.md5(b).hexdigest()}"]
    # DER-like binary (runs of zero bytes: `EAAA`, `AAAA`) in PEM-style 64-column base64.
    for i in range(200):
        der = b"".join(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 40))) + b"\0" * rng.randrange(0, 6)
                       for _ in range(20))
        b = base64.b64encode(der).decode()
        noise += [b[j:j + 64] for j in range(0, len(b), 64)]
    blob = "\n".join(noise)
    for fname, spec in all_specs:
        got = findings(matcher, spec, blob, "/var/log/app.log")
        if got:
            print(f"{fname}: {spec['id']}: matches random noise ({len(got)}x), e.g. {got[0][:40]!r}")
            errors += 1
    print(f"{len(all_specs)} rules in {RULES_DIR}/saas*.yaml; {errors} problem(s)")
    return 1 if errors else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="write engine/rules/saas-*.yaml")
    ap.add_argument("--check", action="store_true", help="lint the YAML and run every example")
    ap.add_argument("--rulecheck", help="path to the rulecheck helper (Rust regex crate)")
    a = ap.parse_args()
    if a.write:
        for p in write_all():
            print(f"wrote {p.relative_to(REPO)}")
    if a.check:
        return check(a.rulecheck)
    return 0


if __name__ == "__main__":
    sys.exit(main())
