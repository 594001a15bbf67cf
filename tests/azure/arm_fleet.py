"""The state of the fake ARM (tests/azure/fake_arm.py): a fleet spec turned into ARM resource bodies.

A fleet spec (documented on FakeArm::load_fleet in tests/src/fake_arm.rs) names subscriptions,
resource groups and in them VMs (OS type, power state, tags, managed OS and data disks each with the
Azurite SAS URL of its page blob, or an unmanaged VHD; NICs with private and public IPs and NSGs on
the NIC or its subnet), NSGs with rules, load balancers with inbound NAT rules, and data services.
Fleet builds the resource bodies ARM would list, in the documented shapes, and keeps the snapshots,
long-running operations and SAS grants the fake's requests add.
"""

import uuid
from datetime import datetime, timezone

COMPUTE = "Microsoft.Compute"
NETWORK = "Microsoft.Network"
GIB = 1024**3

# Fleet spec key -> (provider, resource type) of the listed data services.
SERVICES = {
    "storageAccounts": ("Microsoft.Storage", "storageAccounts"),
    "sqlServers": ("Microsoft.Sql", "servers"),
    "postgresFlexibleServers": ("Microsoft.DBforPostgreSQL", "flexibleServers"),
    "mysqlFlexibleServers": ("Microsoft.DBforMySQL", "flexibleServers"),
    "cosmosAccounts": ("Microsoft.DocumentDB", "databaseAccounts"),
    "keyVaults": ("Microsoft.KeyVault", "vaults"),
}


def now():
    return datetime.now(timezone.utc).isoformat()


def rid(sub, rg, provider, rtype, name):
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{provider}/{rtype}/{name}"


def resource(sub, rg, provider, rtype, name, location, properties, tags=None, **extra):
    body = {
        "id": rid(sub, rg, provider, rtype, name),
        "name": name,
        "type": f"{provider}/{rtype}",
        "location": location,
        "tags": dict(tags or {}),
        "properties": properties,
    }
    body.update(extra)
    return body


