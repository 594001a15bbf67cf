//! Whether an Azure VM is exposed to the internet, and why.
//!
//! A VM is internet-facing when one of its NICs can be reached from the internet and the network
//! security groups (NSGs) in the way let the traffic in:
//!
//! - **A way in**: a public IP address on one of the NIC's IP configurations; an inbound NAT
//!   rule of a load balancer whose frontend has a public IP and whose backend is one of the NIC's
//!   IP configurations (the NAT rule's `backendIPConfiguration`, or the IP configuration's
//!   `loadBalancerInboundNatRules`); or a load-balancing rule from such a frontend to a backend
//!   pool the IP configuration is in (`loadBalancerBackendAddressPools`). A rule lets in only its
//!   backend port (every port for an HA-ports rule, backend port 0).
//! - **The NSGs**: Azure evaluates inbound traffic against the NSG of the IP configuration's
//!   subnet, then against the NSG of the NIC; traffic gets in only when every NSG that exists
//!   allows it. Each NSG's inbound rules (its own and the defaults: AllowVnetInBound 65000,
//!   AllowAzureLoadBalancerInBound 65001, DenyAllInBound 65500, used as documented when a body
//!   leaves them out) are evaluated by priority, lowest number first, and the first rule that
//!   matches decides. For traffic from the internet at large a rule matches when its protocol and
//!   destination ports cover the port, its source is `*`, `Internet`, `0.0.0.0/0`, `::/0` or
//!   `Any` (a rule for narrower sources neither opens nor closes the port to the internet), and
//!   its destination includes the IP configuration (a destination this cannot decide counts for
//!   an allow rule and not for a deny rule). No matching rule means denied.
//! - **No NSG at all**: Azure documents Standard-SKU public IPs (and Standard load balancers,
//!   whose frontends must have them) as secure by default — closed to inbound traffic unless an
//!   NSG allows it — and Basic-SKU public IPs as open. A public IP without a `sku` counts as
//!   Basic, ARM's old default.
//!
//! An NSG that a NIC or subnet names but that the listing did not return (another subscription,
//! no read permission) cannot be evaluated and is left out of the path. NAT rules for a backend
//! pool (port ranges, as scale sets use) are not ways in here.
//! The reasons name both halves in words: the way in, and each NSG rule that allowed it with the
//! ports that end up open.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use snapsentry_crds::Exposure;

use super::network::{
    IpConfiguration, LoadBalancer, NetworkInterface, NetworkSecurityGroup, PortRange,
    PublicIpAddress, SecurityRule, SubResource, Transport, VirtualNetwork, display_name, name_of,
    same_id,
};

/// The network resources of the subscriptions a policy covers, indexed by lower-cased id.
#[derive(Clone, Debug, Default)]
pub struct NetworkView {
    nics: HashMap<String, NetworkInterface>,
    public_ips: HashMap<String, PublicIpAddress>,
    nsgs: HashMap<String, NetworkSecurityGroup>,
    /// Subnet id → the id of its NSG.
    subnet_nsgs: HashMap<String, String>,
    load_balancers: Vec<LoadBalancer>,
}

fn key(id: &str) -> String {
    id.to_ascii_lowercase()
}

/// One way in from the internet to an IP configuration.
struct WayIn<'a> {
    /// "public IP 203.0.113.7 on NIC web-nic", or the NAT rule in words.
    reason: String,
    public_ip: &'a PublicIpAddress,
    /// `None`: every port; `Some`: a NAT rule's backend port and its transports.
    only: Option<(u16, &'static [Transport])>,
}

/// An NSG in the path of inbound traffic, with its inbound rules in evaluation order.
struct Gate<'a> {
    nsg: &'a NetworkSecurityGroup,
    rules: Vec<SecurityRule>,
}

/// Ports a rule opened: (NSG name, rule name, source as written) → (transport, range) set.
type Openings = BTreeMap<(String, String, String), BTreeSet<(Transport, u16, u16)>>;

impl NetworkView {
    /// Index the listed resources. Ids are compared case-insensitively.
    pub fn new(
        nics: Vec<NetworkInterface>,
        public_ips: Vec<PublicIpAddress>,
        nsgs: Vec<NetworkSecurityGroup>,
        vnets: Vec<VirtualNetwork>,
        load_balancers: Vec<LoadBalancer>,
    ) -> Self {
        let subnet_nsgs = vnets
            .iter()
            .flat_map(|v| &v.properties.subnets)
            .filter_map(|s| {
                let nsg = s.properties.network_security_group.as_ref()?;
                Some((key(&s.id), key(&nsg.id)))
            })
            .collect();
        NetworkView {
            nics: nics.into_iter().map(|n| (key(&n.id), n)).collect(),
            public_ips: public_ips.into_iter().map(|p| (key(&p.id), p)).collect(),
            nsgs: nsgs.into_iter().map(|n| (key(&n.id), n)).collect(),
            subnet_nsgs,
            load_balancers,
        }
    }

