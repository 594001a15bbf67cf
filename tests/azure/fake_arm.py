"""A fake Azure Resource Manager (ARM) control plane on a loopback port, for snapsentry's Azure tests.

Why this exists: Azure has no emulator for its control plane. Azurite emulates Blob storage (where
disk and snapshot contents are read through SAS URLs), but listing VMs, taking disk snapshots,
granting SAS access to them and listing the network and data services around a VM are ARM calls. This
fake answers exactly those calls with the documented response shapes (tests/tests/fake_arm.rs checks
it against the shapes of Microsoft's published examples, tests/azure/documented_shapes.json), including ARM's long-running
operation dance: 202 Accepted with `Azure-AsyncOperation` and `Location` headers, an operation that
reports InProgress once and then Succeeded. It is deliberately small: no validation beyond what
snapsentry's provider relies on, Python 3.11 standard library only. arm_fleet.py builds the resources
it serves from a fleet spec.

Covered (every ARM call needs `Authorization: Bearer <token>` from the token endpoint, else 401, and
an `api-version` query parameter, any value, else 400 MissingApiVersionParameter):

  POST /{tenant}/oauth2/v2.0/token                    client-credentials flow (form body): a
                                                      client_secret, or a client_assertion (jwt-bearer):
                                                      the fleet's federatedToken (workload identity),
                                                      or an RS256 JWT (client certificate) whose
                                                      signature verifies with the fleet's certificate
                                                      modulus/exponent, aud = this token URL, iss = sub
                                                      = client_id, not expired
  GET  /metadata/identity/oauth2/token                the IMDS token of a managed identity: needs
                                                      `Metadata: true`, api-version and resource; a
                                                      client_id must be the fleet's
                                                      managedIdentityClientId when it names one
  GET  /subscriptions                                 subscriptions of the fleet
  GET  [/subscriptions/S[/resourceGroups/G]]/providers/Microsoft.Compute/virtualMachines
                                                      `statusOnly=true` / `$expand=instanceView`
                                                      add properties.instanceView (power state)
  GET  .../Microsoft.Compute/disks[/NAME]
  PUT|GET|DELETE .../Microsoft.Compute/snapshots/NAME (PUT: creationData.createOption=Copy from a
                                                      disk or snapshot, `incremental`, tags; PUT and
                                                      DELETE answer 202 + the operation headers)
  GET  .../Microsoft.Compute/snapshots                by resource group and by subscription
  POST .../snapshots/NAME/beginGetAccess              202, empty body; the operation's result is
                                                      properties.output.accessSAS (the Azurite SAS
                                                      URL of the snapshot's page blob)
  POST .../snapshots/NAME/endGetAccess                202; the grant ends
  GET  /subscriptions/S/providers/Microsoft.Compute/locations/L/operations/ID
                                                      the operation (Azure-AsyncOperation); with
                                                      `monitor=true` the Location poll (202 until
                                                      done, then 200 with the result)
  GET  .../Microsoft.Network/{networkInterfaces,publicIPAddresses,networkSecurityGroups,loadBalancers}
  GET  .../Microsoft.Storage/storageAccounts, Microsoft.Sql/servers,
       Microsoft.DBforPostgreSQL/flexibleServers, Microsoft.DBforMySQL/flexibleServers,
       Microsoft.DocumentDB/databaseAccounts, Microsoft.KeyVault/vaults
Lists answer {"value": [...]} and, when the fleet's "pageSize" is smaller than the list, a `nextLink`.

Control API (no token needed):
  POST   /_snapsentry/fleet    a fleet spec (see tests/src/fake_arm.rs) replaces all state
  GET    /_snapsentry/state    {"snapshots": [ID...], "activeGrants": n, "grants": [ID...],
                                "grantsEver": n, "tokensIssued": n}
  POST   /_snapsentry/faults   {"snapshots.put": {"throttleEvery": 3, "serverErrorEvery": 5,
                                "serverErrorStatus": 503}} replaces the plan, zeroes counters; the
                                Nth, 2Nth... call answers 429 + Retry-After: 1 (TooManyRequests),
                                the Mth, 2Mth... other one 503 (or serverErrorStatus)
  GET    /_snapsentry/faults   counters: {"snapshots.put": {"calls", "throttled", "serverErrors"}}
  DELETE /_snapsentry/faults   no faults, counters zeroed
Operation names are "<resource type>.<verb>": virtualMachines.list, disks.get, disks.list,
snapshots.{put,get,delete,list,beginGetAccess,endGetAccess}, operations.get, <network or data
service type>.list, subscriptions.list, token.post, imds.get.

Usage: python3 fake_arm.py --port-file FILE [--port 0]; the bound port is written to FILE once the
server accepts connections.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from arm_fleet import COMPUTE, GIB, Fleet, now, resource

SCOPE = r"(?:/subscriptions/(?P<sub>[^/]+)(?:/resourceGroups/(?P<rg>[^/]+))?)?/providers/"
ROUTES = [
    (re.compile(r"^/subscriptions$", re.I), "subscriptions"),
    (re.compile(r"^/subscriptions/(?P<sub>[^/]+)/providers/Microsoft\.Compute/locations/"
                r"(?P<loc>[^/]+)/operations/(?P<op>[^/]+)$", re.I), "operation"),
    (re.compile(r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
                r"Microsoft\.Compute/snapshots/(?P<name>[^/]+)/(?P<action>beginGetAccess|"
                r"endGetAccess)$", re.I), "access"),
    (re.compile(r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
                r"(?P<provider>[^/]+)/(?P<type>[^/]+)/(?P<name>[^/]+)$", re.I), "resource"),
    (re.compile("^" + SCOPE + r"(?P<provider>[^/]+)/(?P<type>[^/]+)$", re.I), "list"),
]


JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# DER of the DigestInfo that precedes a SHA-256 hash in a PKCS#1 v1.5 signature (RFC 8017).
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def b64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def verify_rs256(token, modulus_hex, exponent):
    """The claims of an RS256 JWT whose signature verifies with the RSA public key, else None."""
    try:
        header, claims, signature = token.split(".")
        if json.loads(b64url(header)).get("alg") != "RS256":
            return None
        n = int(modulus_hex, 16)
        size = (n.bit_length() + 7) // 8
        decoded = pow(int.from_bytes(b64url(signature), "big"), int(exponent), n)
        digest = hashlib.sha256(f"{header}.{claims}".encode()).digest()
        suffix = b"\x00" + SHA256_DIGEST_INFO + digest
        expected = b"\x00\x01" + b"\xff" * (size - 3 - len(suffix) + 1) + suffix
        if decoded.to_bytes(size, "big") != expected:
            return None
        return json.loads(b64url(claims))
    except (ValueError, TypeError, json.JSONDecodeError):
        return None


def arm_error(status, code, message):
    return status, {"error": {"code": code, "message": message}}


class State:
    """The fleet, the token and the fault plan, shared by the request threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.fleet = Fleet({})
        self.token = "fake-arm-" + secrets.token_hex(16)
        self.tokens_issued = 0
        self.plan = {}
        self.counters = {}

    def fault_for(self, operation):
        """Counts one call; returns (status, code, headers) when it must fail, else None."""
        with self.lock:
            counters = self.counters.setdefault(
                operation, {"calls": 0, "throttled": 0, "serverErrors": 0})
            counters["calls"] += 1
            plan = self.plan.get(operation, {})
            throttle = plan.get("throttleEvery")
            if throttle and counters["calls"] % throttle == 0:
                counters["throttled"] += 1
                return 429, "TooManyRequests", {"Retry-After": "1"}
            unthrottled = counters["calls"] - counters["throttled"]
            every = plan.get("serverErrorEvery")
            if every and unthrottled % every == 0:
                counters["serverErrors"] += 1
                return plan.get("serverErrorStatus", 503), "ServiceUnavailable", {}
            return None