class Fleet:
    """The resources of a fleet spec, as ARM bodies by lower-cased id, plus snapshots and grants."""

    def __init__(self, spec):
        self.page_size = int(spec.get("pageSize", 100))
        self.tenant = spec.get("tenant")
        self.client_id = spec.get("clientId")
        self.client_secret = spec.get("clientSecret")
        self.federated_token = spec.get("federatedToken")
        self.certificate = spec.get("certificate")  # {"modulus": hex, "exponent": int}
        self.managed_identity_client_id = spec.get("managedIdentityClientId")
        self.subscriptions = {}
        self.resources = {}  # lower-cased id -> body
        self.blobs = {}  # lower-cased disk or snapshot id -> SAS URL of its page blob
        self.operations = {}  # id -> {"polls", "status", "output", "done"}
        self.grants = set()  # lower-cased snapshot ids with an active SAS
        self.grants_ever = 0
        for sub, sub_spec in spec.get("subscriptions", {}).items():
            self.subscriptions[sub] = sub_spec.get("displayName", sub)
            for rg, rg_spec in sub_spec.get("resourceGroups", {}).items():
                self._load_group(sub, rg, rg_spec)

    def add(self, body):
        self.resources[body["id"].lower()] = body
        return body

    def _load_group(self, sub, rg, spec):
        location = spec.get("location", "eastus")
        for nsg in spec.get("nsgs", []):
            self.add(self._nsg(sub, rg, location, nsg))
        for vm in spec.get("vms", []):
            self._load_vm(sub, rg, vm.get("location", location), vm)
        for lb in spec.get("loadBalancers", []):
            self.add(self._load_balancer(sub, rg, location, lb))
        for key, (provider, rtype) in SERVICES.items():
            for service in spec.get(key, []):
                properties = dict(service.get("properties", {}))
                self.add(resource(sub, rg, provider, rtype, service["name"],
                                  service.get("location", location), properties,
                                  service.get("tags"), **service.get("extra", {})))

    def _nsg(self, sub, rg, location, spec):
        nsg_id = rid(sub, rg, NETWORK, "networkSecurityGroups", spec["name"])
        rules = []
        for i, rule in enumerate(spec.get("rules", [])):
            rules.append({
                "name": rule["name"],
                "id": f"{nsg_id}/securityRules/{rule['name']}",
                "properties": {
                    "provisioningState": "Succeeded",
                    "protocol": rule.get("protocol", "Tcp"),
                    "sourcePortRange": "*",
                    "destinationPortRange": str(rule.get("port", "*")),
                    "sourceAddressPrefix": rule.get("source", "*"),
                    "destinationAddressPrefix": "*",
                    "access": rule.get("access", "Allow"),
                    "priority": rule.get("priority", 100 + i),
                    "direction": rule.get("direction", "Inbound"),
                },
            })
        return resource(sub, rg, NETWORK, "networkSecurityGroups", spec["name"], location,
                        {"provisioningState": "Succeeded", "securityRules": rules,
                         "defaultSecurityRules": []}, spec.get("tags"))

    def _disk(self, sub, rg, location, spec, vm_id, os_type=None):
        disk_id = rid(sub, rg, COMPUTE, "disks", spec["name"])
        size = int(spec.get("sizeGB", 1))
        properties = {
            "creationData": {"createOption": "Empty"},
            "diskSizeGB": size,
            "diskSizeBytes": size * GIB,
            "uniqueId": str(uuid.uuid5(uuid.NAMESPACE_URL, disk_id)),
            "provisioningState": "Succeeded",
            "diskState": "Attached",
            "timeCreated": now(),
        }
        if os_type:
            properties["osType"] = os_type
        self.add(resource(sub, rg, COMPUTE, "disks", spec["name"], location, properties,
                          spec.get("tags"), managedBy=vm_id,
                          sku={"name": "Premium_LRS", "tier": "Premium"}))
        self.blobs[disk_id.lower()] = spec["sas"]
        return disk_id, size

    def _load_vm(self, sub, rg, location, spec):
        name = spec["name"]
        vm_id = rid(sub, rg, COMPUTE, "virtualMachines", name)
        os_type = spec.get("osType", "Linux")
        os_spec = spec.get("osDisk")
        if os_spec and "vhd" in os_spec:
            os_disk = {"osType": os_type, "name": os_spec["name"], "createOption": "FromImage",
                       "vhd": {"uri": os_spec["vhd"]}, "caching": "ReadWrite",
                       "diskSizeGB": int(os_spec.get("sizeGB", 30))}
        else:
            os_spec = os_spec or {"name": f"{name}-os", "sas": ""}
            disk_id, size = self._disk(sub, rg, location, os_spec, vm_id, os_type)
            os_disk = {"osType": os_type, "name": os_spec["name"], "createOption": "FromImage",
                       "caching": "ReadWrite", "diskSizeGB": size,
                       "managedDisk": {"id": disk_id, "storageAccountType": "Premium_LRS"}}
        data_disks = []
        for lun, data in enumerate(spec.get("dataDisks", [])):
            disk_id, size = self._disk(sub, rg, location, data, vm_id)
            data_disks.append({"lun": lun, "name": data["name"], "createOption": "Attach",
                               "caching": "None", "diskSizeGB": size,
                               "managedDisk": {"id": disk_id,
                                               "storageAccountType": "Premium_LRS"}})
        nics = [self._load_nic(sub, rg, location, nic, vm_id) for nic in spec.get("nics", [])]
        config = "windowsConfiguration" if os_type == "Windows" else "linuxConfiguration"
        properties = {
            "vmId": str(uuid.uuid5(uuid.NAMESPACE_URL, vm_id)),
            "hardwareProfile": {"vmSize": spec.get("size", "Standard_B2s")},
            "storageProfile": {"osDisk": os_disk, "dataDisks": data_disks},
            "osProfile": {"computerName": name, "adminUsername": "azureuser", config: {},
                          "secrets": [], "allowExtensionOperations": True},
            "networkProfile": {"networkInterfaces": [
                {"id": nic_id, "properties": {"primary": i == 0}} for i, nic_id in enumerate(nics)
            ]},
            "provisioningState": "Succeeded",
        }
        body = self.add(resource(sub, rg, COMPUTE, "virtualMachines", name, location, properties,
                                 spec.get("tags")))
        body["_powerState"] = spec.get("powerState", "running")

    def _load_nic(self, sub, rg, location, spec, vm_id):
        nic_id = rid(sub, rg, NETWORK, "networkInterfaces", spec["name"])
        vnet = spec.get("vnet", f"{rg}-vnet")
        subnet_name = spec.get("subnet", "default")
        subnet_id = rid(sub, rg, NETWORK, "virtualNetworks", vnet) + f"/subnets/{subnet_name}"
        ip_config = {"provisioningState": "Succeeded",
                     "privateIPAddress": spec.get("privateIp", "10.0.0.4"),
                     "privateIPAllocationMethod": "Dynamic",
                     "subnet": {"id": subnet_id}, "primary": True,
                     "privateIPAddressVersion": "IPv4"}
        public = spec.get("publicIp")
        if public:
            ip_id = rid(sub, rg, NETWORK, "publicIPAddresses", public["name"])
            ip_config["publicIPAddress"] = {"id": ip_id}
            self.add(resource(sub, rg, NETWORK, "publicIPAddresses", public["name"], location, {
                "provisioningState": "Succeeded",
                "ipAddress": public["ip"],
                "publicIPAddressVersion": "IPv4",
                "publicIPAllocationMethod": "Static",
                "idleTimeoutInMinutes": 4,
                "ipConfiguration": {"id": f"{nic_id}/ipConfigurations/ipconfig1"},
            }, sku={"name": "Standard", "tier": "Regional"}))
        properties = {
            "provisioningState": "Succeeded",
            "ipConfigurations": [{"name": "ipconfig1", "id": f"{nic_id}/ipConfigurations/ipconfig1",
                                  "properties": ip_config}],
            "primary": True,
            "enableIPForwarding": False,
            "virtualMachine": {"id": vm_id},
        }
        if spec.get("nsg"):
            properties["networkSecurityGroup"] = {
                "id": rid(sub, rg, NETWORK, "networkSecurityGroups", spec["nsg"])}
        if spec.get("subnetNsg"):
            # The subnet's NSG: ARM lists it on the virtual network; the fake keeps the subnet id
            # resolvable by adding the virtual network with that subnet.
            self._add_subnet(sub, rg, location, vnet, subnet_name, spec["subnetNsg"])
        self.add(resource(sub, rg, NETWORK, "networkInterfaces", spec["name"], location,
                          properties))
        return nic_id

    def _add_subnet(self, sub, rg, location, vnet, subnet, nsg):
        vnet_id = rid(sub, rg, NETWORK, "virtualNetworks", vnet)
        body = self.resources.get(vnet_id.lower()) or self.add(resource(
            sub, rg, NETWORK, "virtualNetworks", vnet, location,
            {"provisioningState": "Succeeded", "subnets": []}))
        body["properties"]["subnets"].append({
            "name": subnet, "id": f"{vnet_id}/subnets/{subnet}",
            "properties": {"provisioningState": "Succeeded", "networkSecurityGroup": {
                "id": rid(sub, rg, NETWORK, "networkSecurityGroups", nsg)}},
        })

    def _load_balancer(self, sub, rg, location, spec):
        lb_id = rid(sub, rg, NETWORK, "loadBalancers", spec["name"])
        frontend = f"{lb_id}/frontendIPConfigurations/frontend"
        front_props = {"provisioningState": "Succeeded"}
        if spec.get("publicIp"):
            front_props["publicIPAddress"] = {
                "id": rid(sub, rg, NETWORK, "publicIPAddresses", spec["publicIp"])}
        rules = []
        for rule in spec.get("inboundNatRules", []):
            nic_id = rid(sub, rg, NETWORK, "networkInterfaces", rule["nic"])
            rules.append({"name": rule["name"], "id": f"{lb_id}/inboundNatRules/{rule['name']}",
                          "properties": {
                              "provisioningState": "Succeeded",
                              "frontendIPConfiguration": {"id": frontend},
                              "frontendPort": rule["frontendPort"],
                              "backendPort": rule["backendPort"],
                              "protocol": rule.get("protocol", "Tcp"),
                              "backendIPConfiguration": {
                                  "id": f"{nic_id}/ipConfigurations/ipconfig1"},
                          }})
        return resource(sub, rg, NETWORK, "loadBalancers", spec["name"], location, {
            "provisioningState": "Succeeded",
            "frontendIPConfigurations": [{"name": "frontend", "id": frontend,
                                          "properties": front_props}],
            "inboundNatRules": rules,
        }, spec.get("tags"), sku={"name": "Standard"})