    /// Internet exposure of a VM with these NIC resource ids, with reasons (none when it is not
    /// exposed). NICs the listing did not return are skipped.
    pub fn exposure(&self, nic_ids: &[String]) -> Exposure {
        let mut reasons: Vec<String> = Vec::new();
        for nic in nic_ids.iter().filter_map(|id| self.nics.get(&key(id))) {
            for config in &nic.properties.ip_configurations {
                for way in self.ways_in(nic, config) {
                    for reason in self.through_nsgs(nic, config, &way) {
                        if !reasons.contains(&reason) {
                            reasons.push(reason);
                        }
                    }
                }
            }
        }
        Exposure {
            internet_facing: !reasons.is_empty(),
            reasons,
        }
    }

    /// The public IP on the configuration and the NAT rules that forward to it.
    fn ways_in<'a>(&'a self, nic: &NetworkInterface, config: &IpConfiguration) -> Vec<WayIn<'a>> {
        let nic_name = nic_name(nic);
        let mut ways = Vec::new();
        if let Some(ip) = config
            .properties
            .public_ip_address
            .as_ref()
            .and_then(|r| self.public_ips.get(&key(&r.id)))
        {
            ways.push(WayIn {
                reason: format!("public IP {} on NIC {nic_name}", ip.display()),
                public_ip: ip,
                only: None,
            });
        }
        for lb in &self.load_balancers {
            for rule in &lb.properties.inbound_nat_rules {
                let p = &rule.properties;
                let to_config = p
                    .backend_ip_configuration
                    .as_ref()
                    .is_some_and(|b| same_id(&b.id, &config.id))
                    || (!rule.id.is_empty()
                        && config
                            .properties
                            .load_balancer_inbound_nat_rules
                            .iter()
                            .any(|r| same_id(&r.id, &rule.id)));
                let Some(backend) = p.backend_port.or(p.frontend_port) else {
                    continue;
                };
                if !to_config || Transport::of(&p.protocol).is_empty() {
                    continue;
                }
                let Some(ip) = self.frontend_public_ip(lb, p.frontend_ip_configuration.as_ref())
                else {
                    continue;
                };
                let transports = Transport::of(&p.protocol);
                let frontend = p.frontend_port.unwrap_or(backend);
                ways.push(WayIn {
                    reason: format!(
                        "load balancer {} NAT rule {} {frontend}→{backend}/{} from public IP {} to NIC {nic_name}",
                        display_name(&lb.name, &lb.id),
                        display_name(&rule.name, &rule.id),
                        transport_names(transports),
                        ip.display(),
                    ),
                    public_ip: ip,
                    only: Some((backend, transports)),
                });
            }
        }
        for lb in &self.load_balancers {
            for rule in &lb.properties.load_balancing_rules {
                let p = &rule.properties;
                let pools = &config.properties.load_balancer_backend_address_pools;
                let Some(pool) = p
                    .backend_address_pool
                    .iter()
                    .chain(&p.backend_address_pools)
                    .find(|b| pools.iter().any(|m| same_id(&m.id, &b.id)))
                else {
                    continue;
                };
                let transports = Transport::of(&p.protocol);
                if transports.is_empty() {
                    continue;
                }
                let Some(ip) = self.frontend_public_ip(lb, p.frontend_ip_configuration.as_ref())
                else {
                    continue;
                };
                let backend = p.backend_port.or(p.frontend_port).unwrap_or(0);
                let ports = match backend {
                    0 => "all ports".to_owned(),
                    port => format!(
                        "{}→{port}/{}",
                        p.frontend_port.unwrap_or(port),
                        transport_names(transports)
                    ),
                };
                ways.push(WayIn {
                    reason: format!(
                        "load balancer {} rule {} {ports} from public IP {} to backend pool {} with NIC {nic_name}",
                        display_name(&lb.name, &lb.id),
                        display_name(&rule.name, &rule.id),
                        ip.display(),
                        name_of(&pool.id),
                    ),
                    public_ip: ip,
                    only: (backend != 0).then_some((backend, transports)),
                });
            }
        }
        ways
    }

    fn frontend_public_ip(
        &self,
        lb: &LoadBalancer,
        frontend: Option<&SubResource>,
    ) -> Option<&PublicIpAddress> {
        let frontend = frontend?;
        let config = lb
            .properties
            .frontend_ip_configurations
            .iter()
            .find(|f| same_id(&f.id, &frontend.id))?;
        let ip = config.properties.public_ip_address.as_ref()?;
        self.public_ips.get(&key(&ip.id))
    }

    /// The NSGs in the way of inbound traffic to the configuration: its subnet's, then the NIC's.
    fn gates(&self, nic: &NetworkInterface, config: &IpConfiguration) -> Vec<Gate<'_>> {
        let subnet_nsg = config
            .properties
            .subnet
            .as_ref()
            .and_then(|s| self.subnet_nsgs.get(&key(&s.id)));
        let nic_nsg = nic
            .properties
            .network_security_group
            .as_ref()
            .map(|n| key(&n.id));
        subnet_nsg
            .into_iter()
            .chain(nic_nsg.as_ref())
            .filter_map(|id| self.nsgs.get(id))
            .map(|nsg| Gate {
                nsg,
                rules: nsg.inbound_rules(),
            })
            .collect()
    }

    /// The reasons this way in is open (empty when the NSGs, or the SKU's default, close it).
    fn through_nsgs(
        &self,
        nic: &NetworkInterface,
        config: &IpConfiguration,
        way: &WayIn<'_>,
    ) -> Vec<String> {
        let gates = self.gates(nic, config);
        if gates.is_empty() {
            if way.public_ip.secure_by_default() {
                return Vec::new();
            }
            let ports = match way.only {
                Some((port, transports)) => format!("{port}/{}", transport_names(transports)),
                None => "all ports".to_owned(),
            };
            return vec![
                way.reason.clone(),
                format!(
                    "no NSG on NIC {} or its subnet: a Basic-SKU public IP is open to inbound traffic from the internet on {ports}",
                    nic_name(nic)
                ),
            ];
        }
        let private_ip = config.properties.private_ip_address.as_deref();
        let asgs = &config.properties.application_security_groups;
        let mut openings = Openings::new();
        let segments: Vec<(Transport, PortRange)> = match way.only {
            Some((port, transports)) => transports.iter().map(|&t| (t, (port, port))).collect(),
            None => segments(&gates)
                .into_iter()
                .flat_map(|r| [(Transport::Tcp, r), (Transport::Udp, r)])
                .collect(),
        };
        for (transport, (lo, hi)) in segments {
            let deciders: Option<Vec<(&Gate<'_>, &SecurityRule)>> = gates
                .iter()
                .map(|g| decide(g, transport, lo, private_ip, asgs).map(|r| (g, r)))
                .collect();
            for (gate, rule) in deciders.into_iter().flatten() {
                let source = rule.properties.internet_source().unwrap_or("*").to_owned();
                openings
                    .entry((
                        gate.nsg.display_name().to_owned(),
                        rule.name.clone(),
                        source,
                    ))
                    .or_default()
                    .insert((transport, lo, hi));
            }
        }
        if openings.is_empty() {
            return Vec::new();
        }
        let mut reasons = vec![way.reason.clone()];
        reasons.extend(openings.into_iter().map(|((nsg, rule, source), ports)| {
            format!(
                "NSG {nsg} rule {rule} allows {source} on {}",
                describe_ports(&ports)
            )
        }));
        reasons
    }
}

