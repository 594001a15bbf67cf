#!/usr/bin/env bash
# Build the demo fleet's disk images, with secrets planted where real servers keep them:
#
#   web-01   Linux web server (GPT, ext4 "cloudimg-rootfs"): a deploy user's SSH private key, an AWS
#            access key, and the app's PostgreSQL connection string to the RDS instance
#   db-01    Linux database server (GPT, XFS): the web server's public key in admin's
#            authorized_keys, a .pgpass and a shell history with a password
#   win-01   Windows server (MBR, NTFS): an unattend.xml with the administrator password and an IIS
#            web.config with a SQL Server connection string
#   api-01   Linux API server (GPT, ext4), the demo's GCP instance: no SSH key on its disk (GCE's
#            project metadata authorizes web-01's), the app's PostgreSQL connection string
#
# Usage: fleet-images.sh [--lvm] [--extra DIR] OUT_DIR RDS_ENDPOINT
# Writes OUT_DIR/{web-01,db-01,win-01,api-01}.raw, OUT_DIR/planted.txt (every planted secret value, one
# per line, so tests can prove none of them leaks) and OUT_DIR/web-01-deploy.pub (the public half
# of web-01's key, for fleets that authorize it elsewhere too). Every secret is generated fresh;
# none is real.
# Needs root for the NTFS image (populated through an ntfs-3g mount).
#
# Options (neither changes what the demo gets without them):
#   --lvm        db-01 laid out as RHEL installs it: its XFS root in an LVM logical volume
#                (rhel/root) on the GPT partition. Needs root (pvcreate on a loop device).
#   --extra DIR  copy DIR/<machine>/ (when present) into each machine's file tree before its
#                filesystem is made: more files for a caller's scenario (secrets it planted and
#                tracks itself).
set -euo pipefail

usage="usage: fleet-images.sh [--lvm] [--extra DIR] OUT_DIR RDS_ENDPOINT"
lvm=""
extra=""
while [[ ${1:-} == --* ]]; do
	case $1 in
	--lvm) lvm=1; shift ;;
	--extra) extra=${2:?$usage}; shift 2 ;;
	*) echo "$usage" >&2; exit 2 ;;
	esac
