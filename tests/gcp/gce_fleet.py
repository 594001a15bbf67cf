"""The state of the fake Compute Engine (fake_gce.py): a fleet spec turned into resource bodies.

A fleet spec (documented on FakeGce::load_fleet in tests/src/fake_gce.rs) names the service account
whose key signs token requests, what the metadata server says of the scanner's node (project, zone),
and projects with instances (zone, status, labels, network tags, service accounts, external
IPv4/IPv6, metadata, OS, disks each backed by a raw disk image file), VPC firewall rules, project
metadata, Cloud SQL instances and GCS buckets. Fleet builds the bodies the Compute Engine v1 API
(and the small SQL Admin and Storage listings) would answer, in the documented shapes, and keeps the
disks, snapshots and operations the fake's requests add.

Links: every selfLink, zone, source, targetLink... is written with the placeholder LINK
("{fake}/compute/v1/projects/..."); the server replaces it with its own URL when it answers, so a
client can follow them. Google's real links start with https://www.googleapis.com/compute/v1/.
"""

import hashlib
import itertools
from datetime import datetime, timezone

LINK = "{fake}"
COMPUTE = LINK + "/compute/v1"
# The license a Windows Server boot disk carries (its path is what OS detection looks at).
WINDOWS_LICENSE = "projects/windows-cloud/global/licenses/windows-server-2022-dc"
LINUX_LICENSE = "projects/debian-cloud/global/licenses/debian-12-bookworm"
IDS = itertools.count(1000000000000000001)


def now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_id():
    """A resource id: Compute Engine ids are uint64, sent as JSON strings."""
    return str(next(IDS))


def fingerprint(value):
    return hashlib.sha256(repr(value).encode()).hexdigest()[:16]


def zone_url(project, zone):
    return f"{COMPUTE}/projects/{project}/zones/{zone}"


def metadata(items):
    items = [{"key": k, "value": v} for k, v in (items or {}).items()]
    return {"kind": "compute#metadata", "fingerprint": fingerprint(items), "items": items}


