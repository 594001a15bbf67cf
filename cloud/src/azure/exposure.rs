//! PLACEHOLDER (to be replaced at merge by the network helper's module): whether a VM is exposed
//! to the internet, from its NICs, public IPs, NSGs, subnets and load balancers.

use snapsentry_crds::Exposure;

use super::network::{
    LoadBalancer, NetworkInterface, NetworkSecurityGroup, PublicIpAddress, VirtualNetwork,
};

/// The network resources of a policy's subscriptions, indexed for exposure questions.
#[derive(Clone, Debug, Default)]
pub struct NetworkView {
    nics: Vec<NetworkInterface>,
}

impl NetworkView {
    /// A view of these listed resources.
    pub fn new(
        nics: Vec<NetworkInterface>,
        public_ips: Vec<PublicIpAddress>,
        nsgs: Vec<NetworkSecurityGroup>,
        vnets: Vec<VirtualNetwork>,
        load_balancers: Vec<LoadBalancer>,
    ) -> Self {
        let _ = (public_ips, nsgs, vnets, load_balancers);
        Self { nics }
    }

    /// Internet exposure of a VM with these NIC resource ids, with reasons.
    pub fn exposure(&self, nic_ids: &[String]) -> Exposure {
        let _ = (nic_ids, &self.nics);
        Exposure::default()
    }
}