done
out=${1:?$usage}
rds=${2:?$usage}
mkdir -p "$out"
work=$(mktemp -d -t snapsentry-fleet.XXXXXX)
mnt=""
cleanup() {
	if [[ -n $mnt ]]; then umount "$mnt" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
# Copy the caller's extra files for machine $1 into its tree $2.
add_extra() {
	if [[ -n $extra && -d $extra/$1 ]]; then cp -R "$extra/$1/." "$2/"; fi
}

rand() { tr -dc "$1" </dev/urandom | head -c "$2" || true; }
planted="$out/planted.txt"
: >"$planted"
plant() { printf '%s\n' "$1" >>"$planted"; printf '%s' "$1"; }

# A GPT disk of SIZE with one partition (type, name) holding the filesystem made by the rest of the
# command line, which gets the partition's offset and size as $start and $bytes.
gpt_disk() {
	local raw=$1 size=$2 type=$3 name=$4
	truncate -s "$size" "$raw"
	sgdisk -o -n 1:2048:0 -t "1:$type" -c "1:$name" "$raw" >/dev/null
	start=$((2048 * 512))
	bytes=$(($(stat -c %s "$raw") - start - 34 * 512))
}

# --- web-01 ---------------------------------------------------------------------------------
web="$work/web-01"
mkdir -p "$web"/{etc,home/deploy/.ssh,root/.aws,var/www/app}
ssh-keygen -q -t ed25519 -N '' -C deploy@web-01 -f "$web/home/deploy/.ssh/id_ed25519"
plant "$(sed -n 2p "$web/home/deploy/.ssh/id_ed25519")" >/dev/null
printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
	"$(plant "AKIA$(rand 'A-Z2-7' 16)")" "$(plant "$(rand 'A-Za-z0-9/+' 40)")" >"$web/root/.aws/credentials"
printf 'NODE_ENV=production\nDATABASE_URL=postgres://app:%s@%s:5432/app\n' \
	"$(plant "$(rand 'A-Za-z0-9' 24)")" "$rds" >"$web/var/www/app/.env"
printf 'web-01\n' >"$web/etc/hostname"
chmod 600 "$web/root/.aws/credentials" "$web/home/deploy/.ssh/id_ed25519"
add_extra web-01 "$web"
gpt_disk "$out/web-01.raw" 96M 8300 cloudimg-rootfs
# nodiscard: mke2fs would otherwise punch holes over the whole file, GPT included.
mke2fs -q -F -t ext4 -L cloudimg-rootfs -E "offset=$start,nodiscard" -d "$web" "$out/web-01.raw" "$((bytes / 1024))k"

# --- db-01 ----------------------------------------------------------------------------------
db="$work/db-01"
mkdir -p "$db"/{etc,home/admin/.ssh,root}
cp "$web/home/deploy/.ssh/id_ed25519.pub" "$db/home/admin/.ssh/authorized_keys"
cp "$web/home/deploy/.ssh/id_ed25519.pub" "$out/web-01-deploy.pub"
printf '%s:5432:app:app:%s\n' "$rds" "$(plant "$(rand 'A-Za-z0-9' 20)")" >"$db/root/.pgpass"
printf 'systemctl status postgresql\nmysql -u root -p%s -h localhost\nexit\n' \
	"$(plant "$(rand 'A-Za-z0-9' 16)")" >"$db/root/.bash_history"
printf 'db-01\n' >"$db/etc/hostname"
chmod 600 "$db/root/.pgpass"
add_extra db-01 "$db"
if [[ -n $lvm ]]; then
	gpt_disk "$work/db-01.gpt" 400M 8E00 primary
else
	gpt_disk "$work/db-01.gpt" 400M 8300 root
fi
# mkfs.xfs fills a filesystem from a prototype file (it cannot take a directory, nor write at an
# offset): describe the tree, build the filesystem alone, then place it in the partition.
proto() { # DIR INDENT
	local entry name mode
	for entry in "$1"/* "$1"/.[!.]*; do
		[[ -e $entry ]] || continue
		name=${entry##*/}
		mode=$(stat -c %a "$entry")
		if [[ -d $entry ]]; then
			printf '%s%s d--%s 0 0\n' "$2" "$name" "$mode"
			proto "$entry" "$2 "
			printf '%s$\n' "$2"
		else
			printf '%s%s ---%s 0 0 %s\n' "$2" "$name" "$mode" "$entry"
		fi
	done
}
{ printf '/dev/null\n0 0\nd--755 0 0\n'; proto "$db" " "; printf '$\n'; } >"$work/db-01.proto"
fs_start=$start
if [[ -n $lvm ]]; then
	# One PV on the partition (through a loop device), the VG "rhel" and its LV "root" over all
	# of it: one linear segment from the first extent. The LV stays inactive (no device-mapper);
	# the filesystem goes where its first extent is. LVM sees only this loop device and keeps no
	# backups: the host's LVM setup is neither read nor changed.
	loop=$(losetup --find --show --offset "$start" --sizelimit "$bytes" "$work/db-01.gpt")
	mkdir -p "$work/lvm"
	cat >"$work/lvm/lvm.conf" <<CONF
