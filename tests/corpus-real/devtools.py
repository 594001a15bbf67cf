"""Developer-tool families of the real-software corpus: editor and IDE deployment configs left in
web roots (Sublime SFTP, VS Code SFTP, Atom remote-ftp/remote-sync, JetBrains WebServers.xml),
database GUI connection files (DBeaver, Robo 3T), CLI token files (hub, gh, doctl, Terraform,
Vault, legacy gcloud and Heroku), database dumps and SQL scripts (mysqldump and pg_dump output
formats), WordPress keys and salts, connection URLs, and credentials hard-coded in source —
each in the format the tool writes or documents, with its look-alikes.
"""

from __future__ import annotations

import base64
import hashlib
import string

from corpuslib import Corpus, htpasswd

HEX = "0123456789abcdef"
ALNUM = string.ascii_letters + string.digits
# The characters WordPress's secret-key service draws salts from.
WP_SALT = string.ascii_letters + string.digits + "!@#$%^&*()-_ []{}<>~`+=,.;:/?|"


def editors(c: Corpus) -> None:
    # Sublime SFTP's sftp-config.json (its template has // comments and the password commented).
    def sublime(path: str, pw: str | None, weak: bool = False) -> None:
        f = c.file(path, "sublime-sftp", "Sublime SFTP sftp-config.json")
        f.add("{", "    // The tab key will cycle through the settings when first created", '    "type": "sftp",',
              '    "save_before_upload": true,', '    "upload_on_save": false,', '    "host": "web01.contoso.com",',
              '    "user": "deploy",')
        if pw is None:
            f.decoy('    //"password": "password",', "commented")
        else:
            f.secret(f'    "password": "{pw}",', weak=weak)
        f.add('    "port": "22",', '    "remote_path": "/var/www/html/",', "}")
        f.write()
    sublime("/var/www/html/sftp-config.json", c.strong())
    sublime("/var/www/shop/sftp-config.json", "Deploy2023!", True)
    sublime("/home/dev/projects/site/sftp-config.json", None)

    def vscode(path: str, pw: str | None, weak: bool = False) -> None:
        f = c.file(path, "vscode-sftp", "VS Code SFTP extension .vscode/sftp.json")
        f.add("{", '    "name": "production",', '    "host": "web01.contoso.com",', '    "protocol": "sftp",',
              '    "port": 22,', '    "username": "deploy",')
        if pw is None:
            f.add('    "privateKeyPath": "/home/dev/.ssh/id_ed25519",')
        else:
            f.secret(f'    "password": "{pw}",', weak=weak)
        f.add('    "remotePath": "/var/www/html",', '    "uploadOnSave": true', "}")
        f.write()
    vscode("/var/www/portal/.vscode/sftp.json", c.strong())
    vscode("/home/dev/projects/blog/.vscode/sftp.json", "qwerty123", True)
    vscode("/home/dev/projects/api/.vscode/sftp.json", None)

    f = c.file("/var/www/landing/.ftpconfig", "atom-remote", "Atom remote-ftp .ftpconfig")
    f.add("{", '    "protocol": "ftp",', '    "host": "ftp.contoso.com",', '    "port": 21,', '    "user": "landing",')
    f.secret('    "pass": "monkey",', weak=True)
    f.add('    "remote": "/public_html",', '    "secure": false', "}")
    f.write()
    f = c.file("/var/www/promo/.remote-sync.json", "atom-remote", "Atom remote-sync .remote-sync.json")
    f.add("{", '  "transport": "ftp",', '  "hostname": "ftp.contoso.com",', '  "port": 21,', '  "username": "promo",')
    f.secret(f'  "password": "{c.strong()}",')
    f.add('  "target": "/public_html",', '  "watch": []', "}")
    f.write()
    f = c.file("/home/dev/projects/docs/.ftpconfig", "atom-remote", "Atom remote-ftp .ftpconfig without a password")
    f.add("{", '    "protocol": "sftp",', '    "host": "docs.contoso.com",', '    "user": "docs",')
    f.decoy('    "pass": "",', "empty")
    f.add('    "privatekey": "~/.ssh/id_rsa"', "}").write()

    # JetBrains IDEs (before the credential store) scramble the password: each character XOR
    # 0xDFDD, written as four hex digits.
    def scramble(pw: str) -> str:
        return "".join(f"{ord(ch) ^ 0xDFDD:04x}" for ch in pw)
    f = c.file("/home/dev/.config/JetBrains/PhpStorm2019.3/options/webServers.xml", "jetbrains",
               "JetBrains options/webServers.xml")
    f.add("<application>", '  <component name="WebServers">', '    <option name="servers">',
          '      <webServer id="5a0c8a6e" name="production" url="https://www.contoso.com">')
    f.secret(f'        <fileTransfer host="ftp.contoso.com" port="21" rootFolder="/www" accessType="FTP" '
             f'login="web" password="{scramble(c.strong(12))}" />')
    f.add("      </webServer>", "    </option>", "  </component>", "</application>")
    f.write()
    f = c.file("/var/www/shop/.idea/webServers.xml", "jetbrains", "JetBrains .idea/webServers.xml in a web root")
    f.add('<?xml version="1.0" encoding="UTF-8"?>', '<project version="4">', '  <component name="WebServers">',
          '    <webServer id="1" name="staging" url="http://staging.contoso.com">')
    f.secret(f'      <fileTransfer accessType="SFTP" host="staging.contoso.com" port="22" login="deploy" '
             f'password="{scramble("staging")}" />')
    f.add("    </webServer>", "  </component>", "</project>")
    f.write()
    f = c.file("/var/www/api/.idea/webServers.xml", "jetbrains", "JetBrains webServers.xml, credential store")
    f.add('<project version="4">', '  <component name="WebServers">')
    f.decoy('      <fileTransfer accessType="SFTP" host="api.contoso.com" port="22" login="deploy" />', "credential-store")
    f.add("  </component>", "</project>").write()


