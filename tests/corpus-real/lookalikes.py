"""Look-alike non-secrets for the real-software corpus: for each credential syntax the corpus
covers, the same line as software ships it or people leave it when there is no secret in it —
a template reading the value from elsewhere (`${VAR}`, `getenv`, `{{ var }}`, `<%= ENV %>`,
`%(name)s`), a commented-out example in the file's own comment syntax, and the line quoted in the
package's documentation — plus files full of hashes of non-secrets (checksum lists, lockfile
integrity hashes, git refs, public keys). None of these lines may be reported.
"""

from __future__ import annotations

import base64
import hashlib
import string

from corpuslib import Corpus

# (family, server path of a real file, comment prefix, line with {v} where the value goes,
#  template references that syntax uses)
SYNTAXES = [
    ("phpbb", "/var/www/{n}/config.php", "// ", "$dbpasswd = '{v}';", ["' . getenv('DB_PASSWORD') . '"]),
    ("joomla", "/var/www/{n}/configuration.php", "// ", "\tpublic $password = '{v}';", ["${JOOMLA_DB_PASSWORD}"]),
    ("drupal", "/var/www/{n}/sites/default/settings.php", "# ", "  'password' => '{v}',", ["$_ENV['DB_PASS']"]),
    ("laravel", "/var/www/{n}/.env", "# ", "DB_PASSWORD={v}", ["${DB_PASSWORD}"]),
    ("nextcloud", "/var/www/{n}/config/config.php", "// ", "  'dbpassword' => '{v}',", ["{{ nextcloud_db_password }}"]),
    ("wordpress", "/var/www/{n}/wp-config.php", "// ", "define( 'DB_PASSWORD', '{v}' );", ["%%DB_PASSWORD%%"]),
    ("docker-compose", "/opt/{n}/docker-compose.yml", "# ", "      MYSQL_PASSWORD: {v}", ["${MYSQL_PASSWORD:?set it}"]),
    ("spring-boot", "/opt/{n}/application.properties", "# ", "spring.datasource.password={v}", ["${SPRING_DATASOURCE_PASSWORD}"]),
    ("tomcat", "/opt/{n}/conf/tomcat-users.xml", "<!-- ", '  <user username="admin" password="{v}" roles="manager-gui"/>', ["${tomcat.admin.password}"]),
    ("ansible", "/srv/{n}/group_vars/all.yml", "# ", "ansible_become_password: {v}", ['"{{ vault_become_pass }}"']),
    ("cifs", "/root/.smbcredentials-{n}", "# ", "password={v}", ["${SMB_PASSWORD}"]),
    ("wifi", "/etc/NetworkManager/system-connections/{n}.nmconnection", "# ", "psk={v}", ["${WIFI_PSK}"]),
    ("redis", "/etc/redis/{n}.conf", "# ", "requirepass {v}", ["${REDIS_PASSWORD}"]),
    ("ldap", "/etc/ldap/{n}.conf", "# ", "bindpw {v}", ["${LDAP_BIND_PW}"]),
    ("voice", "/etc/murmur/{n}.ini", "; ", "serverpassword={v}", ["${MUMBLE_PASSWORD}"]),
    ("mail-client", "/home/{n}/.msmtprc", "# ", "password {v}", ["${SMTP_PASSWORD}"]),
    ("grafana", "/etc/grafana/{n}.ini", "; ", "admin_password = {v}", ["$__env{GF_ADMIN_PASSWORD}"]),
    ("rabbitmq", "/etc/rabbitmq/conf.d/{n}.conf", "# ", "default_pass = {v}", ["${RABBITMQ_PASS}"]),
    ("zabbix", "/etc/zabbix/{n}.conf", "# ", "DBPassword={v}", ["${ZBX_DB_PASSWORD}"]),
    ("odoo", "/etc/odoo/{n}.conf", "; ", "db_password = {v}", ["%(ODOO_DB_PASSWORD)s"]),
    ("gitlab", "/etc/gitlab/{n}.rb", "# ", "gitlab_rails['db_password'] = '{v}'", ["#{ENV['GITLAB_DB_PASSWORD']}"]),
    ("restic-borg", "/etc/restic/{n}.env", "# ", "RESTIC_PASSWORD={v}", ["$(cat /root/.restic-pass)"]),
    ("openstack", "/home/{n}/.config/openstack/clouds.yaml", "# ", "      password: {v}", ["${OS_PASSWORD}"]),
    ("sublime-sftp", "/var/www/{n}/sftp-config.json", "//", '    "password": "{v}",', ["${SFTP_PASSWORD}"]),
    ("vscode-sftp", "/home/{n}/site/.vscode/sftp.json", "//", '    "password": "{v}",', ["${env:SFTP_PASSWORD}"]),
    ("mysql-option-file", "/home/{n}/.my.cnf", "# ", "password={v}", ["${MYSQL_PWD}"]),
    ("pgpass", "/home/{n}/.pgpass", "# ", "db01:5432:*:app:{v}", ["${PGPASSWORD}"]),
    ("netrc", "/home/{n}/.netrc", "# ", "machine ftp.contoso.com login app password {v}", ["${FTP_PASSWORD}"]),
    ("pypirc", "/home/{n}/.pypirc", "# ", "password = {v}", ["${TWINE_PASSWORD}"]),
    ("aws-credentials", "/home/{n}/.aws/credentials", "# ", "aws_secret_access_key = {v}", ["${AWS_SECRET_ACCESS_KEY}"]),
    ("app-source", "/opt/{n}/settings.py", "# ", "DB_PASSWORD = '{v}'", ["' + os.environ['DB_PASSWORD'] + '"]),
    ("app-source", "/srv/{n}/config.js", "// ", "  password: '{v}',", ["' + process.env.DB_PASSWORD + '"]),
    ("connection-url", "/srv/{n}/app.conf", "# ", "DATABASE_URL=postgres://app:{v}@db01.contoso.com/app", ["${DB_PASSWORD}"]),
    ("sql-script", "/opt/{n}/db/init.sql", "-- ", "CREATE USER 'app'@'%' IDENTIFIED BY '{v}';", ["${APP_DB_PASSWORD}"]),
]

NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def templates_and_comments(c: Corpus) -> None:
    strong_doc = "Zq8wM2rX9vLkT4nB"  # a strong-looking value, only ever in comments and docs here
    for i, (family, path, comment, line, refs) in enumerate(SYNTAXES):
        name = f"{NAMES[i % len(NAMES)]}{i}"
        # A deployment whose value comes from elsewhere.
        f = c.file(path.format(n=name + "-tpl"), family, "template reading the value from elsewhere")
        for ref in refs:
            f.decoy(line.format(v=ref), "template")
        f.write()
        # The same line commented out, as sample configs ship it.
        f = c.file(path.format(n=name + "-old"), family, "commented-out example")
        suffix = " -->" if comment.startswith("<!--") else ""
        f.decoy(comment + line.format(v=strong_doc).lstrip() + suffix, "commented")
        f.write()
        # The package's documentation quoting the line.
        pkg = family.replace("_", "-")
        f = c.file(f"/usr/share/doc/{pkg}/README.example-{i}.txt", family, "documentation")
        f.add(f"Example configuration for {family}:", "")
        f.decoy("    " + line.format(v="<your-password>").lstrip(), "documentation")
        f.write()


def hashes_of_non_secrets(c: Corpus) -> None:
    files = [f"usr/lib/x86_64-linux-gnu/lib{c.key(string.ascii_lowercase, 6)}.so.{i}" for i in range(40)]
    f = c.file("/var/lib/dpkg/info/libexample1.md5sums", "checksums", "dpkg md5sums")
    for p in files:
        f.add(f"{hashlib.md5(p.encode()).hexdigest()}  {p}")
    f.write()
    f = c.file("/srv/releases/SHA256SUMS", "checksums", "release checksums")
    for i in range(20):
        f.add(f"{hashlib.sha256(str(i).encode()).hexdigest()}  app-1.{i}.0-linux-amd64.tar.gz")
    f.write()
    f = c.file("/srv/app/.git/packed-refs", "checksums", "git packed-refs")
    f.add("# pack-refs with: peeled fully-peeled sorted")
    for i in range(15):
        f.add(f"{hashlib.sha1(str(i).encode()).hexdigest()} refs/tags/v1.{i}.0")
    f.write()
    f = c.file("/srv/app/package-lock.json", "checksums", "npm lockfile integrity hashes")
    f.add("{", '  "name": "app",', '  "lockfileVersion": 3,', '  "packages": {')
    for i, pkg in enumerate(["express", "passport", "passport-local", "jsonwebtoken", "bcrypt", "secret-stack"]):
        digest = hashlib.sha512(pkg.encode()).digest()
        f.add(f'    "node_modules/{pkg}": {{', f'      "version": "1.{i}.0",',
              f'      "resolved": "https://registry.npmjs.org/{pkg}/-/{pkg}-1.{i}.0.tgz",',
              f'      "integrity": "sha512-{base64.b64encode(digest).decode()}"', "    },")
    f.add('    "": {}', "  }", "}")
    f.write()
    f = c.file("/home/dev/.ssh/known_hosts", "checksums", "hashed known_hosts")
    for i in range(6):
        salt = base64.b64encode(hashlib.sha1(f"s{i}".encode()).digest()).decode()
        h = base64.b64encode(hashlib.sha1(f"h{i}".encode()).digest()).decode()
        key = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + hashlib.sha256(str(i).encode()).digest()).decode()
        f.add(f"|1|{salt}|{h} ssh-ed25519 {key}")
    f.write()
    f = c.file("/srv/app/go.sum", "checksums", "Go module checksums")
    for mod in ["golang.org/x/crypto", "github.com/golang-jwt/jwt/v5", "github.com/go-sql-driver/mysql"]:
        f.add(f"{mod} v1.0.0 h1:{base64.b64encode(hashlib.sha256(mod.encode()).digest()).decode()}")
    f.write()
    f = c.file("/etc/apache2/conf-available/security.conf", "checksums", "Apache config mentioning passwords")
    f.add("# Password-protected areas are configured per site:", "#   AuthUserFile /etc/apache2/.htpasswd",
          "ServerTokens Prod", "ServerSignature Off").write()


WRITERS = [templates_and_comments, hashes_of_non_secrets]