devices { filter = [ "a|^$loop\$|", "r|.*|" ] use_devicesfile = 0 obtain_device_list_from_udev = 0 }
activation { udev_sync = 0 udev_rules = 0 }
backup { backup = 0 archive = 0 }
global { activation = 0 }
CONF
	lvm_run() { LVM_SYSTEM_DIR="$work/lvm" LVM_SUPPRESS_FD_WARNINGS=1 "$@"; }
	{
		lvm_run pvcreate -ff -y "$loop" &&
			lvm_run vgcreate -s 4M rhel "$loop" &&
			lvm_run lvcreate --activate n -y -n root -l 100%FREE rhel &&
			pe_start=$(lvm_run pvs --noheadings --units b --nosuffix -o pe_start "$loop") &&
			bytes=$(lvm_run lvs --noheadings --units b --nosuffix -o lv_size rhel/root)
	} >"$work/lvm.out" 2>&1 || { losetup --detach "$loop"; cat "$work/lvm.out" >&2; exit 1; }
	losetup --detach "$loop"
	fs_start=$((start + ${pe_start// /}))
	bytes=${bytes// /}
fi
truncate -s "$bytes" "$work/db-01.xfs"
mkfs.xfs -q -f -L root -p "$work/db-01.proto" "$work/db-01.xfs"
dd if="$work/db-01.xfs" of="$work/db-01.gpt" bs=1M seek=$((fs_start / 1048576)) conv=notrunc,sparse status=none
mv "$work/db-01.gpt" "$out/db-01.raw"

# --- api-01 ---------------------------------------------------------------------------------
api="$work/api-01"
mkdir -p "$api"/{etc,home/deploy/.ssh,srv/api}
printf '# keys come from GCE metadata (ssh-keys)\n' >"$api/home/deploy/.ssh/authorized_keys"
printf 'PORT=8080\nDATABASE_URL=postgres://api:%s@%s:5432/app\n' \
	"$(plant "$(rand 'A-Za-z0-9' 24)")" "$rds" >"$api/srv/api/.env"
printf 'api-01\n' >"$api/etc/hostname"
chmod 600 "$api/srv/api/.env"
add_extra api-01 "$api"
gpt_disk "$out/api-01.raw" 48M 8300 cloudimg-rootfs
mke2fs -q -F -t ext4 -L cloudimg-rootfs -E "offset=$start,nodiscard" -d "$api" "$out/api-01.raw" "$((bytes / 1024))k"

# --- win-01 ---------------------------------------------------------------------------------
win="$work/win-01"
mkdir -p "$win/Windows/Panther" "$win/inetpub/wwwroot"
admin=$(plant "$(rand 'A-Za-z0-9' 18)")
cat >"$win/Windows/Panther/unattend.xml" <<XML
<?xml version="1.0" encoding="utf-8"?>
<unattend xmlns="urn:schemas-microsoft-com:unattend">
  <settings pass="oobeSystem">
    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64">
      <UserAccounts>
        <AdministratorPassword>
          <Value>$admin</Value>
          <PlainText>true</PlainText>
        </AdministratorPassword>
      </UserAccounts>
    </component>
  </settings>
</unattend>
XML
cat >"$win/inetpub/wwwroot/web.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <connectionStrings>
    <add name="Orders" connectionString="Server=tcp:orders-sql.database.windows.net,1433;Initial Catalog=orders;User ID=orders;Password=$(plant "$(rand 'A-Za-z0-9' 22)");Encrypt=True;" />
  </connectionStrings>
</configuration>
XML
add_extra win-01 "$win"
raw="$out/win-01.raw"
truncate -s 64M "$raw"
printf 'label: dos\nstart=2048, type=7\n' | sfdisk -q "$raw"
truncate -s "$(((64 << 20) - 2048 * 512))" "$work/win-01.ntfs"
# -F: it is a file, not a device (mkntfs says so on stderr even with -q; shown only on failure).
mkntfs -F -Q -q -s 512 -p 2048 -H 255 -S 63 -L Windows "$work/win-01.ntfs" 2>"$work/mkntfs.err" ||
	{ cat "$work/mkntfs.err" >&2; exit 1; }
mnt="$work/mnt"
mkdir -p "$mnt"
ntfs-3g "$work/win-01.ntfs" "$mnt"
cp -R "$win"/. "$mnt"/
umount "$mnt"
mnt=""
dd if="$work/win-01.ntfs" of="$raw" bs=1M seek=1 conv=notrunc,sparse status=none

echo "fleet images in $out: web-01.raw db-01.raw win-01.raw api-01.raw ($(wc -l <"$planted") planted secrets)" >&2