def database_guis(c: Corpus) -> None:
    f = c.file("/home/dev/.local/share/DBeaverData/workspace6/General/.dbeaver/data-sources.json", "dbeaver",
               "DBeaver data-sources.json (password saved without secure storage)")
    f.add("{", '  "folders": {},', '  "connections": {', '    "postgres-jdbc-18c5a": {', '      "provider": "postgresql",',
          '      "name": "shop-prod",', '      "save-password": true,', '      "configuration": {',
          '        "host": "db01.contoso.com",', '        "port": "5432",', '        "database": "shop",',
          '        "user": "shop",')
    f.secret(f'        "password": "{c.strong()}",')
    f.add('        "auth-model": "native"', "      }", "    }", "  }", "}")
    f.write()
    f = c.file("/home/ana/.dbeaver/.dbeaver-data-sources.xml", "dbeaver", "DBeaver 3/4 .dbeaver-data-sources.xml")
    f.add('<?xml version="1.0" encoding="UTF-8"?>', "<data-sources>",
          '  <data-source id="mysql-1" provider="mysql" driver="mysql5" name="crm" save-password="true">',
          '    <connection host="db02.contoso.com" port="3306" server="" database="crm" url="jdbc:mysql://db02.contoso.com:3306/crm"')
    f.secret('      user="crm" password="summer2020" type="prod"/>', weak=True)
    f.add("  </data-source>", "</data-sources>")
    f.write()
    f = c.file("/home/ana/.local/share/DBeaverData/workspace6/General/.dbeaver/data-sources-2.json", "dbeaver",
               "DBeaver data-sources.json (password in the secure storage)")
    f.add("{", '  "connections": {', '    "mysql8-1": {', '      "save-password": false,', '      "configuration": {',
          '        "host": "db02.contoso.com",', '        "user": "crm"', "      }", "    }", "  }", "}").write()
    f = c.file("/home/dev/.3T/robo-3t/1.4.4/robo3t.json", "robo3t", "Robo 3T robo3t.json")
    f.add("{", '    "connections": [', "        {", '            "connectionName": "catalog",',
          '            "serverHost": "mongo01.contoso.com",', '            "serverPort": 27017,',
          '            "credentials": [', "                {", '                    "databaseName": "admin",',
          '                    "enabled": true,', '                    "userName": "root",')
    f.secret('                    "userPassword": "mongo123"', weak=True)
    f.add("                }", "            ]", "        }", "    ]", "}")
    f.write()
    f = c.file("/home/ops/.3T/robo-3t/1.4.4/robo3t.json", "robo3t", "Robo 3T robo3t.json")
    f.add("{", '    "connections": [', "        {", '            "credentials": [', "                {",
          '                    "userName": "reporting",')
    f.secret(f'                    "userPassword": "{c.strong()}"')
    f.add("                }", "            ]", "        }", "    ]", "}")
    f.write()


