//! The Azure network resources that decide a VM's internet exposure, as ARM lists them
//! (`GET /subscriptions/{id}/providers/Microsoft.Network/{type}?api-version=…`, a `value` array
//! per page): network interfaces, public IP addresses, network security groups, virtual networks
//! (for the NSGs of subnets) and load balancers (for inbound NAT and load-balancing rules).
//!
//! Only the fields exposure needs are modelled; everything else in the bodies is ignored and a
//! missing field takes its default, so a sparse or newer body still parses. ARM resource ids are
//! kept as written: their casing varies between resources, so they are compared
//! case-insensitively (see [`same_id`]).

use serde::Deserialize;

/// What the provider lists in each subscription to build a
/// [`NetworkView`](super::exposure::NetworkView): (resource provider, resource type,
/// api-version). Each is `GET /subscriptions/{id}/providers/{provider}/{type}?api-version={v}`,
/// following `nextLink` until the list ends.
pub const NETWORK_LISTS: [(&str, &str, &str); 5] = [
    (
        "Microsoft.Network",
        "networkInterfaces",
        NETWORK_API_VERSION,
    ),
    (
        "Microsoft.Network",
        "publicIPAddresses",
        NETWORK_API_VERSION,
    ),
    (
        "Microsoft.Network",
        "networkSecurityGroups",
        NETWORK_API_VERSION,
    ),
    ("Microsoft.Network", "virtualNetworks", NETWORK_API_VERSION),
    ("Microsoft.Network", "loadBalancers", NETWORK_API_VERSION),
];

/// The `Microsoft.Network` api-version the lists are asked in.
pub const NETWORK_API_VERSION: &str = "2024-05-01";

/// Whether two ARM resource ids name the same resource (ARM ids are case-insensitive).
pub fn same_id(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The last segment of a resource id: its name (`…/networkInterfaces/web-nic` → `web-nic`).
pub fn name_of(id: &str) -> &str {
    id.trim_end_matches('/').rsplit('/').next().unwrap_or(id)
}

/// A resource's `name`, else the last segment of its id.
pub fn display_name<'a>(name: &'a str, id: &'a str) -> &'a str {
    if name.is_empty() { name_of(id) } else { name }
}

/// A reference to another resource: `{"id": "…"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SubResource {
    pub id: String,
}

/// `sku` of a public IP address or a load balancer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Sku {
    /// `Basic` or `Standard`.
    pub name: String,
}

/// A network interface (`Microsoft.Network/networkInterfaces`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct NetworkInterface {
    pub id: String,
    pub name: String,
    pub properties: NetworkInterfaceProperties,
}

/// `properties` of a [`NetworkInterface`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NetworkInterfaceProperties {
    pub ip_configurations: Vec<IpConfiguration>,
    /// The NSG on the NIC itself.
    pub network_security_group: Option<SubResource>,
    /// The VM the NIC is attached to.
    pub virtual_machine: Option<SubResource>,
}

/// One IP configuration of a NIC.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct IpConfiguration {
    pub id: String,
    pub name: String,
    pub properties: IpConfigurationProperties,
}

/// `properties` of an [`IpConfiguration`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct IpConfigurationProperties {
    #[serde(rename = "publicIPAddress")]
    pub public_ip_address: Option<SubResource>,
    pub subnet: Option<SubResource>,
    #[serde(rename = "privateIPAddress")]
    pub private_ip_address: Option<String>,
    /// Inbound NAT rules of load balancers that forward to this configuration.
    #[serde(rename = "loadBalancerInboundNatRules")]
    pub load_balancer_inbound_nat_rules: Vec<SubResource>,
    /// Backend pools of load balancers the configuration is a member of.
    #[serde(rename = "loadBalancerBackendAddressPools")]
    pub load_balancer_backend_address_pools: Vec<SubResource>,
    /// Application security groups the configuration is a member of.
    #[serde(rename = "applicationSecurityGroups")]
    pub application_security_groups: Vec<SubResource>,
}

/// A public IP address (`Microsoft.Network/publicIPAddresses`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PublicIpAddress {
    pub id: String,
    pub name: String,
    /// Absent in old bodies; ARM's default was `Basic`.
    pub sku: Option<Sku>,
    pub properties: PublicIpAddressProperties,
}

