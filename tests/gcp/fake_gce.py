"""A fake Compute Engine control plane (Compute v1 REST) on a loopback port, for the GCP tests.

Why this exists: Compute Engine has no emulator. Listing instances, firewalls and project metadata,
snapshotting disks and creating disks from snapshots are Compute calls, answered with long-running
operations. This fake answers exactly the calls snapsentry's GCP provider makes, in the documented
shapes (tests/tests/fake_gce.rs checks it against tests/gcp/documented_shapes.json, a record of
Google's Compute Engine v1 reference), including the operation dance: a mutating call answers an
Operation (PENDING), its first poll says RUNNING, the next DONE (with `error` when it failed). Every
disk is backed by a raw disk image file named in the fleet; a disk made from a snapshot records the
image it copies, so a test harness playing the CSI driver can map a volume handle to a file. It is
deliberately small: no validation beyond what the provider relies on, Python 3.11 standard library
only. gce_fleet.py builds the resources it serves from a fleet spec.

Covered (every /compute, /sql and /storage call needs `Authorization: Bearer <token>`, else 401
with Google's error body, status UNAUTHENTICATED). The token is either one the metadata server
issued, or a service account's self-signed JWT, as google-cloud-auth sends for a JSON key (Google
accepts these in place of an access token, no exchange): RS256, its signature verifying with the
fleet's serviceAccount modulus/exponent, iss and sub = its email, a `scope` or an `aud`, issued at
most an hour before it expires, not expired.

  GET  /computeMetadata/v1/instance/service-accounts/default/token
                                            the GKE metadata server (workload identity); needs
                                            `Metadata-Flavor: Google`, else 403; as text (404
                                            when the fleet's metadataServer lacks the value):
  GET  /computeMetadata/v1/project/project-id, .../instance/zone (projects/NUMBER/zones/Z),
       .../instance/service-accounts/default/email, .../universe/universe-domain
                                            (googleapis.com, asked by google-cloud-auth)
  Under /compute/v1/projects/P (P must be a fleet project, else 404):
  GET  (the project itself)                 commonInstanceMetadata.items (ssh-keys...)
  GET  /aggregated/instances                items keyed "zones/Z": {"instances": [...]} or a
                                            NO_RESULTS_ON_PAGE warning, for every zone of P
  GET  /zones/Z/instances[/NAME]
  GET  /zones/Z/disks[/NAME]
  POST /zones/Z/disks                       {name, sourceSnapshot (link or partial path), labels,
                                            sizeGb}; a 409 alreadyExists for a taken name
  DELETE /zones/Z/disks/NAME                400 resourceInUseByAnotherResource when attached
  POST /zones/Z/disks/NAME/createSnapshot   {name, labels}
  POST /global/snapshots                    {name, sourceDisk (link or partial path), labels}
  GET  /global/snapshots[/NAME], DELETE /global/snapshots/NAME
  GET  /global/firewalls
  GET  /zones/Z/operations/OP, /global/operations/OP, and POST .../OP/wait (each a poll)
  GET  /sql/v1beta4/projects/P/instances    Cloud SQL Admin: name, connectionName, ipAddresses
  GET  /storage/v1/b?project=P              GCS buckets
Lists take `filter` (`field = value`, `field != value`, `field:*`, clauses in parentheses joined
by spaces or AND; fields are dotted paths such as labels.KEY or status), `maxResults` and
`pageToken`, and answer `nextPageToken` when more remain; an empty list has no `items` (as Google
sends it). Links in bodies point at this server (http://127.0.0.1:PORT/compute/v1/...).

Control API (no token needed):
  POST   /_snapsentry/fleet    a fleet spec (see tests/src/fake_gce.rs) replaces all state
  GET    /_snapsentry/state    {"disks": [{"volumeHandle": "projects/P/zones/Z/disks/N", "selfLink",
                                "project", "zone", "name", "status", "labels", "image": FILE,
                                "sourceSnapshot": NAME|null}], "snapshots": [{"name", "project",
                                "status", "labels", "sourceDisk": HANDLE, "image": FILE}],
                                "operations": {"started", "done", "failed"}, "tokensIssued": n
                                (by the metadata server), "selfSignedCalls": n (calls a
                                service account's self-signed JWT authorized)}
  POST   /_snapsentry/faults   {"disks.insert": {"throttleEvery": 3, "serverErrorEvery": 5,
                                "serverErrorStatus": 503, "quotaEvery": 1}} replaces the plan,
                                zeroes counters; the Nth, 2Nth... call answers 429
                                rateLimitExceeded, the Mth, 2Mth... other one 503 backendError (or
                                serverErrorStatus); quotaEvery (insert calls only): the operation
                                ends DONE with error.errors[].code QUOTA_EXCEEDED (403) and no
                                resource; quotaSourceDisks (disks.insert only): [DISK NAME...]
                                likewise for every disk made from a snapshot of those disks
  GET    /_snapsentry/faults   counters: {"disks.insert": {"calls", "throttled", "serverErrors",
                                "quotaErrors"}}
  DELETE /_snapsentry/faults   no faults, counters zeroed
Operation names are "<collection>.<method>" as in Google's reference: projects.get,
instances.{aggregatedList,list,get}, disks.{list,get,insert,delete,createSnapshot},
snapshots.{list,get,insert,delete}, firewalls.list, zoneOperations.{get,wait},
globalOperations.{get,wait}, sqlInstances.list, buckets.list, metadata.token.

Usage: python3 fake_gce.py --port-file FILE [--port 0]; the bound port is written to FILE once the
server accepts connections.
"""