def cli_tokens(c: Corpus) -> None:
    f = c.file("/home/dev/.config/hub", "github-cli", "hub ~/.config/hub")
    f.add("github.com:", "- user: jane")
    f.secret(f"  oauth_token: {c.key(HEX, 40)}")
    f.add("  protocol: https")
    f.write()
    f = c.file("/home/ci/.config/gh/hosts.yml", "github-cli", "gh ~/.config/gh/hosts.yml (token in the file)")
    f.add("github.com:", "    git_protocol: https", "    user: contoso-ci")
    f.secret(f"    oauth_token: gho_{c.key(ALNUM, 36)}")
    f.write()
    f = c.file("/home/dev/.config/gh/hosts.yml", "github-cli", "gh hosts.yml (token in the keyring)")
    f.add("github.com:", "    git_protocol: https", "    users:", "        jane:", "    user: jane").write()
    f = c.file("/home/ops/.config/doctl/config.yaml", "doctl", "doctl config.yaml")
    f.secret(f"access-token: dop_v1_{c.key(HEX, 64)}")
    f.add("context: default", "output: text")
    f.write()
    f = c.file("/home/ops/.terraform.d/credentials.tfrc.json", "terraform", "terraform login credentials.tfrc.json")
    f.add("{", '  "credentials": {', '    "app.terraform.io": {')
    f.secret(f'      "token": "{c.key(ALNUM, 14)}.atlasv1.{c.key(ALNUM, 67)}"')
    f.add("    }", "  }", "}")
    f.write()
    c.file("/root/.vault-token", "vault", "Vault token helper file").secret(f"hvs.{c.key(ALNUM, 24)}").write()
    f = c.file("/home/dev/.config/gcloud/legacy_credentials/jane@contoso.com/.boto", "legacy-cloud-cli",
               "gcloud legacy_credentials .boto")
    f.add("[OAuth2]", "client_id = 32555940559.apps.googleusercontent.com", "client_secret = ZmssLNjJy2998hD4CTg2ejr2", "",
          "[Credentials]")
    f.secret(f"gs_oauth2_refresh_token = 1//0g{c.key(ALNUM + '_-', 60)}")
    f.write()
    c.file("/home/dev/.heroku/credentials", "legacy-cloud-cli", "Heroku toolbelt (gem) credentials").add(
        "jane@contoso.com").secret(c.key(HEX, 40)).write()


