"""moto's server on a loopback port, patched to behave like AWS where snapsentry's tests need it.

Why this exists: moto 5.2.5 keeps EBS direct-API blocks only for snapshots uploaded with
StartSnapshot/PutSnapshotBlock. Its EC2 volumes and snapshots hold no data, so a volume created from
such a snapshot, and a snapshot taken of that volume (what snapsentry's operator does before a scan),
list no blocks at all. It also reports the EBS block size in KiB (512) where AWS reports bytes
(524288), leaves GetSnapshotBlock's checksum headers out when the uploader gave none, and has no way to
make EBS misbehave. This wrapper patches exactly that and adds a small control API:

  POST   /_snapsentry/faults        {"getSnapshotBlock": {"throttleEvery": 3, "serverErrorEvery": 5,
                                     "serverErrorStatus": 503}} replaces the fault plan, zeroes counters
  GET    /_snapsentry/faults        counters per EBS API: {"getSnapshotBlock": {"calls": n,
                                     "throttled": n, "serverErrors": n}, "listSnapshotBlocks": ...}
  DELETE /_snapsentry/faults        no faults, counters zeroed
  POST   /_snapsentry/rds-addresses {"db-id": "host.example"} plants DescribeDBInstances addresses

Faults count the calls of one API: with throttleEvery=N the Nth, 2Nth, ... call since the plan was
set answers 400 RequestThrottledException (EBS's modelled throttling error, which botocore and the
Rust SDK classify as throttling); with serverErrorEvery=M the Mth, 2Mth, ... not throttled call
answers 500 InternalServerException (or serverErrorStatus). "calls" counts every call, faulted or not.

Usage: python snapsentry_moto.py --port-file FILE [--port 0]; the bound port is written to FILE once
the server accepts connections.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import sys
import threading

from moto.ebs import models as ebs_models
from moto.ebs import responses as ebs_responses
from moto.ec2.models import elastic_block_store as ec2_ebs
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from moto.rds import models as rds_models
from werkzeug.serving import make_server

AWS_BLOCK_SIZE = 512 * 1024
# AWS's VolumeId for snapshots made with StartSnapshot, which have no source volume.
NO_VOLUME_ID = "vol-ffffffff"


def _ebs_backend(ec2_backend):
    return ebs_models.ebs_backends[ec2_backend.account_id][ec2_backend.region_name]


def _blocks(volume):
    return getattr(volume, "snapsentry_blocks", {})


# --- EBS data behind volumes and snapshots ------------------------------------------------------

_ebs_snapshot_init = ebs_models.EBSSnapshot.__init__


def _patched_ebs_snapshot_init(self, account_id, snapshot):
    _ebs_snapshot_init(self, account_id, snapshot)
    self.block_size = AWS_BLOCK_SIZE


_start_snapshot = ebs_models.EBSBackend.start_snapshot


def _patched_start_snapshot(self, volume_size, tags, description):
    ebs_snapshot = _start_snapshot(self, volume_size, tags, description)
    # moto backs the snapshot with a real EC2 volume that DescribeVolumes would list; AWS has none.
    # Keep it only as the snapshot's hidden source, sharing the blocks being uploaded.
    ec2_snapshot = self.ec2_backend.snapshots[ebs_snapshot.snapshot_id]
    volume = self.ec2_backend.volumes.pop(ec2_snapshot.volume.id)
    volume.id = NO_VOLUME_ID
    volume.snapsentry_blocks = ebs_snapshot.blocks
    return ebs_snapshot


_create_volume = ec2_ebs.EBSBackend.create_volume


def _patched_create_volume(self, *args, **kwargs):
    volume = _create_volume(self, *args, **kwargs)
    if volume.snapshot_id:
        source = _ebs_backend(self).snapshots.get(volume.snapshot_id)
        volume.snapsentry_blocks = dict(source.blocks) if source else {}
    return volume


_create_snapshot = ec2_ebs.EBSBackend.create_snapshot


def _patched_create_snapshot(self, volume_id, description, owner_id=None, from_ami=None):
    # CreateSnapshot, CreateSnapshots (per instance) and CopySnapshot all end here.
    snapshot = _create_snapshot(self, volume_id, description, owner_id=owner_id, from_ami=from_ami)
    ebs_snapshot = ebs_models.EBSSnapshot(account_id=self.account_id, snapshot=snapshot)
    ebs_snapshot.blocks = dict(_blocks(snapshot.volume))
    ebs_snapshot.status = "completed"
    _ebs_backend(self).snapshots[snapshot.id] = ebs_snapshot
    return snapshot


_get_snapshot_block = ebs_models.EBSBackend.get_snapshot_block


def _patched_get_snapshot_block(self, snapshot_id, block_index):
    block = _get_snapshot_block(self, snapshot_id, int(block_index))
    if not block.checksum:
        block.checksum = base64.b64encode(hashlib.sha256(block.block_data).digest()).decode()
        block.checksum_algorithm = "SHA256"
    if block.data_length is None:
        block.data_length = len(block.block_data)
    return block


_put_snapshot_block = ebs_models.EBSBackend.put_snapshot_block


def _patched_put_snapshot_block(self, snapshot_id, block_index, *args, **kwargs):
    return _put_snapshot_block(self, snapshot_id, int(block_index), *args, **kwargs)


def _patched_list_snapshot_blocks(self):
    """ListSnapshotBlocks in block order, with AWS's paging (moto returns one unordered page)."""
    snapshot = self.ebs_backend.list_snapshot_blocks(snapshot_id=self._get_param("SnapshotId"))
    token = self._get_param("NextToken")
    start = int(token) if token else int(self._get_param("StartingBlockIndex") or 0)
    limit = int(self._get_param("MaxResults") or 10000)
    indexes = sorted(i for i in snapshot.blocks if i >= start)
    result = {
        "Blocks": [
            {"BlockIndex": i, "BlockToken": snapshot.blocks[i].block_token}
            for i in indexes[:limit]
        ],
        "VolumeSize": snapshot.volume_size,
        "BlockSize": snapshot.block_size,
    }
    if len(indexes) > limit:
        result["NextToken"] = str(indexes[limit])
    return ebs_responses.ActionResult(result)


