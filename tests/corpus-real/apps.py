"""Application and server configuration families of the real-software corpus: PHP applications
(phpBB, Joomla, Drupal, Laravel, Magento, Nextcloud), Docker Compose, Spring Boot, Tomcat,
Ansible, CIFS, Wi-Fi, Redis, LDAP, IRC, voice servers, mail clients and relays, Grafana,
RabbitMQ, Zabbix, Odoo, GitLab, rclone, restic/borg, cloud-init and OpenStack — each file in the
layout the software's own sample or documentation gives, filled in as an installer or an admin
would, with the look-alikes the same software ships (samples, commented defaults, references).
"""

from __future__ import annotations

import base64
import string

from corpuslib import Corpus, mkpasswd

HEX = "0123456789abcdef"
ALNUM = string.ascii_letters + string.digits


# --- PHP applications --------------------------------------------------------------------------

def php_apps(c: Corpus) -> None:
    # phpBB 3 config.php, as the installer writes it.
    def phpbb(path: str, pw: str, weak: bool) -> None:
        f = c.file(path, "phpbb", "phpBB config.php (installer)")
        f.add("<?php", "// phpBB 3.3.x auto-generated configuration file", "// Do not change anything in this file!",
              "$dbms = 'phpbb\\\\db\\\\driver\\\\mysqli';", "$dbhost = 'localhost';", "$dbport = '';",
              "$dbname = 'phpbb';", "$dbuser = 'phpbb';")
        f.secret(f"$dbpasswd = '{pw}';", weak=weak)
        f.add("$table_prefix = 'phpbb_';", "$phpbb_adm_relative_path = 'adm/';",
              "$acm_type = 'phpbb\\\\cache\\\\driver\\\\file';", "", "@define('PHPBB_INSTALLED', true);")
        f.write()
    phpbb("/var/www/forum/config.php", c.strong(), False)
    phpbb("/var/www/community/config.php", "dragon99", True)
    c.file("/var/www/forum-new/config.php", "phpbb", "phpBB config.php before installation").add(
        "<?php").decoy("$dbpasswd = '';", "empty").write()

    # Joomla configuration.php: class JConfig with public properties.
    def joomla(path: str, pw: str, weak: bool) -> None:
        f = c.file(path, "joomla", "Joomla configuration.php")
        f.add("<?php", "class JConfig {", "\tpublic $offline = false;", "\tpublic $sitename = 'Contoso';",
              "\tpublic $dbtype = 'mysqli';", "\tpublic $host = 'localhost';", "\tpublic $user = 'joomla';")
        f.secret(f"\tpublic $password = '{pw}';", weak=weak)
        f.add("\tpublic $db = 'joomla';", "\tpublic $dbprefix = 'jos_';")
        f.secret(f"\tpublic $secret = '{c.key(ALNUM, 16)}';")
        f.add("\tpublic $mailer = 'smtp';", "\tpublic $smtpuser = 'noreply@contoso.com';")
        f.secret(f"\tpublic $smtppass = '{c.strong()}';")
        f.add("}")
        f.write()
    joomla("/var/www/joomla/configuration.php", c.strong(), False)
    joomla("/var/www/intranet/configuration.php", "joomla123", True)
    c.file("/var/www/joomla/installation/configuration.php-dist", "joomla", "Joomla configuration.php-dist").add(
        "<?php", "class JConfig {").decoy("\tpublic $password = '';", "empty").decoy(
        "\tpublic $secret = 'FBVtggIk5lAzEU9H';", "template").add("}").write()

    # Drupal settings.php: the installer appends the database array and the hash salt;
    # default.settings.php documents them in comments.
    def drupal(path: str, pw: str, weak: bool) -> None:
        f = c.file(path, "drupal", "Drupal settings.php (installer)")
        f.add("<?php", "", "$databases['default']['default'] = array (", "  'database' => 'drupal',",
              "  'username' => 'drupal',")
        f.secret(f"  'password' => '{pw}',", weak=weak)
        f.add("  'prefix' => '',", "  'host' => 'localhost',", "  'port' => '3306',",
              "  'driver' => 'mysql',", ");")
        f.secret(f"$settings['hash_salt'] = '{c.key(ALNUM + '_-', 74)}';")
        f.write()
    drupal("/var/www/drupal/web/sites/default/settings.php", c.strong(), False)
    drupal("/var/www/shop/sites/default/settings.php", "Welcome2023!", True)
    c.file("/var/www/drupal/web/sites/default/default.settings.php", "drupal", "Drupal default.settings.php").add(
        "<?php", "/**", " * Database settings:", " *", " * @code", " * $databases['default']['default'] = [",
        " *   'database' => 'databasename',", " *   'username' => 'sqlusername',").decoy(
        " *   'password' => 'sqlpassword',", "commented").add(" * ];", " * @endcode", " */").decoy(
        "$settings['hash_salt'] = '';", "empty").write()

    # Laravel .env (from .env.example, filled in by the deployer).
    def laravel(path: str, pw: str, weak: bool) -> None:
        f = c.file(path, "laravel", "Laravel .env")
        f.add("APP_NAME=Contoso", "APP_ENV=production")
        f.secret("APP_KEY=base64:" + base64.b64encode(bytes(c.rng.randrange(256) for _ in range(32))).decode())
        f.add("APP_DEBUG=false", "", "DB_CONNECTION=mysql", "DB_HOST=127.0.0.1", "DB_PORT=3306",
              "DB_DATABASE=shop", "DB_USERNAME=shop")
        f.secret(f"DB_PASSWORD={pw}", weak=weak)
        f.add("", "MAIL_MAILER=smtp", "MAIL_HOST=smtp.mailgun.org", "MAIL_USERNAME=postmaster@mg.contoso.com")
        f.secret(f"MAIL_PASSWORD={c.strong(32)}")
        f.write()
    laravel("/var/www/shop/.env", c.strong(), False)
    laravel("/var/www/crm/.env", "secret", True)
    f = c.file("/var/www/shop/.env.example", "laravel", "Laravel .env.example")
    f.add("APP_NAME=Laravel").decoy("APP_KEY=", "empty").add("DB_USERNAME=root").decoy(
        "DB_PASSWORD=", "empty").decoy("MAIL_PASSWORD=null", "template").write()

    # Magento 2 app/etc/env.php.
    f = c.file("/var/www/magento/app/etc/env.php", "magento", "Magento 2 app/etc/env.php")
    f.add("<?php", "return [", "    'crypt' => [")
    # The crypt key's name is only `key`: no rule can tell it from any other key, so unlabelled.
    f.add(f"        'key' => '{c.key(HEX, 32)}'")
    f.add("    ],", "    'db' => [", "        'connection' => [", "            'default' => [",
          "                'host' => 'localhost',", "                'dbname' => 'magento',",
          "                'username' => 'magento',")
    f.secret(f"                'password' => '{c.strong()}',")
    f.add("                'active' => '1',", "            ]", "        ]", "    ],", "];")
    f.write()

    # Nextcloud config/config.php.
    def nextcloud(path: str, pw: str, weak: bool) -> None:
        f = c.file(path, "nextcloud", "Nextcloud config.php")
        f.add("<?php", "$CONFIG = array (", f"  'instanceid' => 'oc{c.key(HEX, 10)}',")
        f.secret(f"  'passwordsalt' => '{c.key(ALNUM + '/+', 30)}',")
        f.secret(f"  'secret' => '{c.key(ALNUM + '/+', 48)}',")
        f.add("  'dbtype' => 'mysql',", "  'dbname' => 'nextcloud',", "  'dbuser' => 'nextcloud',")
        f.secret(f"  'dbpassword' => '{pw}',", weak=weak)
        f.add("  'installed' => true,", ");")
        f.write()
    nextcloud("/var/www/nextcloud/config/config.php", c.strong(), False)
    nextcloud("/srv/cloud/config/config.php", "nextcloud", True)


