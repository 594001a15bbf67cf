"""Fills a (patched) moto server with what snapsentry's AWS tests scan: EBS snapshots holding real disk
images, instances with volumes made from them, security groups, RDS instances and S3 buckets.

  fleet.py upload-snapshot --endpoint E --region R --image DISK(.raw|.qcow2)
      Uploads the image through the EBS direct write API (StartSnapshot, PutSnapshotBlock for every
      non-zero 512 KiB block with its SHA256, CompleteSnapshot); prints the snapshot id.

  fleet.py fleet --endpoint E --region R --spec SPEC.json   (or --spec - for standard input)
      SPEC = {"machines": [{"name": "web-1", "platform": "linux"|"windows", "images": [ROOT, DATA...],
                            "tags": {"env": "prod"}, "exposed": true, "instanceType": "t3.micro"}],
              "rds": [{"id": "orders", "engine": "postgres", "address": "planted.host.example"}],
              "buckets": ["name", ...]}
      One RunInstances per machine, its block-device mappings made from the images' snapshots (root
      first, on the AMI's root device; then /dev/sdf, /dev/sdg, ...), so no extra empty root volume
      is created; a machine without images gets moto's empty 8 GiB root. Exposed machines land in
      the default (public) subnet, get a public IP and the security group open to 0.0.0.0/0 on port
      22; the others a private subnet, no public IP and a group open to the VPC's CIDR only. Every
      instance and volume is tagged Name=<name> plus "tags". RDS "address" plants the endpoint
      address (moto's own is <id>.aaaaaaaaaa.<region>.rds.amazonaws.com). Prints JSON:
      {"vpcId", "securityGroups": {"open", "closed"},
       "machines": {NAME: {"instanceId", "securityGroupId", "subnetId", "publicIp", "privateIp",
                           "platform", "volumes": [{"device", "volumeId", "snapshotId", "image", "root"}]}},
       "rds": {ID: {"address", "port", "arn"}}, "buckets": [NAME...]}
"""

import argparse
import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import urllib.request

import boto3

BLOCK_SIZE = 512 * 1024
GIB = 1024**3
QCOW2_MAGIC = b"QFI\xfb"
# In the default VPC (172.31.0.0/16), past the default subnets; new subnets map no public IPs.
PRIVATE_CIDR = "172.31.192.0/20"
EXTRA_DEVICES = [f"/dev/sd{letter}" for letter in "fghijklmnop"]


def client(args, service):
    return boto3.client(
        service,
        endpoint_url=args.endpoint,
        region_name=args.region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )


def upload_snapshot(args, image, description=None):
    with open(image, "rb") as file:
        is_qcow2 = file.read(4) == QCOW2_MAGIC
    if is_qcow2:
        with tempfile.TemporaryDirectory(prefix="snapsentry-fleet-") as scratch:
            raw = os.path.join(scratch, "disk.raw")
            subprocess.run(["qemu-img", "convert", "-O", "raw", image, raw], check=True)
            return upload_raw(args, raw, description or os.path.basename(image))
    return upload_raw(args, image, description or os.path.basename(image))


