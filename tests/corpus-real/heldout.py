"""The held-out slice of the real-software corpus: credential files of software families and
layouts no rule was written against (RADIUS, PPP, IPsec, Samba, rsync, WebDAV, SMTP relays,
download tools, backup directors, connection poolers, UPS daemons, VRRP, SNMPv3, monitoring
APIs, VPN clients, libvirt, lftp, k3s), in their documented formats, with look-alikes from the
same packages (stock commented examples, `@@MARKER@@` templates, references to other files).

It was written and measured before any rule was changed for it (docs/benchmarks.md): its figures
say how the rules generalise to files they were not tuned on. Every file it writes carries
`"heldout": true` in truth.json.
"""

from __future__ import annotations

import hashlib
import string

from corpuslib import Corpus

HEX = "0123456789abcdef"


def heldout_files(c: Corpus) -> None:
    start = len(c.files)
    servers(c)
    clients(c)
    lookalikes(c)
    for f in c.files[start:]:
        f["heldout"] = True


def servers(c: Corpus) -> None:
    # FreeRADIUS clients.conf: the stock localhost client keeps its documented `testing123`.
    c.file("/etc/freeradius/3.0/clients.conf", "freeradius", "FreeRADIUS clients.conf").add(
        "# -*- text -*-", "##", "## clients.conf -- client configuration directives", "##", "",
        "client localhost {", "\tipaddr = 127.0.0.1", "\tproto = *").secret(
        "\tsecret = testing123", weak=True).add(
        "\trequire_message_authenticator = no", "\tnas_type\t = other", "}", "",
        "#client example.org {", "#\tipaddr\t\t= radius.example.org").decoy(
        "#\tsecret\t\t= testing123", "commented").add("#}", "", "client nas01 {",
                                                      "\tipaddr = 10.0.4.2").secret(
        f"\tsecret = {c.strong(20)}").add("\tshortname = nas01", "}").write()
    c.file("/etc/freeradius/3.0/mods-config/files/authorize", "freeradius", "FreeRADIUS users file").add(
        "#", "# \tThe 'users' file", "#").decoy(
        '#bob\tCleartext-Password := "hello"', "commented").add(
        '#\tReply-Message := "Hello, %{User-Name}"', "").secret(
        f'steve\tCleartext-Password := "{c.strong(14)}"').add(
        '\tService-Type = Framed-User,', '\tFramed-Protocol = PPP', "").secret(
        'guest\tCleartext-Password := "guest"', weak=True).add(
        '\tReply-Message := "guest access"').write()
    # pppd's CHAP secrets (pppd(8): client, server, secret, addresses).
    c.file("/etc/ppp/chap-secrets", "ppp", "pppd chap-secrets").add(
        "# Secrets for authentication using CHAP", "# client\tserver\tsecret\t\t\tIP addresses").secret(
        f'"isp-4711"\t*\t"{c.strong(16)}"\t*').secret("vpnuser\tpptpd\tletmein\t*", weak=True).write()
    # strongSwan ipsec.secrets(5).
    c.file("/etc/ipsec.secrets", "strongswan", "strongSwan ipsec.secrets").add(
        "# This file holds shared secrets or RSA private keys for authentication.", "").decoy(
        ": RSA /etc/ipsec.d/private/gw01.key", "reference").secret(
        f'10.1.0.1 10.2.0.1 : PSK "{c.strong(32)}"').secret('carol : EAP "password"', weak=True).add(
        "include /var/lib/strongswan/ipsec.secrets.inc").write()
    # Samba's smbpasswd(5): LANMAN and NT hashes (hashes are never weak).
    c.file("/etc/samba/smbpasswd", "samba", "Samba smbpasswd").secret(
        f"alice:1000:{'X' * 32}:{c.key(HEX.upper(), 32)}:[U          ]:LCT-65A1B2C3:").secret(
        f"bob:1001:{c.key(HEX.upper(), 32)}:{c.key(HEX.upper(), 32)}:[U          ]:LCT-65A1B2D4:").write()
    # rsyncd.conf(5) `secrets file`: user:password lines.
    c.file("/etc/rsyncd.secrets", "rsyncd", "rsync daemon secrets file").secret(
        f"backup:{c.strong(16)}").secret("mirror:mirror", weak=True).write()
    # Bacula: the director's password in the file daemon's config.
    c.file("/etc/bacula/bacula-fd.conf", "bacula", "Bacula file daemon config").add(
        "#", "# Default  Bacula File Daemon Configuration file", "#", "", "Director {",
        "  Name = backup01-dir").secret(f'  Password = "{c.strong(32)}"').add("}", "", "FileDaemon {",
                                                                            "  Name = web01-fd",
                                                                            "  FDport = 9102", "}").write()
    # PgBouncer auth_file: "user" "password or SCRAM verifier".
    salt = c.key(string.ascii_letters + string.digits + "+/", 22) + "=="
    c.file("/etc/pgbouncer/userlist.txt", "pgbouncer", "PgBouncer userlist.txt").secret(
        f'"app" "SCRAM-SHA-256$4096:{salt}${c.key(string.ascii_letters + string.digits + "+/", 43)}='
        f':{c.key(string.ascii_letters + string.digits + "+/", 43)}="').secret(
        f'"stats" "{c.strong(16)}"').write()
    # NUT upsd.users(5).
    c.file("/etc/nut/upsd.users", "nut", "NUT upsd.users").add(
        "# Network UPS Tools: Example upsd.users", "", "[monuser]").secret(
        "\tpassword = secret", weak=True).add("\tupsmon primary", "", "[admin]").secret(
        f"\tpassword = {c.strong(16)}").add("\tactions = SET", "\tinstcmds = ALL").write()
    # keepalived VRRP authentication (auth_pass: 8 characters are used).
    c.file("/etc/keepalived/keepalived.conf", "keepalived", "keepalived.conf").add(
        "vrrp_instance VI_1 {", "    state MASTER", "    interface eth0", "    virtual_router_id 51",
        "    priority 150", "    authentication {", "        auth_type PASS").secret(
        f"        auth_pass {c.strong(8)}").add("    }", "    virtual_ipaddress {", "        10.0.0.100",
                                                 "    }", "}").write()
    # net-snmp snmpd.conf: an SNMPv3 user with its authentication and privacy passphrases.
    c.file("/etc/snmp/snmpd.conf", "net-snmp", "snmpd.conf").add(
        "sysLocation    Rack 4, DC Frankfurt", "sysContact     ops@contoso.com", "").secret(
        f'createUser monitor SHA "{c.strong(16)}" AES "{c.strong(16)}"').add("rouser monitor priv").write()
    # Exim's passwd.client (Debian): target:login:password.
    c.file("/etc/exim4/passwd.client", "exim", "Exim passwd.client").add(
        "# password file used when the local exim is authenticating to a remote", "# host as a client.",
        "#").decoy("### target.mail.server.example:login:password", "documentation").secret(
        f"*.smtp.contoso.com:relay@contoso.com:{c.strong(16)}").write()
    # Icinga 2 API users.
    c.file("/etc/icinga2/conf.d/api-users.conf", "icinga2", "Icinga 2 api-users.conf").add(
        "/**", " * The ApiUser objects are used for authentication against the API.", " */",
        'object ApiUser "root" {').secret(f'  password = "{c.key(HEX, 16)}"').add(
        '  permissions = [ "*" ]', "}").write()
    # Apache htdigest: user:realm:MD5(user:realm:password).
    digest = hashlib.md5(b"admin:Restricted:" + c.strong().encode()).hexdigest()
    c.file("/etc/apache2/.htdigest", "htdigest", "Apache htdigest file").secret(
        f"admin:Restricted:{digest}").write()
    # k3s server config: the cluster join token.
    c.file("/etc/rancher/k3s/config.yaml", "k3s", "k3s config.yaml").add(
        "write-kubeconfig-mode: \"0644\"", "tls-san:", "  - k3s.contoso.com").secret(
        f"token: K10{c.key(HEX, 64)}::server:{c.key(HEX, 32)}").write()


