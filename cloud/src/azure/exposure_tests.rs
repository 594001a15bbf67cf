//! Tests of [`NetworkView::exposure`] on ARM bodies shaped like the documented list examples
//! (and like the fake ARM's `tests/azure/arm_fleet.py`).

use serde_json::{Value, json};

use super::*;

const RG: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/web-rg/providers/Microsoft.Network";

fn id(kind: &str, name: &str) -> String {
    format!("{RG}/{kind}/{name}")
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// An NSG with rules (name, priority, access, source, ports, protocol), all inbound.
fn nsg(name: &str, rules: &[(&str, u32, &str, &str, &str, &str)]) -> NetworkSecurityGroup {
    let nsg_id = id("networkSecurityGroups", name);
    let rules: Vec<Value> = rules
        .iter()
        .map(|(rule, priority, access, source, ports, protocol)| {
            json!({"name": rule, "id": format!("{nsg_id}/securityRules/{rule}"), "properties": {
                "provisioningState": "Succeeded", "protocol": protocol, "sourcePortRange": "*",
                "destinationPortRange": ports, "sourceAddressPrefix": source,
                "destinationAddressPrefix": "*", "access": access, "priority": priority,
                "direction": "Inbound"}})
        })
        .collect();
    parse(json!({"name": name, "id": nsg_id, "location": "eastus",
        "properties": {"securityRules": rules, "defaultSecurityRules": []}}))
}

fn nic(name: &str, public_ip: Option<&str>, nic_nsg: Option<&str>) -> NetworkInterface {
    let nic_id = id("networkInterfaces", name);
    let mut config = json!({"privateIPAddress": "10.0.0.4", "privateIPAllocationMethod": "Dynamic",
        "subnet": {"id": format!("{}/subnets/default", id("virtualNetworks", "web-vnet"))}});
    if let Some(ip) = public_ip {
        config["publicIPAddress"] = json!({"id": id("publicIPAddresses", ip)});
    }
    let mut properties = json!({"ipConfigurations": [{"name": "ipconfig1",
        "id": format!("{nic_id}/ipConfigurations/ipconfig1"), "properties": config}],
        "virtualMachine": {"id": "/subscriptions/x/resourceGroups/web-rg/providers/Microsoft.Compute/virtualMachines/web"}});
    if let Some(n) = nic_nsg {
        properties["networkSecurityGroup"] = json!({"id": id("networkSecurityGroups", n)});
    }
    parse(json!({"name": name, "id": nic_id, "properties": properties}))
}

fn public_ip(name: &str, address: &str, sku: &str) -> PublicIpAddress {
    parse(
        json!({"name": name, "id": id("publicIPAddresses", name), "sku": {"name": sku},
        "properties": {"ipAddress": address, "publicIPAllocationMethod": "Static"}}),
    )
}

fn vnet_with_subnet_nsg(nsg: &str) -> VirtualNetwork {
    let vnet = id("virtualNetworks", "web-vnet");
    parse(
        json!({"id": vnet, "properties": {"subnets": [{"name": "default",
        "id": format!("{vnet}/subnets/default"),
        "properties": {"networkSecurityGroup": {"id": id("networkSecurityGroups", nsg)}}}]}}),
    )
}

fn ssh_open() -> NetworkSecurityGroup {
    nsg(
        "web-nsg",
        &[("allow-ssh", 100, "Allow", "Internet", "22", "Tcp")],
    )
}

fn exposure_of(view: &NetworkView, nic: &str) -> Exposure {
    view.exposure(&[id("networkInterfaces", nic)])
}

#[test]
fn public_ip_and_open_nic_nsg_is_exposed() {
    let view = NetworkView::new(
        vec![nic("web-nic", Some("web-ip"), Some("web-nsg"))],
        vec![public_ip("web-ip", "203.0.113.7", "Standard")],
        vec![ssh_open()],
        vec![],
        vec![],
    );
    let e = exposure_of(&view, "web-nic");
    assert!(e.internet_facing);
    assert_eq!(
        e.reasons,
        [
            "public IP 203.0.113.7 on NIC web-nic",
            "NSG web-nsg rule allow-ssh allows Internet on 22/tcp",
        ]
    );
}

#[test]
fn a_subnet_nsg_that_denies_closes_the_public_ip() {
    let closed = nsg("subnet-nsg", &[("deny-all", 100, "Deny", "*", "*", "*")]);
    // Only the subnet's NSG, denying.
    let view = NetworkView::new(
        vec![nic("web-nic", Some("web-ip"), None)],
        vec![public_ip("web-ip", "203.0.113.7", "Basic")],
        vec![closed.clone()],
        vec![vnet_with_subnet_nsg("subnet-nsg")],
        vec![],
    );
    assert_eq!(exposure_of(&view, "web-nic"), Exposure::default());
    // The NIC's NSG allows, the subnet's denies: both must allow.
    let view = NetworkView::new(
        vec![nic("web-nic", Some("web-ip"), Some("web-nsg"))],
        vec![public_ip("web-ip", "203.0.113.7", "Standard")],
        vec![closed, ssh_open()],
        vec![vnet_with_subnet_nsg("subnet-nsg")],
        vec![],
    );
    assert!(!exposure_of(&view, "web-nic").internet_facing);
}

#[test]
fn both_nsgs_allowing_name_both_rules_and_the_ports_that_end_up_open() {
    let wide = nsg(
        "subnet-nsg",
        &[("allow-web", 100, "Allow", "0.0.0.0/0", "*", "Tcp")],
    );
    let view = NetworkView::new(
        vec![nic("web-nic", Some("web-ip"), Some("web-nsg"))],
        vec![public_ip("web-ip", "203.0.113.7", "Standard")],
        vec![wide, ssh_open()],
        vec![vnet_with_subnet_nsg("subnet-nsg")],
        vec![],
    );
    let e = exposure_of(&view, "web-nic");
    assert!(e.internet_facing);
    assert!(
        e.reasons
            .contains(&"NSG subnet-nsg rule allow-web allows 0.0.0.0/0 on 22/tcp".into())
    );
    assert!(
        e.reasons
            .contains(&"NSG web-nsg rule allow-ssh allows Internet on 22/tcp".into())
    );
}

#[test]
fn no_public_ip_is_not_exposed_even_with_an_open_nsg() {
    let open = nsg("web-nsg", &[("any", 100, "Allow", "*", "*", "*")]);
    let view = NetworkView::new(
        vec![nic("web-nic", None, Some("web-nsg"))],
        vec![public_ip("web-ip", "203.0.113.7", "Standard")],
        vec![open],
        vec![],
        vec![],
    );
    assert_eq!(exposure_of(&view, "web-nic"), Exposure::default());
}

#[test]
fn without_any_nsg_standard_is_closed_and_basic_is_open() {
    let view = |sku| {
        NetworkView::new(
            vec![nic("web-nic", Some("web-ip"), None)],
            vec![public_ip("web-ip", "203.0.113.7", sku)],
            vec![],
            vec![],
            vec![],
        )
    };
    assert!(!exposure_of(&view("Standard"), "web-nic").internet_facing);
    let basic = exposure_of(&view("Basic"), "web-nic");
    assert!(basic.internet_facing);
    assert_eq!(basic.reasons[0], "public IP 203.0.113.7 on NIC web-nic");
    assert!(
        basic.reasons[1].contains("Basic-SKU"),
        "{:?}",
        basic.reasons
    );
}

#[test]
fn lower_priority_numbers_win() {
    let view = |rules: &[(&str, u32, &str, &str, &str, &str)]| {
        NetworkView::new(
            vec![nic("web-nic", Some("web-ip"), Some("web-nsg"))],
            vec![public_ip("web-ip", "203.0.113.7", "Standard")],
            vec![nsg("web-nsg", rules)],
            vec![],
            vec![],
        )
    };
    // Listed allow-first, but the deny at 100 is evaluated first.
    let denied = view(&[
        ("allow-ssh", 200, "Allow", "Internet", "22", "Tcp"),
        ("deny-ssh", 100, "Deny", "*", "22", "Tcp"),
    ]);
    assert!(!exposure_of(&denied, "web-nic").internet_facing);
    let allowed = view(&[
        ("allow-ssh", 100, "Allow", "Internet", "22", "Tcp"),
        ("deny-ssh", 200, "Deny", "*", "22", "Tcp"),
    ]);
    assert!(exposure_of(&allowed, "web-nic").internet_facing);
    // A deny of one port leaves the rest of a wider allow open.
    let partly = view(&[
        ("deny-ssh", 100, "Deny", "*", "22", "Tcp"),
        ("allow-range", 200, "Allow", "*", "20-25", "Tcp"),
    ]);
    let e = exposure_of(&partly, "web-nic");
    assert_eq!(
        e.reasons[1],
        "NSG web-nsg rule allow-range allows * on 20-21/tcp, 23-25/tcp"
    );
    // A deny for a narrower source does not close the port to the internet.
    let narrow = view(&[
        ("deny-office", 100, "Deny", "198.51.100.0/24", "22", "Tcp"),
        ("allow-ssh", 200, "Allow", "Internet", "22", "Tcp"),
    ]);
    assert!(exposure_of(&narrow, "web-nic").internet_facing);
    // An allow for a narrower source does not open it.
    let office = view(&[("allow-office", 100, "Allow", "198.51.100.0/24", "22", "Tcp")]);
    assert!(!exposure_of(&office, "web-nic").internet_facing);
}

#[test]
fn internet_sources_and_port_forms() {
    for source in ["*", "Internet", "0.0.0.0/0"] {
        let view = NetworkView::new(
            vec![nic("web-nic", Some("web-ip"), Some("web-nsg"))],
            vec![public_ip("web-ip", "203.0.113.7", "Standard")],
            vec![nsg("web-nsg", &[("r", 100, "Allow", source, "*", "*")])],
            vec![],
            vec![],
        );
        let e = exposure_of(&view, "web-nic");
        assert_eq!(
            e.reasons[1],
            format!("NSG web-nsg rule r allows {source} on all ports")
        );
    }
    // sourceAddressPrefixes and destinationPortRanges lists.
    let mut listed = nsg("web-nsg", &[("listed", 100, "Allow", "", "", "Udp")]);
    let p = &mut listed.properties.security_rules[0].properties;
    p.source_address_prefix = None;
    p.source_address_prefixes = vec!["10.0.0.0/8".into(), "Internet".into()];
    p.destination_port_range = None;
    p.destination_port_ranges = vec!["53".into(), "500-501".into()];
    let view = NetworkView::new(
        vec![nic("web-nic", Some("web-ip"), Some("web-nsg"))],
        vec![public_ip("web-ip", "203.0.113.7", "Standard")],
        vec![listed],
        vec![],
        vec![],
    );
    assert_eq!(
        exposure_of(&view, "web-nic").reasons[1],
        "NSG web-nsg rule listed allows Internet on 53/udp, 500-501/udp"
    );
}

fn load_balancer(nat_to_nic: &str, backend_port: u16) -> LoadBalancer {
    let lb = id("loadBalancers", "lb-1");
    let frontend = format!("{lb}/frontendIPConfigurations/frontend");
    parse(
        json!({"name": "lb-1", "id": lb, "sku": {"name": "Standard"}, "properties": {
        "frontendIPConfigurations": [{"name": "frontend", "id": frontend,
            "properties": {"publicIPAddress": {"id": id("publicIPAddresses", "lb-ip")}}}],
        "inboundNatRules": [{"name": "ssh", "id": format!("{lb}/inboundNatRules/ssh"), "properties": {
            "frontendIPConfiguration": {"id": frontend}, "frontendPort": 50001,
            "backendPort": backend_port, "protocol": "Tcp",
            "backendIPConfiguration": {"id": format!("{}/ipConfigurations/ipconfig1",
                id("networkInterfaces", nat_to_nic))}}}]}}),
    )
}

#[test]
fn a_load_balancer_nat_rule_is_a_way_in_for_its_backend_port() {
    let view = |backend_port| {
        NetworkView::new(
            vec![nic("app-nic", None, Some("web-nsg"))],
            vec![public_ip("lb-ip", "203.0.113.9", "Standard")],
            vec![ssh_open()],
            vec![],
            vec![load_balancer("app-nic", backend_port)],
        )
    };
    let e = exposure_of(&view(22), "app-nic");
    assert!(e.internet_facing);
    assert_eq!(
        e.reasons,
        [
            "load balancer lb-1 NAT rule ssh 50001→22/tcp from public IP 203.0.113.9 to NIC app-nic",
            "NSG web-nsg rule allow-ssh allows Internet on 22/tcp",
        ]
    );
    // The NSG opens 22 only; a NAT rule to 3389 stays closed.
    assert!(!exposure_of(&view(3389), "app-nic").internet_facing);
    // A NAT rule to another NIC is not a way in to this one.
    let other = NetworkView::new(
        vec![nic("app-nic", None, Some("web-nsg"))],
        vec![public_ip("lb-ip", "203.0.113.9", "Standard")],
        vec![ssh_open()],
        vec![],
        vec![load_balancer("db-nic", 22)],
    );
    assert!(!exposure_of(&other, "app-nic").internet_facing);
}

#[test]
fn ids_compare_case_insensitively() {
    let mut n = nic("web-nic", Some("web-ip"), Some("web-nsg"));
    n.id = n.id.to_ascii_uppercase();
    let c = &mut n.properties.ip_configurations[0].properties;
    c.public_ip_address.as_mut().unwrap().id = id("publicIPAddresses", "web-ip").to_lowercase();
    c.subnet.as_mut().unwrap().id = c.subnet.as_ref().unwrap().id.to_uppercase();
    let view = NetworkView::new(
        vec![n],
        vec![public_ip("web-ip", "203.0.113.7", "Standard")],
        vec![
            ssh_open(),
            nsg("subnet-nsg", &[("deny", 100, "Deny", "*", "*", "*")]),
        ],
        vec![vnet_with_subnet_nsg("SUBNET-NSG")],
        vec![],
    );
    // Found in any casing — and the subnet's NSG, found too, closes it.
    assert!(
        !view
            .exposure(&[id("networkinterfaces", "web-nic").to_lowercase()])
            .internet_facing
    );
    let view = NetworkView::new(
        vec![nic("web-nic", Some("web-ip"), Some("WEB-NSG"))],
        vec![public_ip("web-ip", "203.0.113.7", "Standard")],
        vec![ssh_open()],
        vec![],
        vec![],
    );
    assert!(
        view.exposure(&[id("networkInterfaces", "web-nic").to_uppercase()])
            .internet_facing
    );
}

#[test]
fn documented_default_rules_close_an_nsg_without_own_rules() {
    let view = NetworkView::new(
        vec![nic("web-nic", Some("web-ip"), Some("empty"))],
        vec![public_ip("web-ip", "203.0.113.7", "Basic")],
        vec![nsg("empty", &[])],
        vec![],
        vec![],
    );
    assert!(!exposure_of(&view, "web-nic").internet_facing);
}

#[test]
fn unknown_nics_are_not_exposed() {
    let view = NetworkView::default();
    assert_eq!(view.exposure(&["/nope".into()]), Exposure::default());
}

#[test]
fn a_load_balancing_rule_to_the_nics_backend_pool_is_a_way_in() {
    let lb = id("loadBalancers", "web-lb");
    let frontend = format!("{lb}/frontendIPConfigurations/frontend");
    let pool = format!("{lb}/backendAddressPools/web-pool");
    let balancer: LoadBalancer = parse(json!({"name": "web-lb", "id": lb, "properties": {
        "frontendIPConfigurations": [{"id": frontend,
            "properties": {"publicIPAddress": {"id": id("publicIPAddresses", "lb-ip")}}}],
        "loadBalancingRules": [{"name": "https", "properties": {
            "frontendIPConfiguration": {"id": frontend}, "backendAddressPool": {"id": pool},
            "frontendPort": 443, "backendPort": 8443, "protocol": "Tcp"}}]}}));
    let mut member = nic("web-nic", None, Some("web-nsg"));
    member.properties.ip_configurations[0]
        .properties
        .load_balancer_backend_address_pools = vec![parse(json!({"id": pool.to_uppercase()}))];
    let view = |nic| {
        NetworkView::new(
            vec![nic],
            vec![public_ip("lb-ip", "203.0.113.10", "Standard")],
            vec![nsg(
                "web-nsg",
                &[("allow-app", 100, "Allow", "Internet", "8443", "Tcp")],
            )],
            vec![],
            vec![balancer.clone()],
        )
    };
    let e = exposure_of(&view(member), "web-nic");
    assert_eq!(
        e.reasons,
        [
            "load balancer web-lb rule https 443→8443/tcp from public IP 203.0.113.10 to backend pool web-pool with NIC web-nic",
            "NSG web-nsg rule allow-app allows Internet on 8443/tcp",
        ]
    );
    // Not in the pool: no way in.
    assert!(!exposure_of(&view(nic("web-nic", None, Some("web-nsg"))), "web-nic").internet_facing);
}