STATE = State()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    def do_GET(self):
        self.dispatch("GET")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")

    # --- plumbing ------------------------------------------------------------------------------

    def send(self, status, body=None, headers=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def base(self):
        return f"http://{self.headers.get('Host', '127.0.0.1')}"

    def dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        raw = self.body()
        try:
            if url.path.startswith("/_snapsentry/"):
                return self.send(*self.control(method, url.path, raw))
            if method == "POST" and url.path.endswith("/oauth2/v2.0/token"):
                return self.send(*self.token(url.path, raw))
            if method == "GET" and url.path == "/metadata/identity/oauth2/token":
                return self.send(*self.imds(query))
            if self.headers.get("Authorization") != f"Bearer {STATE.token}":
                return self.send(*arm_error(401, "AuthenticationFailed",
                                            "Authentication failed. The 'Authorization' header "
                                            "is missing or invalid."),
                                 {"WWW-Authenticate": 'Bearer authorization_uri="none"'})
            if "api-version" not in query:
                return self.send(*arm_error(400, "MissingApiVersionParameter",
                                            "The api-version query parameter (?api-version=) "
                                            "is required for all requests."))
            self.send(*self.arm(method, url.path, query, raw))
        except Exception as error:  # a bug in the fake: answer 500 and log it
            traceback.print_exc()
            self.send(*arm_error(500, "InternalServerError", repr(error)))

    def token(self, path, raw):
        form = dict(urllib.parse.parse_qsl(raw.decode()))
        fleet = STATE.fleet
        tenant = path.split("/")[1]
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if (fleet.tenant and tenant != fleet.tenant) or (
                fleet.client_id and form.get("client_id") != fleet.client_id):
            return 401, {"error": "unauthorized_client",
                         "error_description": "AADSTS700016: Application not found in the "
                                              "directory."}
        if "client_assertion" in form:
            refused = self.assertion_refused(form, path)
            if refused:
                return 401, {"error": "invalid_client", "error_description": refused}
        elif fleet.client_secret and form.get("client_secret") != fleet.client_secret:
            return 401, {"error": "invalid_client",
                         "error_description": "AADSTS7000215: Invalid client secret provided."}
        fault = STATE.fault_for("token.post")
        if fault:
            return fault[0], {"error": "temporarily_unavailable"}, fault[2]
        with STATE.lock:
            STATE.tokens_issued += 1
        return 200, {"token_type": "Bearer", "expires_in": 3600, "ext_expires_in": 3600,
                     "access_token": STATE.token}

    def assertion_refused(self, form, path):
        """Why Entra would refuse the client assertion of `form` (None: accepted)."""
        fleet = STATE.fleet
        assertion = form["client_assertion"]
        if form.get("client_assertion_type") != JWT_BEARER:
            return "AADSTS50027: client_assertion_type must be jwt-bearer."
        if fleet.federated_token is not None and assertion == fleet.federated_token:
            return None
        cert = fleet.certificate
        claims = cert and verify_rs256(assertion, cert["modulus"], cert.get("exponent", 65537))
        if not claims:
            return ("AADSTS700027: Client assertion failed signature validation."
                    if cert else "AADSTS70021: No matching federated identity record found.")
        client = form.get("client_id")
        if not (claims.get("iss") == claims.get("sub") == client
                and str(claims.get("aud", "")).endswith(path)
                and float(claims.get("exp", 0)) > time.time()):
            return "AADSTS700024: Client assertion is not within its valid time range or " \
                   "names another client or audience."
        return None

    def imds(self, query):
        """The managed identity token endpoint of the instance metadata service."""
        if self.headers.get("Metadata", "").lower() != "true":
            return 400, {"error": "invalid_request",
                         "error_description": "Required metadata header not specified"}
        if "api-version" not in query or not query.get("resource"):
            return 400, {"error": "invalid_request",
                         "error_description": "Required query variable 'resource' or "
                                              "'api-version' is missing"}
        wanted = STATE.fleet.managed_identity_client_id
        if wanted and query.get("client_id", wanted) != wanted:
            return 400, {"error": "invalid_request", "error_description": "Identity not found"}
        fault = STATE.fault_for("imds.get")
        if fault:
            return fault[0], {"error": "temporarily_unavailable"}, fault[2]
        with STATE.lock:
            STATE.tokens_issued += 1
        expires = int(time.time()) + 86399
        return 200, {"access_token": STATE.token, "expires_in": "86399",
                     "expires_on": str(expires), "not_before": str(expires - 86399),
                     "resource": query["resource"], "token_type": "Bearer",
                     "client_id": wanted or "00000000-0000-0000-0000-0000000000ad"}

    def control(self, method, path, raw):
        if path == "/_snapsentry/fleet" and method == "POST":
            fleet = Fleet(json.loads(raw))
            with STATE.lock:
                STATE.fleet = fleet
            return 200, {}
        if path == "/_snapsentry/state" and method == "GET":
            with STATE.lock:
                fleet = STATE.fleet
                snapshots = sorted(body["id"] for body in fleet.resources.values()
                                   if body["type"] == f"{COMPUTE}/snapshots")
                grants = sorted(fleet.resources[g]["id"] for g in fleet.grants)
                return 200, {"snapshots": snapshots, "activeGrants": len(grants),
                             "grants": grants, "grantsEver": fleet.grants_ever,
                             "tokensIssued": STATE.tokens_issued}
        if path == "/_snapsentry/faults":
            with STATE.lock:
                if method == "POST":
                    STATE.plan, STATE.counters = json.loads(raw), {}
                elif method == "DELETE":
                    STATE.plan, STATE.counters = {}, {}
                return 200, json.loads(json.dumps(STATE.counters))
        return 404, {"error": f"no control endpoint {method} {path}"}

    # --- ARM -----------------------------------------------------------------------------------

    def arm(self, method, path, query, raw):
        for pattern, kind in ROUTES:
            match = pattern.match(path)
            if match:
                break
        else:
            return arm_error(404, "InvalidResourceType", f"no route for {path}")
        groups = match.groupdict()
        if kind == "list" and method == "GET":
            operation = f"{groups['type']}.list"
        elif kind == "resource":
            operation = f"{groups['type']}.{method.lower()}"
        elif kind == "access":
            operation = f"snapshots.{groups['action']}"
        elif kind == "operation":
            operation = "operations.get"
        else:
            operation = f"{kind}.{method.lower()}"
        fault = STATE.fault_for(operation)
        if fault:
            status, code, headers = fault
            return status, {"error": {"code": code, "message": "injected by the fake"}}, headers
        with STATE.lock:
            fleet = STATE.fleet
            if groups.get("sub") and groups["sub"] not in fleet.subscriptions:
                return arm_error(404, "SubscriptionNotFound",
                                 f"The subscription '{groups['sub']}' could not be found.")
            if kind == "subscriptions":
                items = [{"id": f"/subscriptions/{s}", "subscriptionId": s, "displayName": n,
                          "state": "Enabled"} for s, n in fleet.subscriptions.items()]
                return self.page(items, path, query)
            if kind == "list" and method == "GET":
                return self.list(fleet, groups, path, query)
            if kind == "resource":
                return self.one(fleet, method, groups, path, raw)
            if kind == "access":
                return self.access(fleet, groups, path)
            if kind == "operation" and method == "GET":
                return self.operation(fleet, groups, query)
        return arm_error(405, "MethodNotAllowed", f"{method} {path}")

    def page(self, items, path, query):
        size = STATE.fleet.page_size
        start = int(query.get("$skiptoken", 0))
        body = {"value": items[start:start + size]}
        if start + size < len(items):
            rest = {k: v for k, v in query.items() if k != "$skiptoken"}
            rest["$skiptoken"] = str(start + size)
            body["nextLink"] = f"{self.base()}{path}?{urllib.parse.urlencode(rest)}"
        return 200, body

    def list(self, fleet, groups, path, query):
        rtype = f"{groups['provider']}/{groups['type']}".lower()
        prefix = "/subscriptions/"
        if groups.get("sub"):
            prefix += groups["sub"].lower() + "/resourcegroups/"
            if groups.get("rg"):
                prefix += groups["rg"].lower() + "/"
        items = [body for key, body in sorted(fleet.resources.items())
                 if key.startswith(prefix) and body["type"].lower() == rtype]
        expand = query.get("statusOnly") == "true" or query.get("$expand") == "instanceView"
        return self.page([self.public(body, expand) for body in items], path, query)

    @staticmethod
    def public(body, instance_view=False):
        """The ARM body of a stored resource: the fake's own keys (leading _) removed."""
        out = {k: v for k, v in body.items() if not k.startswith("_")}
        if instance_view and "_powerState" in body:
            power = body["_powerState"]
            out["properties"] = dict(out["properties"], instanceView={"statuses": [
                {"code": "ProvisioningState/succeeded", "level": "Info",
                 "displayStatus": "Provisioning succeeded"},
                {"code": f"PowerState/{power}", "level": "Info",
                 "displayStatus": f"VM {power}"},
            ]})
        return json.loads(json.dumps(out))

    def one(self, fleet, method, groups, path, raw):
        key = path.lower()
        body = fleet.resources.get(key)
        rtype = groups["type"].lower()
        if method == "PUT" and rtype == "snapshots":
            return self.create_snapshot(fleet, groups, json.loads(raw or b"{}"))
        if body is None:
            return arm_error(404, "ResourceNotFound",
                             f"The Resource '{groups['provider']}/{groups['type']}/"
                             f"{groups['name']}' under resource group '{groups['rg']}' "
                             "was not found.")
        if method == "GET":
            return 200, self.public(body)
        if method == "DELETE" and rtype == "snapshots":
            if key in fleet.grants:
                return arm_error(409, "OperationNotAllowed",
                                 "The snapshot has an active SAS; call endGetAccess first.")
            del fleet.resources[key]
            fleet.blobs.pop(key, None)
            return self.accepted(fleet, groups, None, body["location"])
        return arm_error(405, "MethodNotAllowed", f"{method} {path}")

    def create_snapshot(self, fleet, groups, request):
        properties = request.get("properties", {})
        creation = properties.get("creationData", {})
        source = creation.get("sourceResourceId", "")
        if creation.get("createOption") not in ("Copy", "CopyStart") or not source:
            return arm_error(400, "InvalidParameter",
                             "creationData.createOption must be Copy with a sourceResourceId.")
        if "location" not in request:
            return arm_error(400, "LocationRequired", "The location property is required.")
        source_key = ("/" + source.lstrip("/")).lower()
        source_body = fleet.resources.get(source_key)
        if source_body is None or source_key not in fleet.blobs:
            return arm_error(404, "NotFound", f"Resource {source} is not found.")
        sub, rg, name = groups["sub"], groups["rg"], groups["name"]
        size = source_body["properties"]["diskSizeGB"]
        snapshot_props = {
            "creationData": {"createOption": creation["createOption"],
                             "sourceResourceId": source_body["id"],
                             "sourceUniqueId": source_body["properties"]["uniqueId"]},
            "diskSizeGB": size,
            "diskSizeBytes": size * GIB,
            "incremental": bool(properties.get("incremental", False)),
            "uniqueId": str(uuid.uuid4()),
            "networkAccessPolicy": "AllowAll",
            "diskState": "Unattached",
            "timeCreated": now(),
            "provisioningState": "Updating",
        }
        if "osType" in source_body["properties"]:
            snapshot_props["osType"] = source_body["properties"]["osType"]
        body = self.add_snapshot(fleet, sub, rg, name, request["location"], snapshot_props,
                                 request.get("tags"))
        fleet.blobs[body["id"].lower()] = fleet.blobs[source_key]
        return self.accepted(fleet, groups, body, body["location"], resource_id=body["id"])

    @staticmethod
    def add_snapshot(fleet, sub, rg, name, location, properties, tags):
        return fleet.add(resource(sub, rg, COMPUTE, "snapshots", name, location, properties,
                                  tags, sku={"name": "Standard_LRS", "tier": "Standard"}))

    def accepted(self, fleet, groups, body, location, resource_id=None, output=None):
        """Starts an operation; answers 202 with its Azure-AsyncOperation and Location URLs."""
        op_id = str(uuid.uuid4())
        fleet.operations[op_id] = {"polls": 0, "resource": resource_id, "output": output,
                                   "start": now(), "done": None}
        loc = location.replace(" ", "").lower()
        url = (f"{self.base()}/subscriptions/{groups['sub']}/providers/{COMPUTE}/locations/"
               f"{loc}/operations/{op_id}")
        headers = {"Azure-AsyncOperation": f"{url}?api-version=2024-03-02",
                   "Location": f"{url}?monitor=true&api-version=2024-03-02",
                   "Retry-After": "0"}
        return 202, (self.public(body) if body else None), headers

    def access(self, fleet, groups, path):
        key = path.rsplit("/", 1)[0].lower()
        body = fleet.resources.get(key)
        if body is None or body["type"] != f"{COMPUTE}/snapshots":
            return arm_error(404, "ResourceNotFound", f"snapshot {groups['name']} not found")
        if groups["action"].lower() == "begingetaccess":
            if key not in fleet.grants:
                fleet.grants.add(key)
                fleet.grants_ever += 1
            body["properties"]["diskState"] = "ActiveSAS"
            output = {"accessSAS": fleet.blobs[key]}
        else:
            fleet.grants.discard(key)
            body["properties"]["diskState"] = "Unattached"
            output = None
        return self.accepted(fleet, groups, None, body["location"], output=output)

    def operation(self, fleet, groups, query):
        op = fleet.operations.get(groups["op"])
        if op is None:
            return arm_error(404, "NotFound", f"operation {groups['op']} not found")
        op["polls"] += 1
        if op["polls"] >= 2 and not op["done"]:
            op["done"] = now()
            target = fleet.resources.get((op["resource"] or "").lower())
            if target:
                target["properties"]["provisioningState"] = "Succeeded"
        if query.get("monitor") == "true":
            # The Location poll: 202 while running, then the operation's result.
            if not op["done"]:
                return 202, None, {"Retry-After": "0"}
            if op["output"]:
                return 200, op["output"]
            target = fleet.resources.get((op["resource"] or "").lower())
            return (200, self.public(target)) if target else (200, None)
        body = {"startTime": op["start"], "status": "Succeeded" if op["done"] else "InProgress",
                "name": groups["op"]}
        if op["done"]:
            body["endTime"] = op["done"]
            if op["output"]:
                body["properties"] = {"output": op["output"]}
        return 200, body


def main(handler=Handler, description=__doc__):
    """Serves `handler` (also the fake Compute Engine's) on the --port, writing the --port-file."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    temporary = args.port_file + ".tmp"
    with open(temporary, "w") as file:
        file.write(str(server.server_address[1]))
    os.replace(temporary, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