/// `properties` of a [`PublicIpAddress`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PublicIpAddressProperties {
    /// The address; absent while a dynamic address is not allocated.
    pub ip_address: Option<String>,
    /// The NIC IP configuration or load balancer frontend it is attached to.
    pub ip_configuration: Option<SubResource>,
}

impl PublicIpAddress {
    /// Standard-SKU public IPs are closed to inbound traffic unless an NSG allows it; Basic ones
    /// (and those without a `sku`, ARM's old default) are open.
    pub fn secure_by_default(&self) -> bool {
        self.sku
            .as_ref()
            .is_some_and(|s| s.name.eq_ignore_ascii_case("Standard"))
    }

    /// `203.0.113.7`, or the resource's name while no address is allocated.
    pub fn display(&self) -> String {
        match &self.properties.ip_address {
            Some(ip) if !ip.is_empty() => ip.clone(),
            _ => format!(
                "{} (address not allocated)",
                display_name(&self.name, &self.id)
            ),
        }
    }
}

/// A network security group (`Microsoft.Network/networkSecurityGroups`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct NetworkSecurityGroup {
    pub id: String,
    pub name: String,
    pub properties: NetworkSecurityGroupProperties,
}

/// `properties` of a [`NetworkSecurityGroup`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NetworkSecurityGroupProperties {
    pub security_rules: Vec<SecurityRule>,
    /// The rules Azure adds to every NSG (priorities 65000 and up). When a body leaves them out,
    /// [`NetworkSecurityGroup::inbound_rules`] uses the documented ones.
    pub default_security_rules: Vec<SecurityRule>,
}

/// One rule of an NSG.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SecurityRule {
    pub name: String,
    pub properties: SecurityRuleProperties,
}

/// `properties` of a [`SecurityRule`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SecurityRuleProperties {
    /// `Allow` or `Deny`.
    pub access: String,
    /// `Inbound` or `Outbound`.
    pub direction: String,
    /// 100–4096 for custom rules, 65000+ for the defaults; lower is evaluated first.
    pub priority: u32,
    /// `Tcp`, `Udp`, `Icmp`, `Esp`, `Ah` or `*`.
    pub protocol: String,
    pub source_address_prefix: Option<String>,
    pub source_address_prefixes: Vec<String>,
    pub source_application_security_groups: Vec<SubResource>,
    pub destination_address_prefix: Option<String>,
    pub destination_address_prefixes: Vec<String>,
    pub destination_application_security_groups: Vec<SubResource>,
    /// `22`, `20-25` or `*`.
    pub destination_port_range: Option<String>,
    pub destination_port_ranges: Vec<String>,
}

impl NetworkSecurityGroup {
    /// The NSG's name (from its id when the body has none).
    pub fn display_name(&self) -> &str {
        display_name(&self.name, &self.id)
    }

    /// Inbound rules, custom and default, in evaluation order (lowest priority number first).
    /// Without `defaultSecurityRules` in the body, Azure's documented defaults apply:
    /// AllowVnetInBound (65000), AllowAzureLoadBalancerInBound (65001), DenyAllInBound (65500).
    pub fn inbound_rules(&self) -> Vec<SecurityRule> {
        let defaults = if self.properties.default_security_rules.is_empty() {
            documented_default_rules()
        } else {
            self.properties.default_security_rules.clone()
        };
        let mut rules: Vec<SecurityRule> = self
            .properties
            .security_rules
            .iter()
            .cloned()
            .chain(defaults)
            .filter(|r| r.properties.direction.eq_ignore_ascii_case("Inbound"))
            .collect();
        rules.sort_by_key(|r| r.properties.priority);
        rules
    }
}

/// Azure's default inbound rules of every NSG, as documented.
fn documented_default_rules() -> Vec<SecurityRule> {
    let rule = |name: &str, priority, source: &str, access: &str| SecurityRule {
        name: name.to_owned(),
        properties: SecurityRuleProperties {
            access: access.to_owned(),
            direction: "Inbound".to_owned(),
            priority,
            protocol: "*".to_owned(),
            source_address_prefix: Some(source.to_owned()),
            destination_address_prefix: Some("*".to_owned()),
            destination_port_range: Some("*".to_owned()),
            ..SecurityRuleProperties::default()
        },
    };
    vec![
        rule("AllowVnetInBound", 65000, "VirtualNetwork", "Allow"),
        rule(
            "AllowAzureLoadBalancerInBound",
            65001,
            "AzureLoadBalancer",
            "Allow",
        ),
        rule("DenyAllInBound", 65500, "*", "Deny"),
    ]
}