import base64
import json
import os
import re
import secrets
import sys
import time
import traceback
import urllib.parse

from gce_fleet import COMPUTE, LINK, Fleet, fingerprint, new_id, now, zone_url

# The HTTP plumbing, fault counting and RS256 check are the fake ARM's (one implementation each).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "azure"))
import fake_arm  # noqa: E402

ROUTE = re.compile(r"^/compute/v1/projects/(?P<project>[^/]+)"
                   r"(?:/(?P<scope>zones/[^/]+|global|aggregated))?"
                   r"(?:/(?P<collection>[A-Za-z]+))?(?:/(?P<name>[^/]+))?"
                   r"(?:/(?P<action>createSnapshot|wait))?$")
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
                404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED",
                500: "INTERNAL", 503: "UNAVAILABLE"}


def google_error(status, reason, message, **extra):
    """Google's JSON error body (code, message, errors[{message, domain, reason}], status)."""
    detail = {"message": message, "domain": extra.pop("domain", "global"), "reason": reason}
    detail.update(extra)
    return status, {"error": {"code": status, "message": message, "errors": [detail],
                              "status": STATUS_NAMES.get(status, "UNKNOWN")}}


def not_found(path):
    return google_error(404, "notFound", f"The resource '{path}' was not found")


class State(fake_arm.State):
    """The fleet, the tokens issued and the fault plan, shared by the request threads."""

    def __init__(self):
        super().__init__()
        self.fleet = Fleet({})
        self.tokens = set()
        self.self_signed_calls = 0

    def issue(self):
        with self.lock:
            token = "ya29.fake-" + secrets.token_hex(16)
            self.tokens.add(token)
            return {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def authorizes(self, token):
        """Whether a bearer token is one this server issued or a valid self-signed JWT."""
        if token in self.tokens:
            return True
        account = self.fleet.service_account
        claims = account and fake_arm.verify_rs256(token, account["modulus"],
                                                   account.get("exponent", 65537))
        if not claims or claims.get("iss") != account.get("email") \
                or claims.get("sub") != account.get("email") \
                or not (claims.get("scope") or claims.get("aud")):
            return False
        issued, expires = float(claims.get("iat", 0)), float(claims.get("exp", 0))
        if not issued - 300 <= time.time() < expires or expires - issued > 3600 + 600:
            return False
        with self.lock:
            self.self_signed_calls += 1
        return True

    def fault_for(self, operation):
        """Counts one call; returns "throttle", ("server", status), "quota" or None."""
        fault = super().fault_for(operation)
        with self.lock:
            counters = self.counters[operation]
            counters.setdefault("quotaErrors", 0)
            if fault:
                return "throttle" if fault[0] == 429 else ("server", fault[0])
            quota = self.plan.get(operation, {}).get("quotaEvery")
            unthrottled = counters["calls"] - counters["throttled"]
            if quota and operation.endswith(".insert") and unthrottled % quota == 0:
                counters["quotaErrors"] += 1
                return "quota"
            return None


STATE = State()


class Handler(fake_arm.Handler):
    """The fake ARM's plumbing (methods, log, request body), Compute's answers."""

    def send(self, status, body=None, headers=None):
        plain = isinstance(body, str)  # the metadata server's values
        text = body if plain else json.dumps(body).replace(LINK, self.base())
        data = text.encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/text" if plain else
                         "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        raw = self.body()
        try:
            if url.path.startswith("/_snapsentry/"):
                return self.send(*self.control(method, url.path, raw))
            if method == "GET" and url.path.startswith("/computeMetadata/v1/"):
                return self.send(*self.metadata(url.path))
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or not STATE.authorizes(auth[7:]):
                status, body = google_error(
                    401, "required" if not auth else "authError",
                    "Request is missing required authentication credential. Expected OAuth 2 "
                    "access token, login cookie or other valid authentication credential."
                    if not auth else "Request had invalid authentication credentials. Expected "
                    "OAuth 2 access token, login cookie or other valid authentication credential.",
                    location="Authorization", locationType="header")
                realm = 'Bearer realm="https://accounts.google.com/"'
                return self.send(status, body, {"WWW-Authenticate": realm})
            self.send(*self.api(method, url.path, query, raw))
        except Exception as error:  # a bug in the fake: answer 500 and log it
            traceback.print_exc()
            self.send(*google_error(500, "backendError", repr(error)))

    def metadata(self, path):
        """The GKE metadata server: the pod's token, the project and zone of its node."""
        flavor = {"Metadata-Flavor": "Google"}
        if self.headers.get("Metadata-Flavor") != "Google":
            return 403, "Missing required header: Metadata-Flavor: Google\n"
        if path.endswith("/instance/service-accounts/default/token"):
            if STATE.fault_for("metadata.token"):
                return 503, "temporarily unavailable\n", flavor
            return 200, STATE.issue(), flavor
        server = STATE.fleet.metadata_server
        project = STATE.fleet.projects.get(server.get("projectId"))
        zone = server.get("zone")
        value = {
            "project/project-id": server.get("projectId"),
            "instance/zone": zone and f"projects/{project.number if project else 0}/zones/{zone}",
            "instance/service-accounts/default/email": server.get("email"),
            "universe/universe-domain": "googleapis.com",
        }.get(path.removeprefix("/computeMetadata/v1/"))
        return (200, value, flavor) if value else (404, "Not Found\n", flavor)

    def control(self, method, path, raw):
        if path == "/_snapsentry/fleet" and method == "POST":
            fleet = Fleet(json.loads(raw))
            with STATE.lock:
                STATE.fleet = fleet
            return 200, {}
        if path == "/_snapsentry/state" and method == "GET":
            with STATE.lock:
                return 200, self.state(STATE.fleet)
        if path == "/_snapsentry/faults":
            with STATE.lock:
                if method == "POST":
                    STATE.plan, STATE.counters = json.loads(raw), {}
                elif method == "DELETE":
                    STATE.plan, STATE.counters = {}, {}
                return 200, json.loads(json.dumps(STATE.counters))
        return 404, {"error": f"no control endpoint {method} {path}"}

    @staticmethod
    def state(fleet):
        disks, snapshots = [], []
        for project in fleet.projects.values():
            for (zone, name), disk in sorted(project.disks.items()):
                source = disk.get("sourceSnapshot")
                disks.append({"volumeHandle": f"projects/{project.name}/zones/{zone}/disks/{name}",
                              "selfLink": disk["selfLink"], "project": project.name,
                              "zone": zone, "name": name, "status": disk["status"],
                              "labels": disk["labels"], "image": disk["_image"],
                              "sourceSnapshot": source.rsplit("/", 1)[1] if source else None})
            for name, snap in sorted(project.snapshots.items()):
                snapshots.append({"name": name, "project": project.name, "status": snap["status"],
                                  "labels": snap["labels"], "image": snap["_image"],
                                  "sourceDisk": snap["sourceDisk"].split("/compute/v1/", 1)[1]})
        ops = fleet.operations.values()
        return {"disks": disks, "snapshots": snapshots, "tokensIssued": len(STATE.tokens),
                "selfSignedCalls": STATE.self_signed_calls,
                "operations": {"started": len(ops),
                               "done": sum(op["body"]["status"] == "DONE" for op in ops),
                               "failed": sum("error" in op["body"] for op in ops)}}

    # --- the APIs ------------------------------------------------------------------------------

    def api(self, method, path, query, raw):
        m = ROUTE.match(path)
        sql = re.match(r"^/sql/v1beta4/projects/([^/]+)/instances$", path)
        if m:
            g = m.groupdict()
            operation = self.operation_name(method, g)
        elif sql:
            g, operation = {"project": sql.group(1)}, "sqlInstances.list"
        elif path == "/storage/v1/b":
            if not query.get("project"):
                return google_error(400, "required", "Required parameter: project")
            g, operation = {"project": query["project"]}, "buckets.list"
        else:
            return google_error(404, "notFound", f"no route for {method} {path}")
        if operation is None:
            return google_error(405, "httpMethodNotAllowed", f"{method} {path}")
        fault = STATE.fault_for(operation)
        if fault == "throttle":
            return google_error(429, "rateLimitExceeded", "Rate Limit Exceeded",
                                domain="usageLimits")
        if fault and fault[0] == "server":
            return google_error(fault[1], "backendError", "Internal error. Please try again.")
        with STATE.lock:
            project = STATE.fleet.projects.get(g["project"])
            if project is None:
                return not_found(f"projects/{g['project']}")
            body = json.loads(raw or b"{}") if method == "POST" else {}
            return getattr(self, operation.replace(".", "_"))(
                project, g, query, body, quota=fault == "quota")

    @staticmethod
    def operation_name(method, g):
        scope, collection, name, action = g["scope"], g["collection"], g["name"], g["action"]
        if scope is None and collection is None:
            return "projects.get" if method == "GET" else None
        if scope == "aggregated":
            return "instances.aggregatedList" if collection == "instances" and not name and \
                method == "GET" else None
        if collection == "operations" and name:
            prefix = "globalOperations" if scope == "global" else "zoneOperations"
            if method == "POST" and action == "wait":
                return f"{prefix}.wait"
            return f"{prefix}.get" if method == "GET" and not action else None
        if action == "createSnapshot":
            return "disks.createSnapshot" if collection == "disks" and method == "POST" else None
        known = {"instances": "zones/", "disks": "zones/", "snapshots": "global",
                 "firewalls": "global"}
        if collection not in known or not (scope or "").startswith(known[collection]) or action:
            return None
        verb = {("GET", False): "list", ("GET", True): "get", ("POST", False): "insert",
                ("DELETE", True): "delete"}.get((method, bool(name)))
        if verb in ("insert", "delete") and collection not in ("disks", "snapshots"):
            return None
        return verb and f"{collection}.{verb}"

    def page(self, items, query, kind, link):
        """One page of a Compute list, after `filter`."""
        try:
            items = [item for item in items if matches(item, query.get("filter", ""))]
        except ValueError as error:
            return google_error(400, "invalid", f"Invalid value for field 'filter': {error}")
        size = int(query.get("maxResults") or STATE.fleet.page_size)
        start = decode_token(query.get("pageToken"))
        if start is None:
            return google_error(400, "invalid", "Invalid value for field 'pageToken'.")
        body = {"kind": kind, "id": link.rsplit("/compute/v1/", 1)[-1], "selfLink": link}
        if items[start:start + size]:
            body["items"] = [public(i) for i in items[start:start + size]]
        if start + size < len(items):
            body["nextPageToken"] = encode_token(start + size)
        return 200, body

    def projects_get(self, project, g, query, body, quota):
        return 200, project.body

    def instances_aggregatedList(self, project, g, query, body, quota):
        instances = [i for _, i in sorted(project.instances.items())]
        link = f"{COMPUTE}/projects/{project.name}/aggregated/instances"
        status, page = self.page(instances, query, "compute#instanceAggregatedList", link)
        if status != 200:
            return status, page
        items = {f"zones/{zone}": {"warning": {
            "code": "NO_RESULTS_ON_PAGE",
            "message": "There are no results for scope 'zones/%s' on this page." % zone,
            "data": [{"key": "scope", "value": f"zones/{zone}"}]}} for zone in project.zones}
        for instance in page.pop("items", []):
            scope = "zones/" + instance["zone"].rsplit("/", 1)[1]
            items[scope].pop("warning", None)
            items[scope].setdefault("instances", []).append(instance)
        page["items"] = dict(sorted(items.items()))
        return 200, page

    def zonal(self, project, g, query, table, kind):
        zone = g["scope"].split("/", 1)[1]
        if g["name"]:
            item = table.get((zone, g["name"]))
            handle = f"projects/{project.name}/{g['scope']}/{g['collection']}/{g['name']}"
            return (200, public(item)) if item else not_found(handle)
        items = [item for (z, _), item in sorted(table.items()) if z == zone]
        return self.page(items, query, kind, f"{zone_url(project.name, zone)}/{g['collection']}")

    def instances_list(self, project, g, query, body, quota):
        return self.zonal(project, g, query, project.instances, "compute#instanceList")

    instances_get = instances_list

    def disks_list(self, project, g, query, body, quota):
        return self.zonal(project, g, query, project.disks, "compute#diskList")

    disks_get = disks_list

    def disks_insert(self, project, g, query, body, quota):
        zone = g["scope"].split("/", 1)[1]
        name, source = body.get("name"), body.get("sourceSnapshot", "")
        link = f"{zone_url(project.name, zone)}/disks/{name}"
        if not name or "snapshots/" not in source:
            return google_error(400, "required", "The fake creates disks from a sourceSnapshot "
                                                 "only: name and sourceSnapshot are required.")
        if (zone, name) in project.disks:
            return google_error(409, "alreadyExists", f"The resource 'projects/{project.name}/"
                                                      f"zones/{zone}/disks/{name}' already exists")
        snapshot = project.snapshots.get(source.rsplit("/", 1)[1])
        if snapshot is None or snapshot["status"] != "READY":
            return google_error(400, "invalid", f"The snapshot '{source}' is not ready or does "
                                                "not exist.")
        refused = STATE.plan.get("disks.insert", {}).get("quotaSourceDisks", [])
        if not quota and snapshot["sourceDisk"].rsplit("/", 1)[1] in refused:
            STATE.counters["disks.insert"]["quotaErrors"] += 1
            quota = True
        if quota:
            return self.operation(project, zone, "insert", link, None, quota_error(zone))
        disk = project.disk_body(
            zone, name, body.get("sizeGb", snapshot["diskSizeGb"]), snapshot["_image"],
            body.get("labels"), status="CREATING", sourceSnapshot=snapshot["selfLink"],
            sourceSnapshotId=snapshot["id"], licenses=snapshot.get("licenses", []),
            guestOsFeatures=snapshot.get("guestOsFeatures", []))
        return self.operation(project, zone, "insert", link, disk)

    def disks_delete(self, project, g, query, body, quota):
        zone = g["scope"].split("/", 1)[1]
        disk = project.disks.get((zone, g["name"]))
        if disk is None:
            return not_found(f"projects/{project.name}/zones/{zone}/disks/{g['name']}")
        if disk.get("users"):
            return google_error(400, "resourceInUseByAnotherResource",
                                f"The disk resource '{disk['selfLink']}' is already being used "
                                f"by '{disk['users'][0]}'")
        disk["status"] = "DELETING"
        return self.operation(project, zone, "delete", disk["selfLink"], disk,
                              on_done=lambda: project.disks.pop((zone, g["name"]), None))

    def disks_createSnapshot(self, project, g, query, body, quota):
        disk_path = f"{g['scope']}/disks/{g['name']}"
        return self.snapshots_insert(project, g, query, dict(body, sourceDisk=disk_path), quota,
                                     "createSnapshot")

    def snapshots_insert(self, project, g, query, body, quota, verb="insert"):
        name, source = body.get("name"), body.get("sourceDisk", "")
        found = re.search(r"zones/([^/]+)/disks/([^/]+)$", source)
        disk = found and project.disks.get(found.groups())
        if not name:
            return google_error(400, "required", "Required field 'resource.name' not specified")
        if disk is None:
            return not_found(f"projects/{project.name}/{source.split('projects/')[-1]}")
        if name in project.snapshots:
            return google_error(409, "alreadyExists", f"The resource 'projects/{project.name}/"
                                                      f"global/snapshots/{name}' already exists")
        link = f"{COMPUTE}/projects/{project.name}/global/snapshots/{name}"
        zone = found.group(1) if verb == "createSnapshot" else None
        target = disk["selfLink"] if verb == "createSnapshot" else link
        if quota:
            return self.operation(project, zone, verb, target, None, quota_error(zone))
        labels = body.get("labels", {})
        snapshot = {
            "kind": "compute#snapshot", "id": new_id(), "creationTimestamp": now(),
            "name": name, "status": "CREATING", "sourceDisk": disk["selfLink"],
            "sourceDiskId": disk["id"], "diskSizeGb": disk["sizeGb"],
            "storageBytes": "0", "storageBytesStatus": "UPDATING",
            "licenses": disk.get("licenses", []),
            "guestOsFeatures": disk.get("guestOsFeatures", []),
            "labels": labels, "labelFingerprint": fingerprint(labels),
            "storageLocations": ["us"], "snapshotType": "STANDARD", "architecture": "X86_64",
            "selfLink": link, "_image": disk["_image"],
        }
        project.snapshots[name] = snapshot
        return self.operation(project, zone, verb, target, snapshot)

    def snapshots_list(self, project, g, query, body, quota):
        if g["name"]:
            snapshot = project.snapshots.get(g["name"])
            return (200, public(snapshot)) if snapshot else \
                not_found(f"projects/{project.name}/global/snapshots/{g['name']}")
        link = f"{COMPUTE}/projects/{project.name}/global/snapshots"
        return self.page([s for _, s in sorted(project.snapshots.items())], query,
                         "compute#snapshotList", link)

    snapshots_get = snapshots_list

    def snapshots_delete(self, project, g, query, body, quota):
        snapshot = project.snapshots.get(g["name"])
        if snapshot is None:
            return not_found(f"projects/{project.name}/global/snapshots/{g['name']}")
        snapshot["status"] = "DELETING"
        return self.operation(project, None, "delete", snapshot["selfLink"], snapshot,
                              on_done=lambda: project.snapshots.pop(g["name"], None))

    def firewalls_list(self, project, g, query, body, quota):
        link = f"{COMPUTE}/projects/{project.name}/global/firewalls"
        return self.page(project.firewalls, query, "compute#firewallList", link)

    def sqlInstances_list(self, project, g, query, body, quota):
        status, page = self.page(project.sql, query, "sql#instancesList", "")
        for key in ("id", "selfLink"):
            page.pop(key, None)
        return status, page

    def buckets_list(self, project, g, query, body, quota):
        status, page = self.page(project.buckets, query, "storage#buckets", "")
        for key in ("id", "selfLink"):
            page.pop(key, None)
        return status, page

    # --- operations ----------------------------------------------------------------------------

    def operation(self, project, zone, verb, target, resource, error=None, on_done=None):
        """Starts an operation on `resource` (None when it fails); answers it, PENDING."""
        name = f"operation-{int(time.time() * 1000)}-{secrets.token_hex(6)}"
        scope = zone_url(project.name, zone) if zone else \
            f"{COMPUTE}/projects/{project.name}/global"
        body = {
            "kind": "compute#operation", "id": new_id(), "name": name, "operationType": verb,
            "targetLink": target, "targetId": resource["id"] if resource else new_id(),
            "status": "PENDING", "user": "snapsentry@fake.iam.gserviceaccount.com",
            "progress": 0, "insertTime": now(), "selfLink": f"{scope}/operations/{name}",
        }
        if zone:
            body["zone"] = scope
        STATE.fleet.operations[name] = {"polls": 0, "body": body, "zone": zone, "error": error,
                                        "resource": resource, "on_done": on_done}
        return 200, dict(body)

    def poll(self, project, g, query, body, quota):
        zone = g["scope"].split("/", 1)[1] if g["scope"] != "global" else None
        op = STATE.fleet.operations.get(g["name"])
        if op is None or op["zone"] != zone or f"/projects/{project.name}/" not in \
                op["body"]["selfLink"]:
            return not_found(f"projects/{project.name}/{g['scope']}/operations/{g['name']}")
        op["polls"] += 1
        body = op["body"]
        if op["polls"] == 1:
            body.update(status="RUNNING", progress=0, startTime=now())
        elif body["status"] != "DONE":
            body.update(status="DONE", progress=100, endTime=now())
            if op["error"]:
                body.update(error=op["error"], httpErrorStatusCode=403,
                            httpErrorMessage="FORBIDDEN")
            elif op["on_done"]:
                op["on_done"]()
            elif op["resource"]:
                op["resource"]["status"] = "READY"
                if op["resource"]["kind"] == "compute#snapshot":
                    op["resource"].update(storageBytes=str(1 << 20),
                                          storageBytesStatus="UP_TO_DATE")
        return 200, dict(body)

    zoneOperations_get = zoneOperations_wait = poll
    globalOperations_get = globalOperations_wait = poll


def quota_error(zone):
    region = zone[:-2] if zone else "global"
    return {"errors": [{
        "code": "QUOTA_EXCEEDED",
        "message": f"Quota 'SSD_TOTAL_GB' exceeded.  Limit: 500.0 in region {region}.",
        "errorDetails": [{"quotaInfo": {"metricName": "compute.googleapis.com/ssd_total_storage",
                                        "limitName": "SSD-TOTAL-GB-per-project-region",
                                        "dimensions": {"region": region}, "limit": 500.0}}],
    }]}


def public(body):
    """The API body of a stored resource: the fake's own keys (leading _) removed."""
    return json.loads(json.dumps({k: v for k, v in body.items() if not k.startswith("_")}))


def encode_token(offset):
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def decode_token(token):
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        return int(text.removeprefix("offset:")) if text.startswith("offset:") else None
    except ValueError:
        return None


CLAUSE = re.compile(r'\(?\s*([A-Za-z][\w.\-]*)\s*(!=|=|:)\s*("[^"]*"|[^\s()]+)\s*\)?\s*(?:AND\s+)?')


def matches(item, expression):
    """Whether `item` passes a Compute list filter (the subset described in the header)."""
    position = 0
    expression = expression.strip()
    while position < len(expression):
        clause = CLAUSE.match(expression, position)
        if not clause or clause.end() == position:
            raise ValueError(f"cannot parse {expression[position:]!r}")
        field, op, wanted = clause.groups()
        wanted = wanted.strip('"')
        value = item
        for part in field.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if op == ":":
            ok = value is not None and (wanted == "*" or str(value) == wanted)
        else:
            ok = (str(value).lower() if isinstance(value, bool) else value) == wanted
            ok = ok if op == "=" else not ok
        if not ok:
            return False
        position = clause.end()
    return True


if __name__ == "__main__":
    fake_arm.main(Handler, __doc__)