def dumps(c: Corpus) -> None:
    def bcrypt_hash(pw: str) -> str:
        return htpasswd("B", "x", pw).split(":", 1)[1]

    head = ["-- MySQL dump 10.13  Distrib 8.0.36, for Linux (x86_64)", "--", "-- Host: localhost    Database: shop",
            "-- ------------------------------------------------------", "-- Server version\t8.0.36", "",
            "/*!40101 SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT */;"]
    f = c.file("/var/backups/mysql/shop-2024-03-01.sql", "mysql-dump", "mysqldump output (users table)")
    f.add(*head, "", "DROP TABLE IF EXISTS `users`;", "CREATE TABLE `users` (",
          "  `id` int NOT NULL AUTO_INCREMENT,", "  `email` varchar(255) NOT NULL,",
          "  `password` varchar(255) NOT NULL,", "  PRIMARY KEY (`id`)", ") ENGINE=InnoDB;", "",
          "LOCK TABLES `users` WRITE;", "/*!40000 ALTER TABLE `users` DISABLE KEYS */;")
    h1 = bcrypt_hash(c.strong()).replace("$2y$", "$2y$")
    h2 = bcrypt_hash(c.strong())
    f.secret(f"INSERT INTO `users` VALUES (1,'admin@contoso.com','{h1}'),(2,'jane@contoso.com','{h2}');")
    f.add("/*!40000 ALTER TABLE `users` ENABLE KEYS */;", "UNLOCK TABLES;")
    f.write()
    # WordPress's wp_users: phpass portable hashes ($P$).
    itoa = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    phpass = "$P$B" + c.key(itoa, 8) + c.key(itoa, 22)
    f = c.file("/root/wordpress-backup.sql", "mysql-dump", "mysqldump output (wp_users)")
    f.add(*head, "LOCK TABLES `wp_users` WRITE;")
    f.secret(f"INSERT INTO `wp_users` VALUES (1,'admin','{phpass}','admin','admin@contoso.com','','2023-01-01 10:00:00','',0,'admin');")
    f.add("UNLOCK TABLES;")
    f.write()
    # mysql.user, as `mysqldump --all-databases` writes it (mysql_native_password: * + SHA1(SHA1)).
    native = "*" + hashlib.sha1(hashlib.sha1(c.strong().encode()).digest()).hexdigest().upper()
    f = c.file("/var/backups/mysql/all-databases.sql", "mysql-dump", "mysqldump --all-databases (mysql.user)")
    f.add(*head, "LOCK TABLES `user` WRITE;")
    f.secret(f"INSERT INTO `user` VALUES ('%','app','Y','N','N','','','',0,0,0,0,'mysql_native_password','{native}','N','2024-01-01 00:00:00',NULL,'N');")
    f.add("UNLOCK TABLES;")
    f.write()
    f = c.file("/var/backups/mysql/shop-schema.sql", "mysql-dump", "mysqldump --no-data")
    f.add(*head, "CREATE TABLE `users` (", "  `password` varchar(255) NOT NULL", ");")
    f.add("INSERT INTO `downloads` VALUES (1,'app.tar.gz','" + hashlib.sha256(b"app").hexdigest() + "');").write()

    # pg_dump plain format: COPY … FROM stdin with tab-separated rows (a Django auth_user table).
    salt = base64.b64encode(bytes(c.rng.randrange(256) for _ in range(12))).decode().rstrip("=")
    dk = base64.b64encode(hashlib.pbkdf2_hmac("sha256", c.strong().encode(), salt.encode(), 1000)).decode()
    f = c.file("/var/backups/postgres/app.sql", "postgres-dump", "pg_dump plain output (COPY)")
    f.add("--", "-- PostgreSQL database dump", "--", "", "SET statement_timeout = 0;", "",
          "COPY public.auth_user (id, password, last_login, is_superuser, username) FROM stdin;")
    f.secret(f"1\tpbkdf2_sha256$1000${salt}${dk}\t2024-02-01 10:00:00+00\tt\tadmin")
    f.add("\\.", "")
    f.write()
    # pg_dumpall --globals-only: roles with their SCRAM verifiers.
    def scram() -> str:
        s = base64.b64encode(bytes(c.rng.randrange(256) for _ in range(16))).decode()
        k1 = base64.b64encode(bytes(c.rng.randrange(256) for _ in range(32))).decode()
        k2 = base64.b64encode(bytes(c.rng.randrange(256) for _ in range(32))).decode()
        return f"SCRAM-SHA-256$4096:{s}${k1}:{k2}"
    f = c.file("/var/backups/postgres/globals.sql", "postgres-dump", "pg_dumpall --globals-only")
    f.add("--", "-- PostgreSQL database cluster dump", "--", "", "CREATE ROLE app;")
    f.secret(f"ALTER ROLE app WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD '{scram()}';")
    f.add("CREATE ROLE postgres;", "ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;")
    f.write()
    f = c.file("/var/backups/postgres/schema.sql", "postgres-dump", "pg_dump --schema-only")
    f.add("CREATE TABLE public.auth_user (", "    id integer NOT NULL,", "    password character varying(128) NOT NULL", ");").write()

    f = c.file("/root/setup-db.sql", "sql-script", "database setup script")
    f.secret(f"CREATE USER 'shop'@'%' IDENTIFIED BY '{c.strong()}';")
    f.add("GRANT ALL PRIVILEGES ON shop.* TO 'shop'@'%';")
    f.secret("CREATE USER 'report'@'10.0.%' IDENTIFIED BY 'report123';", weak=True)
    f.add("FLUSH PRIVILEGES;")
    f.write()
    f = c.file("/opt/app/db/init.sql", "sql-script", "PostgreSQL init script")
    f.secret("CREATE ROLE app LOGIN PASSWORD 'postgres';", weak=True)
    f.add("CREATE DATABASE app OWNER app;")
    f.write()
    f = c.file("/opt/app/db/init-template.sql", "sql-script", "init script template")
    f.decoy("CREATE USER 'shop'@'%' IDENTIFIED BY '${SHOP_DB_PASSWORD}';", "template")
    f.decoy("-- CREATE USER 'test'@'%' IDENTIFIED BY 'Ncqe28ajY75FnCtq';", "commented").write()


def wordpress_salts(c: Corpus) -> None:
    # As https://api.wordpress.org/secret-key/1.1/salt/ prints them and the installer writes them.
    def salt() -> str:
        while True:
            v = c.key(WP_SALT, 64)
            if "'" not in v and "\\" not in v:
                return v
    for path in ("/var/www/news/wp-config.php", "/var/www/store/wp-config.php"):
        f = c.file(path, "wordpress", "wp-config.php with installer keys and salts")
        f.add("<?php", "define( 'DB_NAME', 'wordpress' );", "define( 'DB_USER', 'wp' );")
        f.secret(f"define( 'DB_PASSWORD', '{c.strong()}' );")
        for k in ("AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT", "SECURE_AUTH_SALT",
                  "LOGGED_IN_SALT", "NONCE_SALT"):
            f.secret(f"define( '{k}', {' ' * (17 - len(k))}'{salt()}' );")
        f.add("$table_prefix = 'wp_';", "require_once ABSPATH . 'wp-settings.php';")
        f.write()