# --- containers and Java ---------------------------------------------------------------------

def container_java(c: Corpus) -> None:
    f = c.file("/srv/wiki/docker-compose.yml", "docker-compose", "Docker Compose file (environment map)")
    f.add("services:", "  db:", "    image: mariadb:11", "    environment:", "      MYSQL_DATABASE: wiki",
          "      MYSQL_USER: wiki")
    f.secret(f"      MYSQL_PASSWORD: {c.strong()}")
    f.secret("      MYSQL_ROOT_PASSWORD: example", weak=True)
    f.write()
    f = c.file("/opt/stack/docker-compose.yaml", "docker-compose", "Docker Compose file (environment list)")
    f.add("services:", "  postgres:", "    image: postgres:16", "    environment:")
    f.secret(f"      - POSTGRES_PASSWORD={c.strong()}")
    f.add("  app:", "    image: contoso/app:latest", "    environment:")
    f.secret(f"      - SMTP_PASS={c.strong()}")
    f.write()
    f = c.file("/opt/stack2/compose.yml", "docker-compose", "Docker Compose with references and secrets")
    f.add("services:", "  db:", "    image: postgres:16", "    environment:")
    f.decoy("      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}", "reference")
    f.decoy("      POSTGRES_PASSWORD_FILE: /run/secrets/db_password", "reference")
    f.add("secrets:", "  db_password:", "    file: ./db_password.txt").write()

    f = c.file("/opt/billing/config/application.yml", "spring-boot", "Spring Boot application.yml")
    f.add("spring:", "  datasource:", "    url: jdbc:postgresql://db01:5432/billing", "    username: billing")
    f.secret(f"    password: {c.strong()}")
    f.add("  mail:", "    host: smtp.contoso.com", "    username: billing@contoso.com")
    f.secret("    password: sunshine", weak=True)
    f.write()
    f = c.file("/opt/orders/application.properties", "spring-boot", "Spring Boot application.properties")
    f.add("server.port=8080", "spring.datasource.url=jdbc:mysql://db01:3306/orders?useSSL=true",
          "spring.datasource.username=orders")
    f.secret(f"spring.datasource.password={c.strong()}")
    f.write()
    c.file("/opt/orders/application-dev.yml", "spring-boot", "Spring Boot profile with placeholders").add(
        "spring:", "  datasource:").decoy("    password: ${DB_PASSWORD:}", "reference").write()

    f = c.file("/etc/tomcat9/tomcat-users.xml", "tomcat", "Tomcat tomcat-users.xml")
    f.add('<?xml version="1.0" encoding="UTF-8"?>', '<tomcat-users xmlns="http://tomcat.apache.org/xml" version="1.0">',
          '  <role rolename="manager-gui"/>')
    f.secret('  <user username="admin" password="tomcat" roles="manager-gui,admin-gui"/>', weak=True)
    f.secret(f'  <user username="deployer" password="{c.strong()}" roles="manager-script"/>')
    f.add("</tomcat-users>")
    f.write()
    f = c.file("/opt/tomcat/conf/context.xml", "tomcat", "Tomcat context.xml JNDI DataSource")
    f.add("<Context>", '  <Resource name="jdbc/shop" auth="Container" type="javax.sql.DataSource"',
          '            username="shop"')
    f.secret(f'            password="{c.strong()}"')
    f.add('            driverClassName="org.postgresql.Driver" url="jdbc:postgresql://db01:5432/shop"/>', "</Context>")
    f.write()
    # Debian's stock tomcat-users.xml: the users are commented out.
    f = c.file("/etc/tomcat10/tomcat-users.xml", "tomcat", "Tomcat tomcat-users.xml as packaged")
    f.add('<tomcat-users xmlns="http://tomcat.apache.org/xml" version="1.0">', "<!--")
    f.decoy('  <user username="admin" password="<must-be-changed>" roles="manager-gui"/>', "template")
    f.decoy('  <user username="robot" password="<must-be-changed>" roles="manager-script"/>', "template")
    f.add("-->", "</tomcat-users>").write()


