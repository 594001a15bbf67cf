#!/usr/bin/env python3
"""Write the real-software corpus: credential files as the software that owns them writes them.

    python3 tests/corpus-real/generate.py OUT [--seed N]

Hashes come from running the Debian-packaged tools (`htpasswd` from apache2-utils, `mkpasswd`
from whois, `openssl passwd`), `.git-credentials` from `git credential approve` with the store
helper in a throwaway HOME; the other files follow each program's documented format (cited
beside each writer). Each file is written under OUT at the path it has on a server, and
OUT/truth.json labels it:

    {"files": [{"path": "/etc/apache2/.htpasswd", "family": "htpasswd", "source": "...",
                "secrets": [{"line": 1, "weak": false}, ...],
                "decoys":  [{"line": 3, "kind": "commented"}, ...]}, ...]}

`secrets` are the lines a scanner must report (`weak`: the password in clear is a word, a common
password or a test value, so the finding must carry `weakPassword`); `decoys` are look-alike
lines that must not be reported (templates, commented examples, documentation, empty values).
A file with no `secrets` is a look-alike non-secret file. Nothing is committed but this script:
the tools' salts differ on every run, the labels do not. Run scripts/toolchain.sh for the tools.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import string
import sys
import tempfile
from pathlib import Path

# The writers live beside this script; importing them must not leave __pycache__ in the tree.
sys.dont_write_bytecode = True

import apps  # noqa: E402
import devtools  # noqa: E402
import heldout  # noqa: E402
import lookalikes  # noqa: E402
from corpuslib import TOOLS, Corpus, htpasswd, mkpasswd, openssl_passwd, run  # noqa: E402

# --- crypt-format password files -------------------------------------------------------------

def htpasswd_files(c: Corpus) -> None:
    src = "htpasswd (apache2-utils)"
    c.file("/etc/apache2/.htpasswd", "htpasswd", src + " -B, -m").secret(
        htpasswd("B", "admin", c.strong())).secret(htpasswd("m", "deploy", "password")).decoy(
        "# monitoring:" + htpasswd("m", "x", c.strong()).split(":", 1)[1], "commented").write()
    c.file("/var/www/html/private/.htpasswd", "htpasswd", src + " -s, -d").secret(
        htpasswd("s", "editor", c.strong())).secret(htpasswd("d", "legacy", c.strong(8))).write()
    c.file("/etc/nginx/htpasswd.users", "htpasswd", src + " -5, -2").secret(
        htpasswd("5", "kibana", c.strong())).secret(htpasswd("2", "grafana", "sunshine")).write()
    c.file("/srv/www/status/.htpasswd", "htpasswd", "openssl passwd -apr1").secret(
        "ops:" + openssl_passwd("-apr1", c.strong())).write()
    # Apache's documentation of the tool: usage, no hash.
    c.file("/usr/share/doc/apache2-utils/README.htpasswd", "htpasswd", "documentation").add(
        "Create a password file:").decoy("  htpasswd -c /etc/apache2/.htpasswd username",
                                         "documentation").add(
        "Each line reads user:hash, for example").decoy("  username:<hash>", "documentation").decoy(
        "    bob:" + htpasswd("m", "bob", "bob").split(":", 1)[1], "documentation").write()
    # squid's basic_ncsa_auth reads an htpasswd file wherever squid.conf names it.
    c.file("/etc/squid/passwords", "squid", "htpasswd -m (squid basic_ncsa_auth)").secret(
        htpasswd("m", "proxyuser", c.strong())).write()
    # A shell script: `$1$2` is not a hash.
    c.file("/usr/local/bin/rotate-users.sh", "htpasswd", "shell script").add(
        "#!/bin/sh", "# rewrite user:group pairs").decoy(
        "sed -E 's/^([a-z]+):([a-z]+)$/$1$2/' /etc/app/users", "script").write()


def mosquitto_files(c: Corpus) -> None:
    # mosquitto_passwd(1) writes user:$7$<iterations>$<base64 salt>$<base64 PBKDF2-SHA512>.
    import hashlib
    salt = bytes(c.rng.randrange(256) for _ in range(12))
    dk = hashlib.pbkdf2_hmac("sha512", c.strong().encode(), salt, 101)
    line = f"sensor01:$7$101${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"
    c.file("/etc/mosquitto/passwd", "mosquitto", "mosquitto_passwd format ($7$, PBKDF2-SHA512)").secret(line).write()


def dovecot_files(c: Corpus) -> None:
    # doc.dovecot.org "Passwd-file": user:password:uid:gid:(gecos):home:(shell):extra_fields,
    # the password with a {SCHEME} prefix.
    f = c.file("/etc/dovecot/users", "dovecot-passwd-file", "mkpasswd -m sha-512, htpasswd -B")
    f.add("# user:{scheme}hash:uid:gid::home")
    f.secret(f"jane@contoso.com:{{SHA512-CRYPT}}{mkpasswd('sha-512', c.strong())}:5000:5000::/var/vmail/contoso.com/jane::")
    f.secret(f"bob@contoso.com:{{BLF-CRYPT}}{htpasswd('B', 'x', c.strong()).split(':', 1)[1]}:5000:5000::/var/vmail/contoso.com/bob::")
    f.write()
    c.file("/etc/dovecot/passwd", "dovecot-passwd-file", "mkpasswd -m yescrypt").secret(
        f"postmaster:{{CRYPT}}{mkpasswd('yescrypt', c.strong())}:::::").write()
    c.file("/usr/share/doc/dovecot-core/passwd-file.example", "dovecot-passwd-file", "documentation").decoy(
        "user:{SHA512-CRYPT}$6$<salt>$<hash>:1000:1000::/home/user", "documentation").write()


def ftp_files(c: Corpus) -> None:
    # pure-pw(8): user:hash:uid:gid:gecos:home/./ then quota and bandwidth fields.
    c.file("/etc/pure-ftpd/pureftpd.passwd", "pure-ftpd", "mkpasswd -m sha-512").secret(
        f"webupload:{mkpasswd('sha-512', c.strong())}:1001:1001::/srv/ftp/webupload/./::::::::::::").secret(
        f"backup:{mkpasswd('bcrypt', c.strong())}:1002:1002::/srv/ftp/backup/./::::::::::::").write()
    # vsftpd virtual users through pam_pwdfile: an htpasswd-style user:crypt file.
    c.file("/etc/vsftpd/ftpd.passwd", "vsftpd", "openssl passwd -1").secret(
        "partner:" + openssl_passwd("-1", c.strong())).secret(
        "scanner:" + openssl_passwd("-1", "scanner")).write()
    # ProFTPD's ftpasswd writes AuthUserFile lines like /etc/passwd: user:hash:uid:gid:gecos:home:shell.
    c.file("/etc/proftpd/ftpd.passwd", "proftpd", "mkpasswd -m sha-512, openssl passwd -1 (ftpasswd format)").secret(
        f"webdev:{mkpasswd('sha-512', c.strong())}:2001:2001::/var/www:/bin/false").secret(
        f"uploads:{openssl_passwd('-1', 'uploads2023')}:2002:2001::/srv/uploads:/bin/false").write()
    # courier userdb(8): name<TAB>field=value|field=value...
    c.file("/etc/courier/userdb", "courier-userdb", "openssl passwd -1").secret(
        f"jane\tuid=5000|gid=5000|home=/var/mail/jane|systempw={openssl_passwd('-1', c.strong())}").write()
    c.file("/etc/shadow", "shadow", "mkpasswd -m yescrypt").add(
        "root:*:19800:0:99999:7:::", "daemon:*:19800:0:99999:7:::").secret(
        f"admin:{mkpasswd('yescrypt', c.strong())}:19900:0:99999:7:::").decoy(
        "backup:!:19900:0:99999:7:::", "locked").write()


# --- plaintext credential files --------------------------------------------------------------

def git_files(c: Corpus) -> None:
    home = Path(tempfile.mkdtemp(prefix="corpus-real-git-"))
    try:
        env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "GIT_CONFIG_NOSYSTEM": "1"}
        run("git", "config", "--global", "credential.helper", "store", env=env)
        entries = [("github.com", "ci-bot", "ghp_" + c.key(string.ascii_letters + string.digits, 36)),
                   ("git.contoso.com", "jane@contoso.com", c.strong() + "@!"),
                   ("gitlab.internal", "deploy", "password")]
        for host, user, pw in entries:
            run("git", "credential", "approve", env=env,
                stdin=f"protocol=https\nhost={host}\nusername={user}\npassword={pw}\n\n")
        text = (home / ".git-credentials").read_text().splitlines()
        run("git", "config", "--global", "credential.helper",
            "store --file ~/.config/git/credentials", env=env)
        (home / ".config/git").mkdir(parents=True)
        run("git", "credential", "approve", env=env,
            stdin=f"protocol=https\nhost=git.partner.net\nusername=contoso\npassword={c.strong()}\n\n")
        xdg = (home / ".config/git/credentials").read_text().splitlines()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    f = c.file("/root/.config/git/credentials", "git-credentials", "git credential approve (store --file)")
    for line in xdg:
        f.secret(line)
    f.write()
    c.file("/usr/share/doc/git/git-credential-store.txt", "git-credentials", "documentation").add(
        "The file stores one credential per line:").decoy(
        "https://user:pass@example.com", "documentation").write()
    f = c.file("/home/dev/.git-credentials", "git-credentials", "git credential approve (store helper)")
    weak = {"gitlab.internal"}
    for line in text:
        f.secret(line, weak=any(h in line for h in weak))
    f.write()
    # Written by hand (or by older tools): the user name's @ not percent-encoded.
    c.file("/home/jane/.git-credentials", "git-credentials", "hand-written, unencoded @ in the user").secret(
        f"https://jane.doe@contoso.com:{c.strong()}@dev.azure.com").secret(
        f"https://ops@contoso.com:{c.strong()}@bitbucket.org").secret(
        f"https://ci:{c.strong()}@git.contoso.com:8443/platform/deploy.git").write()


def docker_files(c: Corpus) -> None:
    # docs.docker.com "docker login" / config.json: auths.<registry>.auth = base64(user:password).
    def auth(user: str, pw: str) -> str:
        return base64.b64encode(f"{user}:{pw}".encode()).decode()
    # Docker < 1.11 wrote "email" (and the file with tabs); keys in that order.
    f = c.file("/home/ci/.docker/config.json", "docker-config", "Docker config.json (older, email first)")
    f.add("{", '\t"auths": {', '\t\t"https://index.docker.io/v1/": {')
    f.add('\t\t\t"email": "ci@contoso.com",')
    f.secret(f'\t\t\t"auth": "{auth("contosoci", c.strong())}"')
    f.add("\t\t},", '\t\t"registry.contoso.com:5000": {', '\t\t\t"email": "ci@contoso.com",')
    f.secret(f'\t\t\t"auth" : "{auth("ci", c.strong())}"')
    f.add("\t\t}", "\t}", "}")
    f.write()
    f = c.file("/root/.docker/config.json", "docker-config", "Docker config.json (current)")
    f.add("{", '  "auths": {', '    "ghcr.io": {')
    f.secret(f'      "auth": "{auth("contoso-bot", "ghp_" + c.key(string.ascii_letters + string.digits, 36))}"')
    f.add("    },", '    "123456789012.dkr.ecr.eu-west-1.amazonaws.com": {}', "  },",
          '  "credHelpers": {"123456789012.dkr.ecr.eu-west-1.amazonaws.com": "ecr-login"}', "}")
    f.write()
    # The pre-1.7 ~/.dockercfg: registries at the top level, one line.
    c.file("/home/legacy/.dockercfg", "docker-config", "Docker .dockercfg (legacy)").secret(
        '{"https://index.docker.io/v1/":{"auth":"' + auth("legacy", c.strong())
        + '","email":"legacy@contoso.com"}}').write()
    c.file("/home/dev/.docker/config.json", "docker-config", "Docker config.json with a credential store").add(
        "{", '  "auths": {').decoy('    "https://index.docker.io/v1/": {"auth": ""},', "empty").add(
        '    "ghcr.io": {}', "  },", '  "credsStore": "desktop"', "}").write()
    # containers-auth.json(5): podman/buildah/skopeo, Docker's auths format.
    f = c.file("/run/user/1000/containers/auth.json", "podman-auth", "containers-auth.json")
    f.add("{", '	"auths": {', '		"quay.io": {')
    f.secret(f'			"auth": "{auth("contoso+robot", c.strong(32))}"')
    f.add("		}", "	}", "}")
    f.write()


def pgpass_files(c: Corpus) -> None:
    # PostgreSQL manual, "The Password File": hostname:port:database:username:password.
    c.file("/home/app/.pgpass", "pgpass", "PostgreSQL .pgpass").decoy(
        "# hostname:port:database:username:password", "commented").secret(
        f"db01.internal:5432:shop:shop:{c.strong()}").secret(
        f"*:*:*:replicator:{c.strong(24)}").secret(
        f"db02.internal:6432:*:pgbouncer:{c.strong(8)}\\:{c.strong(8)}").write()
    c.file("/var/lib/postgresql/.pgpass", "pgpass", "PostgreSQL .pgpass").secret(
        "localhost:5432:*:postgres:password", weak=True).write()
    c.file("/home/report/.pgpass", "pgpass", "PostgreSQL .pgpass").secret(
        "reports.internal:5432:reports:reporter:dragon", weak=True).secret(
        "reports.internal:5432:staging:reporter:test2024", weak=True).write()
    c.file("/Users/dba/AppData/Roaming/postgresql/pgpass.conf", "pgpass", "PostgreSQL pgpass.conf (Windows)",
           crlf=True).secret("pg01.contoso.local:5432:*:dba:Summer2024!", weak=True).secret(
        f"pg02.contoso.local:5432:*:dba:{c.strong()}").write()


def mysql_files(c: Corpus) -> None:
    # MySQL manual, "Using Option Files": [client] user=, password=.
    c.file("/root/.my.cnf", "mysql-option-file", "MySQL option file").add("[client]", "user=root").secret(
        f"password={c.strong()}").add("", "[mysqldump]", "user=backup").secret(
        f"password='{c.strong(8)}#{c.strong(8)}'").write()
    c.file("/home/app/.my.cnf", "mysql-option-file", "MySQL option file").add("[client]", "user = app").secret(
        'password = "welcome1"', weak=True).add("host = db01.internal").write()
    # Debian's /etc/mysql/debian.cnf, as the mariadb-server maintainer scripts write it.
    f = c.file("/etc/mysql/debian.cnf", "mysql-option-file", "Debian debian.cnf")
    pw = c.strong(16)
    f.add("# Automatically generated for Debian scripts. DO NOT TOUCH!", "[client]", "host     = localhost",
          "user     = debian-sys-maint").secret(f"password = {pw}").add(
        "socket   = /var/run/mysqld/mysqld.sock", "[mysql_upgrade]", "host     = localhost",
        "user     = debian-sys-maint").secret(f"password = {pw}").add(
        "socket   = /var/run/mysqld/mysqld.sock").write()
    c.file("/etc/mysql/conf.d/client.cnf", "mysql-option-file", "MySQL option file template").add(
        "[client]").decoy("#password = your_password", "commented").decoy("password =", "empty").add(
        "[mysqldump]").decoy("password", "prompt").write()


def netrc_files(c: Corpus) -> None:
    # GNU inetutils / curl .netrc: machine NAME login USER password PASS.
    f = c.file("/home/dev/.netrc", "netrc", ".netrc (multi-line entries)")
    f.add("machine api.heroku.com", "  login dev@contoso.com").secret(f"  password {c.strong(36)}")
    f.add("machine ftp.contoso.com", "  login upload").secret("  password example", weak=True)
    f.write()
    c.file("/root/.netrc", "netrc", ".netrc (one line)").secret(
        f"machine backup.contoso.com login backup password {c.strong()}").add(
        "default login anonymous password guest@").write()
    # curl 7.84+ reads quoted values, so a password may hold spaces.
    c.file("/home/ops/.netrc", "netrc", ".netrc (quoted, curl)").secret(
        f'machine artifacts.contoso.com login ops password "{c.strong(10)} {c.strong(10)}"').write()
    c.file("/etc/skel/.netrc", "netrc", ".netrc template").decoy(
        "machine ftp.contoso.com login ${USER} password ${FTP_PASSWORD}", "template").write()


def wordpress_files(c: Corpus) -> None:
    # WordPress's wp-config-sample.php, filled in as the installer does.
    def wp(path: str, password: str, weak: bool, sample: bool = False) -> None:
        f = c.file(path, "wordpress", "WordPress wp-config-sample.php" if sample else "wp-config.php")
        f.add("<?php", "/**", " * The base configuration for WordPress", " */", "",
              "// ** Database settings - You can get this info from your web host ** //",
              "/** The name of the database for WordPress */",
              f"define( 'DB_NAME', '{'database_name_here' if sample else 'wordpress'}' );", "",
              "/** Database username */",
              f"define( 'DB_USER', '{'username_here' if sample else 'wp_user'}' );", "",
              "/** Database password */")
        line = f"define( 'DB_PASSWORD', '{password}' );"
        if sample:
            f.decoy(line, "template")
        else:
            f.secret(line, weak=weak)
        f.add("", "/** Database hostname */", "define( 'DB_HOST', 'localhost' );", "",
              "define( 'DB_CHARSET', 'utf8' );", "define( 'DB_COLLATE', '' );", "")
        for k in ("AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY"):
            f.decoy(f"define( '{k}', 'put your unique phrase here' );", "template")
        f.add("", "$table_prefix = 'wp_';", "", "define( 'WP_DEBUG', false );", "",
              "if ( ! defined( 'ABSPATH' ) ) {", "\tdefine( 'ABSPATH', __DIR__ . '/' );", "}",
              "require_once ABSPATH . 'wp-settings.php';")
        f.write()
    wp("/var/www/html/wp-config.php", c.strong(), False)
    wp("/var/www/blog/wp-config.php", "wordpress", True)
    wp("/var/www/html/wp-config-sample.php", "password_here", False, sample=True)
    # The official Docker image's wp-config-docker.php, installed as wp-config.php.
    c.file("/var/www/docker/wp-config.php", "wordpress", "WordPress Docker image wp-config").add(
        "<?php", "if (!function_exists('getenv_docker')) {", "\tfunction getenv_docker($env, $default) {",
        "\t\treturn getenv($env) ?: $default;", "\t}", "}").decoy(
        "define( 'DB_PASSWORD', getenv_docker('WORDPRESS_DB_PASSWORD', 'example password') );",
        "reference").write()


def filezilla_files(c: Corpus) -> None:
    # FileZilla 3 sitemanager.xml / recentservers.xml: <Pass encoding="base64">.
    def server(host: str, user: str, pw: str | None, name: str | None = None) -> list[str]:
        lines = ["\t\t<Server>", f"\t\t\t<Host>{host}</Host>", "\t\t\t<Port>21</Port>",
                 "\t\t\t<Protocol>0</Protocol>", "\t\t\t<Type>0</Type>", f"\t\t\t<User>{user}</User>"]
        if pw is not None:
            lines.append(f'\t\t\t<Pass encoding="base64">{base64.b64encode(pw.encode()).decode()}</Pass>')
            lines.append("\t\t\t<Logontype>1</Logontype>")
        else:
            lines.append("\t\t\t<Logontype>2</Logontype>")
        if name:
            lines.append(f"\t\t\t<Name>{name}</Name>")
        lines.append("\t\t</Server>")
        return lines

    head = ['<?xml version="1.0" encoding="UTF-8" standalone="yes" ?>', '<FileZilla3 version="3.63.1" platform="*nix">']

    def write(path: str, root: str, servers: list[tuple]) -> None:
        f = c.file(path, "filezilla", "FileZilla 3 " + Path(path).name)
        f.add(*head, f"\t<{root}>")
        for host, user, pw, weak in servers:
            block = server(host, user, pw, host.split(".")[0] if root == "Servers" else None)
            if pw is None:
                f.add(*block)
            else:
                at = next(i for i, l in enumerate(block) if "<Pass" in l)
                f.secret("\n".join(block), weak=weak, at=at)
        f.add(f"\t</{root}>", "</FileZilla3>")
        f.write()

    write("/home/dev/.config/filezilla/sitemanager.xml", "Servers",
          [("ftp.contoso.com", "web", c.strong(), False), ("staging.contoso.com", "web", "test123", True),
           ("ask.contoso.com", "ops", None, False)])
    write("/home/dev/.config/filezilla/recentservers.xml", "RecentServers",
          [("files.partner.example.net", "contoso", "example2024", True)])
    write("/Users/ops/AppData/Roaming/FileZilla/sitemanager.xml", "Servers",
          [("10.0.4.20", "backup", c.strong(), False)])
    # With a master password FileZilla encrypts: <Pass encoding="crypt" pubkey="...">.
    f = c.file("/home/ops/.config/filezilla/sitemanager.xml", "filezilla", "FileZilla 3, master password set")
    f.add(*head, "\t<Servers>", "\t\t<Server>", "\t\t\t<Host>sftp.contoso.com</Host>", "\t\t\t<User>ops</User>")
    f.decoy(f'\t\t\t<Pass encoding="crypt" pubkey="{c.key(string.ascii_letters + string.digits, 64)}">'
            f'{c.key(string.ascii_letters + string.digits, 88)}</Pass>', "encrypted")
    f.add("\t\t</Server>", "\t</Servers>", "</FileZilla3>").write()


def rails_files(c: Corpus) -> None:
    # Rails < 5.2 config/secrets.yml; Capistrano links it from shared/.
    hexkey = lambda: c.key("0123456789abcdef", 128)  # noqa: E731
    c.file("/var/www/shop/shared/secrets.yml", "rails-secrets", "Rails secrets.yml (Capistrano shared)").add(
        "production:").secret(f"  secret_key_base: {hexkey()}").write()
    c.file("/srv/legacy-app/secrets.yml", "rails-secrets", "Rails secrets.yml (app root)").add(
        "development:").secret(f"  secret_key_base: {hexkey()}").add("production:").secret(
        f"  secret_key_base: {hexkey()}").write()
    c.file("/var/www/shop/current/config/secrets.yml", "rails-secrets", "Rails secrets.yml reading ENV").add(
        "production:").decoy('  secret_key_base: <%= ENV["SECRET_KEY_BASE"] %>', "template").write()
    c.file("/var/www/shop/current/config/database.yml", "rails-secrets", "Rails database.yml reading ENV").add(
        "production:", "  adapter: postgresql", "  username: shop").decoy(
        "  password: <%= ENV['SHOP_DATABASE_PASSWORD'] %>", "template").write()


def aws_files(c: Corpus) -> None:
    b64 = string.ascii_letters + string.digits + "+/"
    kid = lambda: "AKIA" + c.key(string.ascii_uppercase + "234567", 16)  # noqa: E731
    c.file("/home/ops/.aws/credentials", "aws-credentials", "AWS CLI credentials file").add(
        "[default]", f"aws_access_key_id = {kid()}").secret(
        f"aws_secret_access_key = {c.key(b64, 40)}").add(
        "", "[profile-ci]", f"aws_access_key_id={kid()}").secret(
        f"aws_secret_access_key={c.key(b64, 40)}").add("aws_session_token=").write()
    # Keys one character short or long (copied with a character lost, a compatible service).
    c.file("/home/ci/.aws/credentials", "aws-credentials", "AWS CLI credentials (non-canonical keys)").add(
        "[deploy]", f"aws_access_key_id = {kid()[:-1]}").secret(
        f"aws_secret_access_key = {c.key(b64, 39)}").add(
        "", "[wasabi]", f"aws_access_key_id = {c.key(string.ascii_uppercase + string.digits, 20)}").secret(
        f"aws_secret_access_key = {c.key(string.ascii_letters + string.digits, 41)}").write()
    c.file("/home/ops/.aws/config", "aws-credentials", "AWS CLI config").add(
        "[default]", "region = eu-west-1", "output = json").write()
    c.file("/usr/share/doc/awscli/examples/credentials.txt", "aws-credentials", "documentation").add(
        "[default]").decoy("aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "documentation").decoy(
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "documentation").write()
    c.file("/opt/deploy/configure-aws.sh", "aws-credentials", "shell script").add("#!/bin/sh").decoy(
        'aws configure set aws_secret_access_key "$AWS_SECRET_ACCESS_KEY"', "reference").write()


def heroku_files(c: Corpus) -> None:
    hexd = "0123456789ABCDEF"
    uuid = "-".join(c.key(hexd, n) for n in (8, 4, 4, 4, 12))
    c.file("/home/dev/.bashrc", "heroku", "shell profile").add(
        "# ~/.bashrc", "export PATH=$HOME/bin:$PATH").secret(f"export HEROKU_API_KEY={uuid}").write()
    tok = "HRKU-AA" + c.key(string.ascii_letters + string.digits + "_-", 55)
    c.file("/home/dev/.profile", "heroku", "shell profile").secret(f"HEROKU_API_KEY='{tok}'").write()
    c.file("/home/dev/src/app/README.md", "heroku", "documentation").add("# Deploy", "").decoy(
        "    export HEROKU_API_KEY=<your-heroku-api-key>", "documentation").write()
    c.file("/home/dev/src/app/.github/workflows/deploy.yml", "heroku", "GitHub Actions workflow").add(
        "jobs:", "  deploy:", "    runs-on: ubuntu-latest", "    env:").decoy(
        "      HEROKU_API_KEY: ${{ secrets.HEROKU_API_KEY }}", "reference").write()


def tool_files(c: Corpus) -> None:
    # s3cmd --configure writes ~/.s3cfg.
    c.file("/root/.s3cfg", "s3cmd", "s3cmd .s3cfg").add(
        "[default]", "access_key = " + c.key(string.ascii_uppercase + string.digits, 20)).secret(
        "secret_key = " + c.key(string.ascii_letters + string.digits + "/+", 40)).add(
        "host_base = s3.amazonaws.com").write()
    c.file("/home/dev/.npmrc", "npmrc", "npm .npmrc").secret(
        "//registry.npmjs.org/:_authToken=npm_" + c.key(string.ascii_letters + string.digits, 36)).write()
    c.file("/home/dev/.pypirc", "pypirc", "twine .pypirc").add(
        "[distutils]", "index-servers =", "    internal", "", "[internal]",
        "repository = https://pypi.contoso.com/", "username = ci").secret(f"password = {c.strong()}").write()
    c.file("/home/dev/.pypirc.template", "pypirc", "template").decoy(
        "password = ${PYPI_PASSWORD}", "template").write()


WRITERS = [htpasswd_files, mosquitto_files, dovecot_files, ftp_files, git_files, docker_files, pgpass_files,
           mysql_files, netrc_files, wordpress_files, filezilla_files, rails_files, aws_files,
           heroku_files, tool_files] + apps.WRITERS + devtools.WRITERS + lookalikes.WRITERS
# Appended last: the held-out slice (heldout.py), so the files before it keep their values.
WRITERS += heldout.WRITERS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    missing = [f"{t} ({p})" for t, p in TOOLS.items() if shutil.which(t) is None]
    if missing:
        sys.exit(f"generate.py: missing {', '.join(missing)}: run scripts/toolchain.sh")
    if args.out.exists() and any(args.out.iterdir()):
        sys.exit(f"generate.py: {args.out} is not empty")
    c = Corpus(args.out, args.seed)
    for writer in WRITERS:
        writer(c)
    (args.out / "truth.json").write_text(json.dumps({"files": c.files}, indent=1) + "\n")
    secret_files = sum(1 for f in c.files if f["secrets"])
    families = len({f["family"] for f in c.files})
    print(f"{len(c.files)} files ({secret_files} with secrets) in {families} families", file=sys.stderr)


if __name__ == "__main__":
    main()