class Project:
    """One project's resources: instances, disks and snapshots by name, firewalls, services."""

    def __init__(self, name, spec):
        self.name = name
        self.number = str(int(hashlib.sha256(name.encode()).hexdigest(), 16) % 10**12)
        self.zones = set(spec.get("zones", []))
        self.instances = {}  # (zone, name) -> body
        self.disks = {}  # (zone, name) -> body; body["_image"] is the disk image file
        self.snapshots = {}  # name -> body; body["_image"] likewise
        self.body = {
            "kind": "compute#project",
            "id": new_id(),
            "name": name,
            "creationTimestamp": now(),
            "commonInstanceMetadata": metadata(spec.get("commonMetadata")),
            "quotas": [{"metric": "SNAPSHOTS", "limit": 5000.0, "usage": 0.0}],
            "selfLink": f"{COMPUTE}/projects/{name}",
            "defaultServiceAccount": f"{self.number}-compute@developer.gserviceaccount.com",
            "defaultNetworkTier": "PREMIUM",
            "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS",
        }
        for instance in spec.get("instances", []):
            self._load_instance(instance)
        self.firewalls = [self._firewall(rule) for rule in spec.get("firewalls", [])]
        self.sql = [self._sql(db) for db in spec.get("sqlInstances", [])]
        self.buckets = [self._bucket(b) for b in spec.get("buckets", [])]

    def disk_body(self, zone, name, size_gb, image, labels=None, **extra):
        """Adds a READY disk backed by the disk image file `image`."""
        self.zones.add(zone)
        link = f"{zone_url(self.name, zone)}/disks/{name}"
        body = {
            "kind": "compute#disk",
            "id": new_id(),
            "creationTimestamp": now(),
            "name": name,
            "sizeGb": str(size_gb),
            "zone": zone_url(self.name, zone),
            "status": "READY",
            "selfLink": link,
            "type": f"{zone_url(self.name, zone)}/diskTypes/pd-balanced",
            "labels": dict(labels or {}),
            "labelFingerprint": fingerprint(labels),
            "physicalBlockSizeBytes": "4096",
            "architecture": "X86_64",
            "_image": image,
        }
        body.update(extra)
        self.disks[(zone, name)] = body
        return body

    def _load_instance(self, spec):
        name, zone = spec["name"], spec.get("zone", "us-central1-a")
        self.zones.add(zone)
        link = f"{zone_url(self.name, zone)}/instances/{name}"
        windows = spec.get("os", "").upper() == "WINDOWS"
        disks = []
        for index, disk in enumerate(spec.get("disks", [])):
            boot = disk.get("boot", index == 0)
            features = [{"type": t} for t in (["WINDOWS", "MULTI_IP_SUBNET"] if windows else
                                               ["UEFI_COMPATIBLE", "VIRTIO_SCSI_MULTIQUEUE"])]
            licenses = [f"{COMPUTE}/{WINDOWS_LICENSE if windows else LINUX_LICENSE}"]
            extra = {"users": [link]}
            if boot:
                extra.update(licenses=licenses, guestOsFeatures=features)
            body = self.disk_body(zone, disk["name"], disk.get("sizeGb", 10), disk["image"],
                                  disk.get("labels"), **extra)
            attached = {
                "kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE",
                "source": body["selfLink"], "deviceName": disk.get("deviceName", disk["name"]),
                "index": index, "boot": boot, "autoDelete": boot, "interface": "SCSI",
                "diskSizeGb": body["sizeGb"], "architecture": "X86_64",
            }
            if boot:
                attached.update(licenses=licenses, guestOsFeatures=features)
            disks.append(attached)
        network = spec.get("network", "default")
        nic = {
            "kind": "compute#networkInterface",
            "name": "nic0",
            "network": f"{COMPUTE}/projects/{self.name}/global/networks/{network}",
            "subnetwork": f"{COMPUTE}/projects/{self.name}/regions/{zone[:-2]}/subnetworks/"
                          f"{network}",
            "networkIP": spec.get("internalIp", "10.128.0.2"),
            "stackType": "IPV4_IPV6" if spec.get("externalIpv6") else "IPV4_ONLY",
            "fingerprint": fingerprint(name),
        }
        if spec.get("externalIp"):
            nic["accessConfigs"] = [{"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT",
                                     "name": "External NAT", "natIP": spec["externalIp"],
                                     "networkTier": "PREMIUM"}]
        if spec.get("externalIpv6"):
            nic["ipv6AccessConfigs"] = [{"kind": "compute#accessConfig", "type": "DIRECT_IPV6",
                                         "name": "external-ipv6",
                                         "externalIpv6": spec["externalIpv6"],
                                         "externalIpv6PrefixLength": 96,
                                         "networkTier": "PREMIUM"}]
        tags = spec.get("tags", [])
        self.instances[(zone, name)] = {
            "kind": "compute#instance",
            "id": new_id(),
            "creationTimestamp": now(),
            "name": name,
            "machineType": f"{zone_url(self.name, zone)}/machineTypes/"
                           f"{spec.get('machineType', 'e2-medium')}",
            "status": spec.get("status", "RUNNING"),
            "zone": zone_url(self.name, zone),
            "canIpForward": False,
            "networkInterfaces": [nic],
            "disks": disks,
            "metadata": metadata(spec.get("metadata")),
            "serviceAccounts": [
                {"email": email, "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}
                for email in spec.get("serviceAccounts", [])],
            "tags": {"items": tags, "fingerprint": fingerprint(tags)} if tags else
                    {"fingerprint": fingerprint(tags)},
            "labels": dict(spec.get("labels", {})),
            "labelFingerprint": fingerprint(spec.get("labels")),
            "selfLink": link,
            "cpuPlatform": "Intel Broadwell",
            "deletionProtection": False,
            "fingerprint": fingerprint(link),
        }

    def _firewall(self, spec):
        body = {
            "kind": "compute#firewall",
            "id": new_id(),
            "creationTimestamp": now(),
            "name": spec["name"],
            "description": spec.get("description", ""),
            "network": f"{COMPUTE}/projects/{self.name}/global/networks/"
                       f"{spec.get('network', 'default')}",
            "priority": spec.get("priority", 1000),
            "direction": spec.get("direction", "INGRESS"),
            "logConfig": {"enable": False},
            "disabled": spec.get("disabled", False),
            "selfLink": f"{COMPUTE}/projects/{self.name}/global/firewalls/{spec['name']}",
        }
        for key in ("sourceRanges", "destinationRanges", "sourceTags", "targetTags",
                    "targetServiceAccounts"):
            if key in spec:
                body[key] = list(spec[key])
        body["denied" if spec.get("deny") else "allowed"] = [
            dict(rule) for rule in spec.get("allowed", [{"IPProtocol": "tcp", "ports": ["22"]}])]
        return body

    def _sql(self, spec):
        region = spec.get("region", "us-central1")
        return {
            "kind": "sql#instance",
            "name": spec["name"],
            "project": self.name,
            "region": region,
            "connectionName": f"{self.name}:{region}:{spec['name']}",
            "databaseVersion": spec.get("databaseVersion", "POSTGRES_15"),
            "state": "RUNNABLE",
            "backendType": "SECOND_GEN",
            "instanceType": "CLOUD_SQL_INSTANCE",
            "ipAddresses": [{"type": ip.get("type", "PRIMARY"), "ipAddress": ip["ipAddress"]}
                            for ip in spec.get("ipAddresses", [])],
            "selfLink": f"{LINK}/sql/v1beta4/projects/{self.name}/instances/{spec['name']}",
        }

    def _bucket(self, spec):
        return {
            "kind": "storage#bucket",
            "id": spec["name"],
            "selfLink": f"{LINK}/storage/v1/b/{spec['name']}",
            "projectNumber": self.number,
            "name": spec["name"],
            "timeCreated": now(),
            "updated": now(),
            "metageneration": "1",
            "location": spec.get("location", "US"),
            "locationType": "multi-region",
            "storageClass": "STANDARD",
            "etag": "CAE=",
        }


class Fleet:
    """The projects of a fleet spec, the accepted credentials, and the operations started."""

    def __init__(self, spec):
        self.page_size = int(spec.get("pageSize", 500))
        self.service_account = spec.get("serviceAccount")  # {"email", "modulus", "exponent"}
        self.metadata_server = spec.get("metadataServer", {})  # {"projectId", "zone", "email"}
        self.projects = {name: Project(name, p) for name, p in spec.get("projects", {}).items()}
        self.operations = {}  # name -> {"polls", "body", "done"}