# --- operations ------------------------------------------------------------------------------

def ops(c: Corpus) -> None:
    f = c.file("/etc/ansible/hosts", "ansible", "Ansible INI inventory")
    f.add("[web]")
    f.secret(f"web01 ansible_host=10.0.1.5 ansible_user=deploy ansible_password={c.strong()}")
    f.secret("web02 ansible_host=10.0.1.6 ansible_user=deploy ansible_password=deploy2024", weak=True)
    f.add("", "[db]", "db01 ansible_host=10.0.2.5")
    f.write()
    f = c.file("/srv/infra/group_vars/all.yml", "ansible", "Ansible group_vars")
    f.add("---", "ansible_user: admin")
    f.secret("ansible_become_password: letmein", weak=True)
    f.write()
    f = c.file("/srv/infra/group_vars/db.yml", "ansible", "Ansible group_vars with vault references")
    f.decoy('ansible_become_password: "{{ vault_db_become_password }}"', "reference")
    f.add("db_port: 5432").write()
    f = c.file("/srv/infra/group_vars/vault.yml", "ansible", "ansible-vault encrypted file")
    f.add("$ANSIBLE_VAULT;1.1;AES256")
    for _ in range(6):
        f.add(c.key(HEX, 80))
    f.write()

    c.file("/root/.smbcredentials", "cifs", "mount.cifs credentials file").add("username=backup").secret(
        f"password={c.strong()}").add("domain=CONTOSO").write()
    c.file("/etc/samba/creds-scanner", "cifs", "mount.cifs credentials file").add("username=scanner").secret(
        "password=scanner1", weak=True).write()
    f = c.file("/etc/fstab", "cifs", "fstab with CIFS options")
    f.add("UUID=0a3c5e1f-2b4d-4c6e-8f0a-1b2c3d4e5f60 / ext4 errors=remount-ro 0 1")
    f.secret(f"//fs01.contoso.local/backup /mnt/backup cifs username=backup,password={c.strong()},vers=3.0 0 0")
    f.decoy("//fs01.contoso.local/media /mnt/media cifs credentials=/root/.smbcredentials,vers=3.0 0 0", "reference")
    f.write()

    f = c.file("/etc/wpa_supplicant/wpa_supplicant.conf", "wifi", "wpa_supplicant.conf")
    f.add("ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev", "update_config=1", "network={",
          '\tssid="contoso-guest"')
    f.secret('\tpsk="Summer2024!"', weak=True)
    f.add("}", "network={", '\tssid="contoso-corp"', "\tkey_mgmt=WPA-EAP", '\tidentity="kiosk01"')
    f.secret(f'\tpassword="{c.strong()}"')
    f.add("}")
    f.write()
    f = c.file("/etc/NetworkManager/system-connections/contoso-office.nmconnection", "wifi",
               "NetworkManager keyfile")
    f.add("[connection]", "id=contoso-office", "type=wifi", "", "[wifi]", "ssid=contoso-office", "",
          "[wifi-security]", "key-mgmt=wpa-psk")
    f.secret(f"psk={c.strong(20)}")
    f.write()
    f = c.file("/etc/hostapd/hostapd.conf", "wifi", "hostapd.conf")
    f.add("interface=wlan0", "ssid=kiosk", "wpa=2")
    f.secret("wpa_passphrase=raspberry", weak=True)
    f.write()
    f = c.file("/etc/wpa_supplicant/wpa_supplicant-wlan1.conf", "wifi", "wpa_supplicant.conf, open network")
    f.add("network={", '\tssid="cafe"', "\tkey_mgmt=NONE", "}")
    f.decoy('#psk="very secret passphrase"', "commented").write()