ebs_models.EBSSnapshot.__init__ = _patched_ebs_snapshot_init
ebs_models.EBSBackend.start_snapshot = _patched_start_snapshot
ebs_models.EBSBackend.get_snapshot_block = _patched_get_snapshot_block
ebs_models.EBSBackend.put_snapshot_block = _patched_put_snapshot_block
ebs_responses.EBSResponse.list_snapshot_blocks = _patched_list_snapshot_blocks
ec2_ebs.EBSBackend.create_volume = _patched_create_volume
ec2_ebs.EBSBackend.create_snapshot = _patched_create_snapshot

# --- Planted RDS addresses ---------------------------------------------------------------------

RDS_ADDRESSES = {}
_rds_address = rds_models.DBInstance.address


def _patched_rds_address(self):
    return RDS_ADDRESSES.get(self.db_instance_identifier) or _rds_address.fget(self)


rds_models.DBInstance.address = property(_patched_rds_address)

# --- Faults and counters -----------------------------------------------------------------------

# (API name, HTTP method, path) of the EBS direct APIs that are counted and can be faulted.
EBS_APIS = [
    ("getSnapshotBlock", "GET", re.compile(r"^/snapshots/[^/]+/blocks/\d+$")),
    ("listSnapshotBlocks", "GET", re.compile(r"^/snapshots/[^/]+/blocks$")),
    ("listChangedBlocks", "GET", re.compile(r"^/snapshots/[^/]+/changedblocks$")),
    ("putSnapshotBlock", "PUT", re.compile(r"^/snapshots/[^/]+/blocks/\d+$")),
]


class Faults:
    """The fault plan and the per-API counters, shared by the server's request threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.plan = {}
        self.counters = {}

    def set(self, plan):
        with self.lock:
            self.plan = plan
            self.counters = {}

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.counters))

    def fault_for(self, api):
        """Counts one call of `api`; returns (status, error code) when it must fail, else None."""
        with self.lock:
            counters = self.counters.setdefault(
                api, {"calls": 0, "throttled": 0, "serverErrors": 0}
            )
            counters["calls"] += 1
            plan = self.plan.get(api, {})
            throttle_every = int(plan.get("throttleEvery") or 0)
            error_every = int(plan.get("serverErrorEvery") or 0)
            if throttle_every and counters["calls"] % throttle_every == 0:
                counters["throttled"] += 1
                return 400, "RequestThrottledException"
            unthrottled = counters["calls"] - counters["throttled"]
            if error_every and unthrottled % error_every == 0:
                counters["serverErrors"] += 1
                return int(plan.get("serverErrorStatus") or 500), "InternalServerException"
            return None


def _json_response(start_response, status, body, headers=()):
    data = json.dumps(body).encode()
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error",
              503: "Service Unavailable"}.get(status, "Error")
    start_response(
        f"{status} {reason}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers],
    )
    return [data]


class SnapsentryApp:
    """WSGI middleware in front of moto: the control API, then counting and faults for EBS."""

    def __init__(self, moto_app):
        self.moto_app = moto_app
        self.faults = Faults()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path.startswith("/_snapsentry/"):
            return self.control(path, method, environ, start_response)
        if "/ebs/aws4_request" in environ.get("HTTP_AUTHORIZATION", ""):
            for api, api_method, pattern in EBS_APIS:
                if method == api_method and pattern.match(path):
                    fault = self.faults.fault_for(api)
                    if fault:
                        status, code = fault
                        body = {"Message": f"snapsentry fault injection: {code}"}
                        if code == "RequestThrottledException":
                            body["Reason"] = "ACCOUNT_THROTTLED"
                        return _json_response(
                            start_response, status, body, [("x-amzn-ErrorType", code)]
                        )
                    break
        return self.moto_app(environ, start_response)

    def control(self, path, method, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            body = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
        except ValueError as error:
            return _json_response(start_response, 400, {"error": f"bad JSON: {error}"})
        if path == "/_snapsentry/faults":
            if method == "GET":
                return _json_response(start_response, 200, self.faults.snapshot())
            if method in ("POST", "PUT"):
                self.faults.set(body)
                return _json_response(start_response, 200, {})
            if method == "DELETE":
                self.faults.set({})
                return _json_response(start_response, 200, {})
        if path == "/_snapsentry/rds-addresses" and method in ("POST", "PUT"):
            RDS_ADDRESSES.update(body)
            return _json_response(start_response, 200, RDS_ADDRESSES)
        return _json_response(start_response, 404, {"error": f"no {method} {path}"})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", required=True, help="where to write the bound port")
    args = parser.parse_args()

    app = SnapsentryApp(DomainDispatcherApplication(create_backend_app))
    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    port = server.server_port
    os.environ["MOTO_PORT"] = str(port)
    temporary = f"{args.port_file}.tmp"
    with open(temporary, "w") as file:
        file.write(f"{port}\n")
    os.replace(temporary, args.port_file)
    print(f"snapsentry moto listening on {args.host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