/// A transport protocol a port belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    /// `tcp`, `udp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }

    /// The transports an NSG rule or NAT rule protocol (`Tcp`, `Udp`, `*`, `All`) covers.
    pub fn of(protocol: &str) -> &'static [Transport] {
        match protocol.to_ascii_lowercase().as_str() {
            "tcp" => &[Transport::Tcp],
            "udp" => &[Transport::Udp],
            "*" | "all" | "any" | "" => &[Transport::Tcp, Transport::Udp],
            _ => &[],
        }
    }
}

/// An inclusive port range.
pub type PortRange = (u16, u16);

/// `22` → (22, 22), `20-25` → (20, 25), `*` → (0, 65535); `None` when unreadable.
pub fn parse_port_range(text: &str) -> Option<PortRange> {
    let text = text.trim();
    if text == "*" || text.eq_ignore_ascii_case("any") {
        return Some((0, u16::MAX));
    }
    match text.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
            (lo <= hi).then_some((lo, hi))
        }
        None => text.parse().ok().map(|p| (p, p)),
    }
}

/// Address prefixes that stand for the whole internet as an NSG rule's source.
const INTERNET_SOURCES: [&str; 5] = ["*", "internet", "0.0.0.0/0", "::/0", "any"];

impl SecurityRuleProperties {
    /// Whether the rule allows (rather than denies) what it matches.
    pub fn allows(&self) -> bool {
        self.access.eq_ignore_ascii_case("Allow")
    }

    /// The source prefix that makes this rule match traffic from anywhere on the internet
    /// (`*`, `Internet`, `0.0.0.0/0`, `::/0`, `Any`), as written; `None` when the rule's sources
    /// are narrower (addresses, other service tags, application security groups).
    pub fn internet_source(&self) -> Option<&str> {
        self.source_address_prefix
            .iter()
            .chain(&self.source_address_prefixes)
            .map(|p| p.trim())
            .find(|p| INTERNET_SOURCES.iter().any(|s| p.eq_ignore_ascii_case(s)))
    }

    /// The destination port ranges (`destinationPortRange` and `destinationPortRanges`); all
    /// ports when neither is set.
    pub fn port_ranges(&self) -> Vec<PortRange> {
        let written: Vec<&String> = self
            .destination_port_range
            .iter()
            .chain(&self.destination_port_ranges)
            .filter(|p| !p.trim().is_empty())
            .collect();
        if written.is_empty() {
            return vec![(0, u16::MAX)];
        }
        written
            .into_iter()
            .filter_map(|p| parse_port_range(p))
            .collect()
    }

    /// Whether the rule covers `port` of `transport`.
    pub fn covers(&self, transport: Transport, port: u16) -> bool {
        Transport::of(&self.protocol).contains(&transport)
            && self
                .port_ranges()
                .iter()
                .any(|&(lo, hi)| lo <= port && port <= hi)
    }

    /// Whether the rule's destination includes a NIC IP configuration with this private address
    /// and these application security groups. A destination this cannot decide (a service tag
    /// other than `VirtualNetwork`, an unreadable prefix) counts as matching for an allow rule
    /// and as not matching for a deny rule, so doubt reads as exposed.
    pub fn destination_includes(&self, private_ip: Option<&str>, asgs: &[SubResource]) -> bool {
        let prefixes: Vec<&str> = self
            .destination_address_prefix
            .iter()
            .chain(&self.destination_address_prefixes)
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .collect();
        let groups = &self.destination_application_security_groups;
        if prefixes.is_empty() && groups.is_empty() {
            return true;
        }
        if groups
            .iter()
            .any(|g| asgs.iter().any(|a| same_id(&a.id, &g.id)))
        {
            return true;
        }
        prefixes
            .iter()
            .any(|p| match prefix_contains(p, private_ip) {
                Some(inside) => inside,
                None => self.allows(),
            })
    }
}

