//! PLACEHOLDER (to be replaced at merge by the network helper's module): serde models of the ARM
//! network bodies the exposure of a VM is computed from, and the lists to fetch for them.

use serde::Deserialize;

/// A network interface (`Microsoft.Network/networkInterfaces`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NetworkInterface {
    #[serde(default)]
    pub id: String,
}

/// A public IP address (`Microsoft.Network/publicIPAddresses`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct PublicIpAddress {
    #[serde(default)]
    pub id: String,
}

/// A network security group (`Microsoft.Network/networkSecurityGroups`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct NetworkSecurityGroup {
    #[serde(default)]
    pub id: String,
}

/// A virtual network (`Microsoft.Network/virtualNetworks`), for its subnets' NSGs.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct VirtualNetwork {
    #[serde(default)]
    pub id: String,
}

/// A load balancer (`Microsoft.Network/loadBalancers`), for its inbound NAT rules.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct LoadBalancer {
    #[serde(default)]
    pub id: String,
}

/// The lists to fetch per subscription scope: (resource type, api-version).
pub const NETWORK_LISTS: &[(&str, &str)] = &[
    ("Microsoft.Network/networkInterfaces", "2024-05-01"),
    ("Microsoft.Network/publicIPAddresses", "2024-05-01"),
    ("Microsoft.Network/networkSecurityGroups", "2024-05-01"),
    ("Microsoft.Network/virtualNetworks", "2024-05-01"),
    ("Microsoft.Network/loadBalancers", "2024-05-01"),
];