# --- servers ---------------------------------------------------------------------------------

def servers(c: Corpus) -> None:
    f = c.file("/etc/redis/redis.conf", "redis", "redis.conf")
    f.add("bind 127.0.0.1 -::1", "port 6379")
    f.secret(f"requirepass {c.strong(32)}")
    f.write()
    f = c.file("/etc/redis/redis-cache.conf", "redis", "redis.conf")
    f.add("port 6380")
    f.secret("requirepass foobared", weak=True)
    f.secret("masterauth foobared", weak=True)
    f.write()
    f = c.file("/etc/redis/sentinel.conf", "redis", "Redis Sentinel sentinel.conf")
    f.add("port 26379", "sentinel monitor mymaster 10.0.3.5 6379 2")
    f.secret("sentinel auth-pass mymaster redis123", weak=True)
    f.write()
    f = c.file("/etc/redis/redis-stock.conf", "redis", "redis.conf as packaged")
    f.add("# IMPORTANT NOTE: starting with Redis 6 \"requirepass\" is just a compatibility")
    f.decoy("# requirepass foobared", "commented")
    f.decoy("# masterauth <master-password>", "commented").write()

    f = c.file("/etc/nslcd.conf", "ldap", "nslcd.conf")
    f.add("uid nslcd", "gid nslcd", "uri ldap://ldap.contoso.com/", "base dc=contoso,dc=com",
          "binddn cn=nslcd,ou=services,dc=contoso,dc=com")
    f.secret(f"bindpw {c.strong()}")
    f.write()
    ssha = "{SSHA}" + base64.b64encode(bytes(c.rng.randrange(256) for _ in range(24))).decode()
    f = c.file("/etc/ldap/slapd.conf", "ldap", "slapd.conf (rootpw as slappasswd writes it)")
    f.add("database mdb", 'suffix "dc=contoso,dc=com"', 'rootdn "cn=admin,dc=contoso,dc=com"')
    f.secret(f"rootpw {ssha}")
    f.write()
    f = c.file("/etc/sssd/sssd.conf", "ldap", "sssd.conf")
    f.add("[domain/contoso]", "id_provider = ldap", "ldap_default_bind_dn = cn=sssd,dc=contoso,dc=com")
    f.secret("ldap_default_authtok = ldapbind", weak=True)
    f.write()
    c.file("/etc/ldap/ldap.conf", "ldap", "ldap.conf as packaged").add(
        "#BASE\tdc=example,dc=com", "#URI\tldap://ldap.example.com").decoy("#bindpw secret", "commented").write()

    f = c.file("/etc/unrealircd/unrealircd.conf", "irc", "UnrealIRCd unrealircd.conf")
    f.add("oper netadmin {", "\tclass opers;", "\tmask *@10.0.*;")
    f.secret(f'\tpassword "{c.strong()}";')
    f.add("\toperclass netadmin-with-override;", "};", "link hub.contoso.net {", "\toutgoing {",
          "\t\thostname hub.contoso.net;", "\t};")
    f.secret('\tpassword "linkpass";', weak=True)
    f.add("};")
    f.write()
    f = c.file("/etc/inspircd/opers.conf", "irc", "InspIRCd opers.conf")
    f.secret(f'<oper name="admin" hash="plaintext" password="{c.strong()}" host="*@10.0.0.*" type="NetAdmin">')
    f.write()
    f = c.file("/home/znc/.znc/configs/znc.conf", "irc", "ZNC znc.conf (user password hash)")
    f.add("Version = 1.8.2", "<User admin>", "\tAdmin = true", "\t<Pass password>", "\t\tMethod = sha256")
    f.secret(f"\t\tHash = {c.key(HEX, 64)}")
    f.add(f"\t\tSalt = {c.key(ALNUM, 20)}", "\t</Pass>", "</User>")
    f.write()
    c.file("/usr/share/doc/unrealircd/unrealircd.conf.txt", "irc", "documentation").add(
        "oper bobsmith {", "\tclass opers;").decoy('\tpassword "<password>";', "template").add("};").write()

    f = c.file("/etc/mumble-server.ini", "voice", "Mumble murmur.ini")
    f.add("database=/var/lib/mumble-server/mumble-server.sqlite", "welcometext=\"Welcome\"", "port=64738")
    f.secret("serverpassword=mumble", weak=True)
    f.add("users=100")
    f.write()
    f = c.file("/etc/murmur/murmur.ini", "voice", "Mumble murmur.ini with a database")
    f.add("database=murmur", "dbDriver=QMYSQL", "dbUsername=murmur")
    f.secret(f"dbPassword={c.strong()}")
    f.write()
    f = c.file("/opt/teamspeak3-server/logs/ts3server_2024-03-01__10_00_00.123456_1.log", "voice",
               "TeamSpeak 3 first-start log")
    f.add("2024-03-01 10:00:00.112233|INFO    |ServerLibPriv |   |TeamSpeak 3 Server 3.13.7",
          "------------------------------------------------------------------",
          "                      I M P O R T A N T", "------------------------------------------------------------------",
          "               Server Query Admin Account created")
    f.secret(f'         loginname= "serveradmin", password= "{c.key(ALNUM + "+", 8)}"')
    f.write()
    f = c.file("/opt/teamspeak3-server/ts3db_mariadb.ini", "voice", "TeamSpeak ts3db_mariadb.ini")
    f.add("[config]", "host=127.0.0.1", "port=3306", "username=teamspeak")
    f.secret(f"password={c.strong()}")
    f.add("database=teamspeak")
    f.write()
    f = c.file("/etc/mumble-server-stock.ini", "voice", "murmur.ini as packaged")
    f.add("; Password to join server.")
    f.decoy("serverpassword=", "empty")
    f.decoy(";dbPassword=", "commented").write()