/// Whether an address prefix (`*`, `VirtualNetwork`, a CIDR or an address) contains `ip`;
/// `None` when that cannot be told.
fn prefix_contains(prefix: &str, ip: Option<&str>) -> Option<bool> {
    if ["*", "any", "virtualnetwork", "0.0.0.0/0"]
        .iter()
        .any(|p| prefix.eq_ignore_ascii_case(p))
    {
        return Some(true);
    }
    let ip: std::net::Ipv4Addr = ip?.trim().parse().ok()?;
    let (net, bits) = prefix.split_once('/').unwrap_or((prefix, "32"));
    let net: std::net::Ipv4Addr = net.trim().parse().ok()?;
    let bits: u32 = bits.trim().parse().ok().filter(|b| *b <= 32)?;
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    Some(u32::from(ip) & mask == u32::from(net) & mask)
}

/// A virtual network (`Microsoft.Network/virtualNetworks`), for the NSGs of its subnets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct VirtualNetwork {
    pub id: String,
    pub properties: VirtualNetworkProperties,
}

/// `properties` of a [`VirtualNetwork`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct VirtualNetworkProperties {
    pub subnets: Vec<Subnet>,
}

/// A subnet of a [`VirtualNetwork`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Subnet {
    pub id: String,
    pub properties: SubnetProperties,
}

/// `properties` of a [`Subnet`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SubnetProperties {
    pub network_security_group: Option<SubResource>,
}

/// A load balancer (`Microsoft.Network/loadBalancers`), for its inbound NAT and load-balancing
/// rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LoadBalancer {
    pub id: String,
    pub name: String,
    pub properties: LoadBalancerProperties,
}

/// `properties` of a [`LoadBalancer`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LoadBalancerProperties {
    #[serde(rename = "frontendIPConfigurations")]
    pub frontend_ip_configurations: Vec<FrontendIpConfiguration>,
    #[serde(rename = "inboundNatRules")]
    pub inbound_nat_rules: Vec<InboundNatRule>,
    #[serde(rename = "loadBalancingRules")]
    pub load_balancing_rules: Vec<LoadBalancingRule>,
}

/// A frontend of a [`LoadBalancer`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct FrontendIpConfiguration {
    pub id: String,
    pub properties: FrontendIpConfigurationProperties,
}

/// `properties` of a [`FrontendIpConfiguration`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct FrontendIpConfigurationProperties {
    #[serde(rename = "publicIPAddress")]
    pub public_ip_address: Option<SubResource>,
}

/// An inbound NAT rule: a frontend port of the load balancer forwarded to one NIC IP
/// configuration's backend port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct InboundNatRule {
    pub id: String,
    pub name: String,
    pub properties: InboundNatRuleProperties,
}

/// `properties` of an [`InboundNatRule`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct InboundNatRuleProperties {
    #[serde(rename = "frontendIPConfiguration")]
    pub frontend_ip_configuration: Option<SubResource>,
    #[serde(rename = "backendIPConfiguration")]
    pub backend_ip_configuration: Option<SubResource>,
    #[serde(rename = "frontendPort")]
    pub frontend_port: Option<u16>,
    #[serde(rename = "backendPort")]
    pub backend_port: Option<u16>,
    /// `Tcp`, `Udp` or `All`.
    pub protocol: String,
}

/// A load-balancing rule: a frontend port of the load balancer spread over a backend pool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LoadBalancingRule {
    pub id: String,
    pub name: String,
    pub properties: LoadBalancingRuleProperties,
}

/// `properties` of a [`LoadBalancingRule`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LoadBalancingRuleProperties {
    #[serde(rename = "frontendIPConfiguration")]
    pub frontend_ip_configuration: Option<SubResource>,
    #[serde(rename = "backendAddressPool")]
    pub backend_address_pool: Option<SubResource>,
    #[serde(rename = "backendAddressPools")]
    pub backend_address_pools: Vec<SubResource>,
    #[serde(rename = "frontendPort")]
    pub frontend_port: Option<u16>,
    /// `0` with protocol `All`: every port (HA ports).
    #[serde(rename = "backendPort")]
    pub backend_port: Option<u16>,
    /// `Tcp`, `Udp` or `All`.
    pub protocol: String,
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