def clients(c: Corpus) -> None:
    # davfs2 secrets(5): URL or mount point, user, password.
    c.file("/etc/davfs2/secrets", "davfs2", "davfs2 secrets").add(
        "# davfs2 secrets file").decoy("#/path/to/mountpoint    webdav-username    password",
                                      "documentation").secret(
        f"https://cloud.contoso.com/remote.php/dav/files/alice alice {c.strong(18)}").write()
    # sSMTP.
    c.file("/etc/ssmtp/ssmtp.conf", "ssmtp", "ssmtp.conf").add(
        "root=postmaster", "mailhub=smtp.contoso.com:587", "AuthUser=alerts@contoso.com").secret(
        f"AuthPass={c.strong(16)}").add("UseSTARTTLS=YES").write()
    # wget and curl startup files.
    c.file("/home/dev/.wgetrc", "wget", "wget .wgetrc").add("http_user = dev").secret(
        f"http_password = {c.strong(14)}").write()
    c.file("/home/dev/.curlrc", "curl", "curl .curlrc").add("# curl defaults", "--silent").secret(
        'user = "deploy:secret123"', weak=True).write()
    # OpenVPN auth-user-pass file: the user name, then the password.
    c.file("/etc/openvpn/client/office.auth", "openvpn", "OpenVPN auth-user-pass file").add(
        "svc-vpn").secret(c.strong(16)).write()
    # libvirt auth.conf.
    c.file("/etc/libvirt/auth.conf", "libvirt", "libvirt auth.conf").add(
        "[credentials-prod]", "authname=admin").secret(f"password={c.strong(16)}").add(
        "", "[auth-libvirt-kvm01.contoso.com]", "credentials=prod").write()
    # lftp bookmarks with the password saved in the URL.
    c.file("/home/dev/.local/share/lftp/bookmarks", "lftp", "lftp bookmarks").secret(
        f"prod\tsftp://deploy:{c.strong(14)}@files.contoso.com/var/www").add(
        "mirror\tftp://ftp.debian.org/debian").write()