# --- mail ------------------------------------------------------------------------------------

def mail(c: Corpus) -> None:
    f = c.file("/home/ops/.msmtprc", "mail-client", "msmtp .msmtprc")
    f.add("defaults", "auth on", "tls on", "account alerts", "host smtp.contoso.com", "port 587",
          "from alerts@contoso.com", "user alerts@contoso.com")
    f.secret(f"password {c.strong()}")
    f.add("account default : alerts")
    f.write()
    f = c.file("/home/kiosk/.msmtprc", "mail-client", "msmtp .msmtprc")
    f.add("account default", "host mail.contoso.com", "user kiosk")
    f.secret("password kiosk2024", weak=True)
    f.write()
    f = c.file("/etc/msmtprc", "mail-client", "msmtp system config")
    f.add("account default", "host smtp.gmail.com", "user contoso.alerts@gmail.com")
    f.secret("password football", weak=True)
    f.write()
    f = c.file("/home/jane/.fetchmailrc", "mail-client", "fetchmail .fetchmailrc")
    f.secret(f'poll imap.contoso.com protocol imap user "jane" password "{c.strong()}" ssl')
    f.write()
    f = c.file("/home/jane/.muttrc", "mail-client", "mutt .muttrc")
    f.add('set imap_user = "jane@contoso.com"')
    f.secret('set imap_pass = "iloveyou"', weak=True)
    f.add('set smtp_url = "smtps://jane@contoso.com@smtp.contoso.com:465/"')
    f.write()
    f = c.file("/home/jane/.offlineimaprc", "mail-client", "offlineimap .offlineimaprc")
    f.add("[Repository remote]", "type = IMAP", "remotehost = imap.contoso.com", "remoteuser = jane")
    f.secret(f"remotepass = {c.strong()}")
    f.write()
    f = c.file("/home/ops/.msmtprc-keyring", "mail-client", "msmtp with passwordeval")
    f.add("account default", "host smtp.contoso.com")
    f.decoy('passwordeval "pass show mail/alerts"', "reference").write()

    f = c.file("/etc/postfix/sasl_passwd", "postfix", "Postfix smtp_sasl_password_maps source")
    f.secret(f"[smtp.sendgrid.net]:587 apikey:SG.{c.key(ALNUM + '_-', 22)}.{c.key(ALNUM + '_-', 43)}")
    f.write()
    f = c.file("/etc/postfix/sasl/sasl_passwd", "postfix", "Postfix smtp_sasl_password_maps source")
    f.secret("[smtp.gmail.com]:587 contoso.alerts@gmail.com:password1", weak=True)
    f.write()
    f = c.file("/etc/postfix/main.cf", "postfix", "Postfix main.cf")
    f.add("relayhost = [smtp.gmail.com]:587", "smtp_sasl_auth_enable = yes")
    f.decoy("smtp_sasl_password_maps = hash:/etc/postfix/sasl_passwd", "reference")
    f.add("smtp_sasl_security_options = noanonymous").write()