/// The first inbound rule of the gate that matches internet traffic to `port`, if it allows.
fn decide<'g>(
    gate: &'g Gate<'_>,
    transport: Transport,
    port: u16,
    private_ip: Option<&str>,
    asgs: &[SubResource],
) -> Option<&'g SecurityRule> {
    gate.rules
        .iter()
        .find(|r| {
            let p = &r.properties;
            p.internet_source().is_some()
                && p.covers(transport, port)
                && p.destination_includes(private_ip, asgs)
        })
        .filter(|r| r.properties.allows())
}

/// Split 0–65535 into ranges in which every rule of every gate treats all ports alike.
fn segments(gates: &[Gate<'_>]) -> Vec<PortRange> {
    let mut starts: BTreeSet<u32> = BTreeSet::from([0]);
    for rule in gates.iter().flat_map(|g| &g.rules) {
        for (lo, hi) in rule.properties.port_ranges() {
            starts.insert(u32::from(lo));
            starts.insert(u32::from(hi) + 1);
        }
    }
    let starts: Vec<u32> = starts.into_iter().filter(|s| *s <= 65535).collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, &lo)| {
            let hi = starts.get(i + 1).map_or(65535, |next| next - 1);
            (lo as u16, hi as u16)
        })
        .collect()
}

/// `22/tcp`, `20-25/tcp, 53/udp`, `all tcp ports`, `all ports`; adjacent ranges merged.
fn describe_ports(ports: &BTreeSet<(Transport, u16, u16)>) -> String {
    let mut merged: Vec<(Transport, u16, u16)> = Vec::new();
    for &(t, lo, hi) in ports {
        match merged.last_mut() {
            Some(last) if last.0 == t && u32::from(last.2) + 1 >= u32::from(lo) => {
                last.2 = last.2.max(hi)
            }
            _ => merged.push((t, lo, hi)),
        }
    }
    let all = |t| merged.contains(&(t, 0, u16::MAX));
    if all(Transport::Tcp) && all(Transport::Udp) {
        return "all ports".to_owned();
    }
    merged
        .iter()
        .map(|&(t, lo, hi)| match (lo, hi) {
            (0, u16::MAX) => format!("all {} ports", t.as_str()),
            _ if lo == hi => format!("{lo}/{}", t.as_str()),
            _ => format!("{lo}-{hi}/{}", t.as_str()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `tcp`, `udp`, `tcp+udp`.
fn transport_names(transports: &[Transport]) -> String {
    transports
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

fn nic_name(nic: &NetworkInterface) -> &str {
    display_name(&nic.name, &nic.id)
}

#[cfg(test)]
#[path = "exposure_tests.rs"]
mod tests;