def urls_and_source(c: Corpus) -> None:
    f = c.file("/srv/catalog/config/default.json", "connection-url", "node-config default.json")
    f.add("{", '  "port": 3000,')
    f.secret(f'  "mongoUrl": "mongodb://catalog:{c.strong()}@mongo01.contoso.com:27017/catalog?authSource=admin",')
    f.secret(f'  "redisUrl": "redis://:{c.strong()}@redis01.contoso.com:6379/0"')
    f.add("}")
    f.write()
    f = c.file("/etc/apt/apt.conf.d/95proxy", "connection-url", "APT proxy configuration")
    f.secret('Acquire::http::Proxy "http://build:proxy2024@proxy.contoso.com:3128/";', weak=True)
    f.write()
    f = c.file("/srv/app/.git/config", "connection-url", "git remote with credentials in the URL")
    f.add("[core]", "\trepositoryformatversion = 0", '[remote "origin"]')
    f.secret(f"\turl = https://deploy:{c.strong()}@git.contoso.com/platform/app.git")
    f.add("\tfetch = +refs/heads/*:refs/remotes/origin/*")
    f.write()
    f = c.file("/opt/etl/etl.properties", "connection-url", "JDBC URL with password parameter")
    f.secret(f"source.url=jdbc:mysql://db01.contoso.com:3306/shop?user=etl&password={c.strong()}&useSSL=true")
    f.write()
    f = c.file("/srv/app2/.git/config", "connection-url", "git remote without credentials")
    f.add('[remote "origin"]').decoy("\turl = git@github.com:contoso/app2.git", "reference").decoy(
        "\tpushurl = https://github.com/contoso/app2.git", "reference").write()

    f = c.file("/opt/reports/send_report.py", "app-source", "Python script (smtplib)")
    f.add("import smtplib", "", "def send(msg):", "    s = smtplib.SMTP('smtp.contoso.com', 587)", "    s.starttls()")
    f.secret(f"    s.login('reports@contoso.com', '{c.strong()}')")
    f.add("    s.send_message(msg)", "    s.quit()")
    f.write()
    f = c.file("/var/www/html/includes/db.php", "app-source", "PHP include (mysqli)")
    f.add("<?php")
    f.secret("$conn = mysqli_connect('localhost', 'shop', 'shop123', 'shop');", weak=True)
    f.add("if (!$conn) { die('Connection failed'); }")
    f.write()
    f = c.file("/opt/inventory/src/main/java/com/contoso/inventory/Db.java", "app-source", "Java JDBC")
    f.add("package com.contoso.inventory;", "", "import java.sql.*;", "", "class Db {",
          "    static Connection open() throws SQLException {",
          '        String url = "jdbc:postgresql://db01:5432/inventory";')
    f.secret(f'        return DriverManager.getConnection(url, "inventory", "{c.strong()}");')
    f.add("    }", "}")
    f.write()
    f = c.file("/srv/notify/mailer.js", "app-source", "Node.js nodemailer transport")
    f.add("const nodemailer = require('nodemailer');", "module.exports = nodemailer.createTransport({",
          "  host: 'smtp.contoso.com',", "  port: 587,", "  auth: {", "    user: 'notify@contoso.com',")
    f.secret("    pass: 'hunter2'", weak=True)
    f.add("  }", "});")
    f.write()
    f = c.file("/opt/sync/sync.py", "app-source", "Python requests with basic auth")
    f.add("import requests", "")
    f.secret(f"r = requests.get('https://api.contoso.com/export', auth=('sync', '{c.strong()}'))")
    f.write()
    f = c.file("/opt/reports/send_report_env.py", "app-source", "Python script reading the environment")
    f.add("import os, smtplib", "s = smtplib.SMTP('smtp.contoso.com', 587)")
    f.decoy("s.login(os.environ['SMTP_USER'], os.environ['SMTP_PASSWORD'])", "reference")
    f.decoy("# s.login('reports@contoso.com', 'Ncqe28ajY75FnCtq')", "commented").write()
    f = c.file("/srv/notify/login-form.js", "app-source", "front-end form code")
    f.add("const form = document.querySelector('#login');")
    f.decoy("if (form.password.value.length < 12) { showError('password too short'); }", "script")
    f.decoy("const fields = { password: { type: 'password', required: true } };", "script").write()


WRITERS = [editors, database_guis, cli_tokens, dumps, wordpress_salts, urls_and_source]