# --- applications ------------------------------------------------------------------------------

def app_servers(c: Corpus) -> None:
    f = c.file("/etc/grafana/grafana.ini", "grafana", "grafana.ini")
    f.add("[security]", "admin_user = admin")
    f.secret("admin_password = admin", weak=True)
    f.secret(f"secret_key = {c.key(ALNUM, 20)}")
    f.add("[database]", "type = postgres", "user = grafana")
    f.secret(f"password = {c.strong()}")
    f.write()
    f = c.file("/etc/grafana/grafana-stock.ini", "grafana", "grafana.ini as packaged")
    f.add("[security]")
    f.decoy(";admin_password = admin", "commented")
    f.decoy(";secret_key = SW2YcwTIb9zpOOhoPsMm", "commented").write()

    f = c.file("/etc/rabbitmq/rabbitmq.conf", "rabbitmq", "rabbitmq.conf")
    f.add("listeners.tcp.default = 5672", "default_user = admin")
    f.secret("default_pass = guest", weak=True)
    f.write()
    f = c.file("/etc/rabbitmq/conf.d/20-admin.conf", "rabbitmq", "rabbitmq.conf")
    f.add("default_user = monitoring")
    f.secret("default_pass = rabbit", weak=True)
    f.write()
    f = c.file("/etc/rabbitmq/conf.d/10-defaults.conf", "rabbitmq", "rabbitmq.conf")
    f.add("default_user = orders")
    f.secret(f"default_pass = {c.strong()}")
    f.write()

    f = c.file("/etc/zabbix/zabbix_server.conf", "zabbix", "zabbix_server.conf")
    f.add("LogFile=/var/log/zabbix/zabbix_server.log", "DBName=zabbix", "DBUser=zabbix")
    f.secret(f"DBPassword={c.strong()}")
    f.write()
    f = c.file("/etc/zabbix/zabbix_proxy.conf", "zabbix", "zabbix_proxy.conf")
    f.add("DBName=zabbix_proxy")
    f.secret("DBPassword=zabbix", weak=True)
    f.write()
    f = c.file("/etc/zabbix/zabbix_agentd.conf", "zabbix", "zabbix_agentd.conf as packaged")
    f.add("### Option: DBPassword", "#\tDatabase password.")
    f.decoy("# DBPassword=", "commented").write()

    f = c.file("/etc/odoo/odoo.conf", "odoo", "odoo.conf")
    f.add("[options]")
    f.secret(f"admin_passwd = {c.strong()}")
    f.add("db_host = localhost", "db_port = 5432", "db_user = odoo")
    f.secret("db_password = odoo", weak=True)
    f.write()

    f = c.file("/etc/gitlab/gitlab.rb", "gitlab", "GitLab Omnibus gitlab.rb")
    f.add("external_url 'https://git.contoso.com'", "gitlab_rails['smtp_enable'] = true",
          "gitlab_rails['smtp_user_name'] = \"gitlab@contoso.com\"")
    f.secret(f"gitlab_rails['smtp_password'] = \"{c.strong()}\"")
    f.secret(f"gitlab_rails['db_password'] = '{c.strong()}'")
    f.decoy("# gitlab_rails['ldap_servers'] = { 'main' => { 'password' => '_the_password_of_the_bind_user' } }",
            "commented")
    f.write()

    f = c.file("/root/.config/rclone/rclone.conf", "rclone", "rclone.conf (obscured password)")
    f.add("[backup-sftp]", "type = sftp", "host = backup.contoso.com", "user = rclone")
    f.secret(f"pass = {base64.urlsafe_b64encode(bytes(c.rng.randrange(256) for _ in range(24))).decode().rstrip('=')}")
    f.write()
    f = c.file("/etc/restic/b2.env", "restic-borg", "restic environment file")
    f.add("RESTIC_REPOSITORY=b2:contoso-backup:/srv")
    f.secret(f"RESTIC_PASSWORD={c.strong(24)}")
    f.write()
    f = c.file("/root/.borg-env", "restic-borg", "borg environment")
    f.add("export BORG_REPO=ssh://borg@backup.contoso.com/./repo")
    f.secret("export BORG_PASSPHRASE='backup2024'", weak=True)
    f.write()
    f = c.file("/etc/borgmatic/config.yaml", "restic-borg", "borgmatic config with a command")
    f.add("repositories:", "  - path: ssh://borg@backup.contoso.com/./repo")
    f.decoy('encryption_passcommand: "cat /root/.borg-passphrase"', "reference").write()

    f = c.file("/var/lib/cloud/instance/user-data.txt", "cloud-init", "cloud-init user-data")
    f.add("#cloud-config", "users:", "  - name: ops", "    lock_passwd: false")
    f.secret("password: ubuntu", weak=True)
    f.add("chpasswd:", "  expire: false", "ssh_pwauth: true")
    f.write()
    f = c.file("/var/lib/cloud/instances/i-0abc/user-data.txt", "cloud-init", "cloud-init user-data")
    f.add("#cloud-config", "runcmd:")
    f.secret(f"  - [ sh, -c, 'echo DB_PASSWORD={c.strong()} >> /etc/app/env' ]")
    f.write()

    f = c.file("/home/ops/.config/openstack/clouds.yaml", "openstack", "OpenStack clouds.yaml")
    f.add("clouds:", "  contoso:", "    auth:", "      auth_url: https://keystone.contoso.com:5000/v3",
          "      username: ops", "      project_name: infra")
    f.secret(f"      password: {c.strong()}")
    f.add("    region_name: RegionOne")
    f.write()
    f = c.file("/home/ops/infra-openrc.sh", "openstack", "OpenStack RC file with the password set")
    f.add("export OS_AUTH_URL=https://keystone.contoso.com:5000/v3", "export OS_USERNAME=admin")
    f.secret("export OS_PASSWORD=openstack", weak=True)
    f.write()
    f = c.file("/home/ops/demo-openrc.sh", "openstack", "OpenStack RC file as Horizon generates it")
    f.add("export OS_USERNAME=demo", 'echo "Please enter your OpenStack Password for project $OS_PROJECT_NAME as user $OS_USERNAME: "',
          "read -sr OS_PASSWORD_INPUT")
    f.decoy("export OS_PASSWORD=$OS_PASSWORD_INPUT", "reference").write()


WRITERS = [php_apps, container_java, ops, servers, mail, app_servers]