def upload_raw(args, image, description):
    ebs = client(args, "ebs")
    size = os.path.getsize(image)
    snapshot_id = ebs.start_snapshot(
        VolumeSize=max(1, -(-size // GIB)), Description=description
    )["SnapshotId"]
    written = 0
    zero = bytes(BLOCK_SIZE)
    with open(image, "rb") as file:
        index = 0
        while block := file.read(BLOCK_SIZE):
            # EBS blocks are always whole; a short tail reads as zeros on the volume.
            block = block.ljust(BLOCK_SIZE, b"\0")
            if block != zero:
                ebs.put_snapshot_block(
                    SnapshotId=snapshot_id,
                    BlockIndex=index,
                    BlockData=block,
                    DataLength=BLOCK_SIZE,
                    Checksum=base64.b64encode(hashlib.sha256(block).digest()).decode(),
                    ChecksumAlgorithm="SHA256",
                )
                written += 1
            index += 1
    ebs.complete_snapshot(SnapshotId=snapshot_id, ChangedBlocksCount=written)
    return snapshot_id


def control(args, path, body):
    request = urllib.request.Request(
        args.endpoint + path,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        response.read()


def ami_for(ec2, platform):
    images = ec2.describe_images(Owners=["amazon"])["Images"]
    for image in images:
        if (image.get("Platform") == "windows") == (platform == "windows"):
            return image
    raise SystemExit(f"moto has no {platform} AMI")


def subnets_of(ec2, vpc):
    """The default public subnet of the first zone, and a private one beside it (created once)."""
    subnets = [s for s in ec2.describe_subnets()["Subnets"] if s["VpcId"] == vpc["VpcId"]]
    public = min(
        (s for s in subnets if s.get("DefaultForAz")), key=lambda s: s["AvailabilityZone"]
    )
    private = [s for s in subnets if s["CidrBlock"] == PRIVATE_CIDR]
    if private:
        return public["SubnetId"], private[0]["SubnetId"]
    private = ec2.create_subnet(
        VpcId=vpc["VpcId"], CidrBlock=PRIVATE_CIDR, AvailabilityZone=public["AvailabilityZone"]
    )["Subnet"]
    return public["SubnetId"], private["SubnetId"]


def security_groups(ec2, vpc):
    """The open and the closed group, created on the first call (fleet may run twice per server)."""
    groups = []
    wanted = (("snapsentry-open-ssh", "0.0.0.0/0"), ("snapsentry-internal-ssh", vpc["CidrBlock"]))
    for name, cidr in wanted:
        filters = [
            {"Name": "group-name", "Values": [name]},
            {"Name": "vpc-id", "Values": [vpc["VpcId"]]},
        ]
        existing = ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
        if existing:
            groups.append(existing[0]["GroupId"])
            continue
        group = ec2.create_security_group(
            GroupName=name, Description=f"ssh from {cidr}", VpcId=vpc["VpcId"]
        )["GroupId"]
        ec2.authorize_security_group_ingress(
            GroupId=group,
            IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": cidr}]}
            ],
        )
        groups.append(group)
    return groups


def create_machine(args, ec2, machine, subnets, groups):
    platform = machine.get("platform", "linux")
    ami = ami_for(ec2, platform)
    images = machine.get("images", [])
    if len(images) > len(EXTRA_DEVICES) + 1:
        raise SystemExit(f"machine {machine['name']}: too many images")
    devices = [ami["RootDeviceName"], *EXTRA_DEVICES]
    snapshots = {}
    mappings = []
    for device, image in zip(devices, images):
        snapshot_id = upload_snapshot(args, image, f"{machine['name']} {device}")
        snapshots[device] = (snapshot_id, image)
        mappings.append(
            {"DeviceName": device, "Ebs": {"SnapshotId": snapshot_id, "DeleteOnTermination": True}}
        )
    exposed = bool(machine.get("exposed", False))
    group = groups[0] if exposed else groups[1]
    tags = [{"Key": "Name", "Value": machine["name"]}]
    tags += [{"Key": key, "Value": str(value)} for key, value in machine.get("tags", {}).items()]
    request = {
        "ImageId": ami["ImageId"],
        "InstanceType": machine.get("instanceType", "t3.micro"),
        "MinCount": 1,
        "MaxCount": 1,
        "SubnetId": subnets[0] if exposed else subnets[1],
        "SecurityGroupIds": [group],
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
    }
    if mappings:
        request["BlockDeviceMappings"] = mappings
    instance = ec2.run_instances(**request)["Instances"][0]
    instance_id = instance["InstanceId"]
    described = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    volumes = []
    for mapping in described.get("BlockDeviceMappings", []):
        snapshot_id, image = snapshots.get(mapping["DeviceName"], (None, None))
        volumes.append(
            {
                "device": mapping["DeviceName"],
                "volumeId": mapping["Ebs"]["VolumeId"],
                "snapshotId": snapshot_id,
                "image": image,
                "root": mapping["DeviceName"] == described.get("RootDeviceName"),
            }
        )
    volumes.sort(key=lambda volume: (not volume["root"], volume["device"]))
    return {
        "instanceId": instance_id,
        "platform": platform,
        "securityGroupId": group,
        "subnetId": described["SubnetId"],
        "publicIp": described.get("PublicIpAddress"),
        "privateIp": described.get("PrivateIpAddress"),
        "volumes": volumes,
    }


def create_rds(args, rds, spec):
    instance = rds.create_db_instance(
        DBInstanceIdentifier=spec["id"],
        Engine=spec.get("engine", "postgres"),
        DBInstanceClass=spec.get("instanceClass", "db.t3.micro"),
        AllocatedStorage=int(spec.get("allocatedStorage", 20)),
        MasterUsername="snapsentry",
        # Never printed: the fleet's output holds ids and addresses only.
        MasterUserPassword=secrets.token_urlsafe(18),
        PubliclyAccessible=bool(spec.get("public", False)),
    )["DBInstance"]
    if spec.get("address"):
        control(args, "/_snapsentry/rds-addresses", {spec["id"]: spec["address"]})
    described = rds.describe_db_instances(DBInstanceIdentifier=spec["id"])["DBInstances"][0]
    return {
        "address": described["Endpoint"]["Address"],
        "port": described["Endpoint"]["Port"],
        "arn": instance["DBInstanceArn"],
    }


def create_fleet(args, spec):
    ec2 = client(args, "ec2")
    vpc = next(v for v in ec2.describe_vpcs()["Vpcs"] if v.get("IsDefault"))
    subnets = subnets_of(ec2, vpc)
    groups = security_groups(ec2, vpc)
    result = {
        "vpcId": vpc["VpcId"],
        "securityGroups": {"open": groups[0], "closed": groups[1]},
        "machines": {},
        "rds": {},
        "buckets": [],
    }
    for machine in spec.get("machines", []):
        result["machines"][machine["name"]] = create_machine(args, ec2, machine, subnets, groups)
    rds = client(args, "rds")
    for database in spec.get("rds", []):
        result["rds"][database["id"]] = create_rds(args, rds, database)
    s3 = client(args, "s3")
    for bucket in spec.get("buckets", []):
        name = bucket if isinstance(bucket, str) else bucket["name"]
        s3.create_bucket(Bucket=name)
        result["buckets"].append(name)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    upload = commands.add_parser("upload-snapshot")
    upload.add_argument("--image", required=True)
    fleet = commands.add_parser("fleet")
    fleet.add_argument("--spec", required=True, help="a JSON file, or - for standard input")
    for command in (upload, fleet):
        command.add_argument("--endpoint", required=True)
        command.add_argument("--region", default="us-east-1")
    args = parser.parse_args()

    if args.command == "upload-snapshot":
        print(upload_snapshot(args, args.image))
    else:
        if args.spec == "-":
            spec = json.load(sys.stdin)
        else:
            with open(args.spec) as file:
                spec = json.load(file)
        json.dump(create_fleet(args, spec), sys.stdout, indent=2)
        print()


if __name__ == "__main__":
    main()
