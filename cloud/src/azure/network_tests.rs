//! Tests of the ARM body models and NSG rule matching of [`super`].

use super::*;
use serde_json::json;

#[test]
fn sparse_and_documented_bodies_parse() {
    // The documented NetworkInterfaceListAll example has an entry with nothing but an id,
    // and PublicIpAddressListAll an empty object.
    let nic: NetworkInterface = serde_json::from_value(json!({"id": "/x/nic"})).unwrap();
    assert!(nic.properties.ip_configurations.is_empty());
    let ip: PublicIpAddress = serde_json::from_value(json!({})).unwrap();
    assert!(!ip.secure_by_default());
    let nic: NetworkInterface = serde_json::from_value(json!({
        "id": "/s/nic", "etag": "W/\"1\"",
        "properties": {
            "ipConfigurations": [{"id": "/s/nic/ipConfigurations/c", "properties": {
                "privateIPAddress": "10.0.0.4",
                "publicIPAddress": {"id": "/s/pip"},
                "subnet": {"id": "/s/vnet/subnets/default"}}}],
            "networkSecurityGroup": {"id": "/s/nsg"},
            "virtualMachine": {"id": "/s/vm"}
        }
    }))
    .unwrap();
    let c = &nic.properties.ip_configurations[0].properties;
    assert_eq!(c.public_ip_address.as_ref().unwrap().id, "/s/pip");
    assert_eq!(c.private_ip_address.as_deref(), Some("10.0.0.4"));
    assert_eq!(nic.properties.network_security_group.unwrap().id, "/s/nsg");
    let lb: LoadBalancer = serde_json::from_value(json!({"id": "/s/lb", "properties": {
        "frontendIPConfigurations": [{"id": "/s/lb/f", "properties": {"publicIPAddress": {"id": "/s/pip"}}}],
        "inboundNatRules": [{"name": "ssh", "properties": {
            "frontendIPConfiguration": {"id": "/s/lb/f"},
            "backendIPConfiguration": {"id": "/s/nic/ipConfigurations/c"},
            "frontendPort": 50001, "backendPort": 22, "protocol": "Tcp"}}]
    }}))
    .unwrap();
    assert_eq!(
        lb.properties.inbound_nat_rules[0].properties.frontend_port,
        Some(50001)
    );
}

#[test]
fn port_ranges_parse() {
    assert_eq!(parse_port_range("22"), Some((22, 22)));
    assert_eq!(parse_port_range("20-25"), Some((20, 25)));
    assert_eq!(parse_port_range("*"), Some((0, 65535)));
    assert_eq!(parse_port_range("25-20"), None);
    assert_eq!(parse_port_range("ssh"), None);
    let rule = SecurityRuleProperties {
        protocol: "Tcp".into(),
        destination_port_ranges: vec!["22".into(), "8000-8080".into()],
        ..Default::default()
    };
    assert!(rule.covers(Transport::Tcp, 8080));
    assert!(!rule.covers(Transport::Tcp, 23));
    assert!(!rule.covers(Transport::Udp, 22));
}

#[test]
fn internet_sources_and_destinations() {
    for source in ["*", "Internet", "internet", "0.0.0.0/0", "::/0", "Any"] {
        let rule = SecurityRuleProperties {
            source_address_prefix: Some(source.into()),
            ..Default::default()
        };
        assert_eq!(rule.internet_source(), Some(source), "{source}");
    }
    let listed = SecurityRuleProperties {
        source_address_prefixes: vec!["10.0.0.0/8".into(), "Internet".into()],
        ..Default::default()
    };
    assert_eq!(listed.internet_source(), Some("Internet"));
    for narrow in ["VirtualNetwork", "AzureLoadBalancer", "203.0.113.0/24"] {
        let rule = SecurityRuleProperties {
            source_address_prefix: Some(narrow.into()),
            ..Default::default()
        };
        assert_eq!(rule.internet_source(), None, "{narrow}");
    }
    let to = |prefix: &str, access: &str| SecurityRuleProperties {
        access: access.into(),
        destination_address_prefix: Some(prefix.into()),
        ..Default::default()
    };
    assert!(to("10.0.0.0/24", "Deny").destination_includes(Some("10.0.0.4"), &[]));
    assert!(!to("10.0.1.0/24", "Deny").destination_includes(Some("10.0.0.4"), &[]));
    assert!(to("10.0.0.4", "Deny").destination_includes(Some("10.0.0.4"), &[]));
    assert!(to("Storage", "Allow").destination_includes(Some("10.0.0.4"), &[]));
    assert!(!to("Storage", "Deny").destination_includes(Some("10.0.0.4"), &[]));
}

#[test]
fn documented_defaults_apply_when_the_body_has_none() {
    let nsg = NetworkSecurityGroup::default();
    let names: Vec<String> = nsg.inbound_rules().into_iter().map(|r| r.name).collect();
    assert_eq!(
        names,
        [
            "AllowVnetInBound",
            "AllowAzureLoadBalancerInBound",
            "DenyAllInBound"
        ]
    );
}

#[test]
fn ids_and_names() {
    assert!(same_id(
        "/subscriptions/S/resourceGroups/RG",
        "/subscriptions/s/resourcegroups/rg"
    ));
    assert_eq!(
        name_of("/s/providers/Microsoft.Network/networkInterfaces/web-nic"),
        "web-nic"
    );
}