def lookalikes(c: Corpus) -> None:
    # Debian's stock pap-secrets: "*" means no password (PAM).
    c.file("/etc/ppp/pap-secrets", "ppp", "stock pap-secrets").add(
        "# Every regular user can use PPP and has to use passwords from /etc/passwd").decoy(
        '*\thostname\t""\t*', "empty").add("# OUTBOUND connections", "").decoy(
        'guest\thostname\t"*"\t-', "locked").write()
    c.file("/var/lib/strongswan/ipsec.secrets.inc", "strongswan", "strongSwan include").add(
        "# This file holds the RSA private keys for authentication.").decoy(
        ": RSA /etc/ipsec.d/private/gw02.key", "reference").write()
    c.file("/etc/rsyncd.conf", "rsyncd", "rsyncd.conf").add("[backup]", "\tpath = /srv/backup",
                                                            "\tauth users = backup").decoy(
        "\tsecrets file = /etc/rsyncd.secrets", "reference").write()
    c.file("/etc/nut/upsmon.conf", "nut", "stock upsmon.conf").add(
        "# MONITOR <system> <powervalue> <username> <password> (\"primary\"|\"secondary\")").decoy(
        "# MONITOR myups@localhost 1 upsmon pass primary", "commented").write()
    c.file("/etc/davfs2/davfs2.conf", "davfs2", "stock davfs2.conf").add(
        "# davfs2 configuration file").decoy("# secrets         ~/.davfs2/secrets", "commented").write()
    c.file("/etc/freeradius/3.0/mods-available/sql", "freeradius", "stock sql module").add(
        "sql {", '\tdialect = "sqlite"', '#\tserver = "localhost"', '#\tlogin = "radius"').decoy(
        '#\tpassword = "radpass"', "commented").add("}").write()
    c.file("/etc/bacula/bconsole.conf", "bacula", "Bacula template before configuration").add(
        "Director {", "  Name = localhost-dir", "  DIRport = 9101", "  address = localhost").decoy(
        '  Password = "@@DIR_PASSWORD@@"', "template").add("}").write()
    c.file("/etc/icinga2/features-available/api.conf", "icinga2", "stock api.conf").add(
        'object ApiListener "api" {').decoy("  ticket_salt = TicketSalt", "reference").add("}").write()
    c.file("/usr/share/doc/snmpd/README.snmpv3", "net-snmp", "documentation").add(
        "To create an SNMPv3 user, add to snmpd.conf:", "").decoy(
        '  createUser myuser SHA "my_password" AES', "documentation").write()
    c.file("/etc/wgetrc", "wget", "stock wgetrc").add("# You can set the default proxies for Wget").decoy(
        "#http_password = ", "empty").add("#passive_ftp = on").write()
    c.file("/etc/k3s-agent.env", "k3s", "k3s agent environment reading a file").add(
        "K3S_URL=https://k3s.contoso.com:6443").decoy("K3S_TOKEN_FILE=/etc/rancher/k3s/token",
                                                      "reference").write()
    c.file("/etc/openvpn/client/office.conf", "openvpn", "OpenVPN client config").add(
        "client", "remote vpn.contoso.com 1194").decoy("auth-user-pass /etc/openvpn/client/office.auth",
                                                       "reference").write()


WRITERS = [heldout_files]
