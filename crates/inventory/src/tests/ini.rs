use serde_json::json;

use super::{load, strings, MULTINODE};
use crate::truthy;

#[test]
fn hosts_keep_file_order_and_ranges_expand() {
    let dir = tempfile::tempdir().unwrap();
    let inv = load(dir.path(), "multinode", MULTINODE);
    assert_eq!(
        inv.hosts(),
        strings(&[
            "lonely",
            "control01",
            "compute01",
            "compute02",
            "compute03",
            "compute04",
            "edge01"
        ])
    );
}

#[test]
fn groups_include_children_recursively() {
    let dir = tempfile::tempdir().unwrap();
    let inv = load(dir.path(), "multinode", MULTINODE);
    let compute = strings(&["compute01", "compute02", "compute03", "compute04", "edge01"]);
    assert_eq!(inv.group_hosts("compute").unwrap(), compute);
    assert_eq!(inv.group_hosts("storage").unwrap(), compute);
    let mut nova = strings(&["control01"]);
    nova.extend(compute.clone());
    assert_eq!(inv.group_hosts("nova").unwrap(), nova);
    assert_eq!(inv.group_hosts("ungrouped").unwrap(), strings(&["lonely"]));
    assert_eq!(inv.group_hosts("all").unwrap(), inv.hosts());
    assert_eq!(
        inv.group_names(),
        strings(&[
            "all",
            "compute",
            "control",
            "nova",
            "nova-compute",
            "storage",
            "ungrouped"
        ])
    );
}

#[test]
fn inline_values_are_typed_like_ansible() {
    let dir = tempfile::tempdir().unwrap();
    let inv = load(dir.path(), "multinode", MULTINODE);
    let vars = inv.host_vars("compute04");
    assert_eq!(vars["ansible_host"], json!("10.0.0.24"));
    assert_eq!(vars["note"], json!("two words"));
    assert_eq!(vars["port_num"], json!(22));
    assert_eq!(vars["flag"], json!(true));
    assert_eq!(vars["nova_libvirt_port"], json!(16514));
    // `yes` is not a Python literal: it stays text, and `truthy` reads it as Ansible does.
    assert_eq!(vars["libvirt_tls"], json!("yes"));
    assert!(truthy(&vars["libvirt_tls"]));
    assert_eq!(vars["ansible_user"], json!("root"));
    assert_eq!(inv.host_vars("compute02")["ansible_user"], json!("kolla"));
    assert_eq!(inv.host_vars("edge01")["ansible_port"], json!(2222));
    assert_eq!(inv.host_vars("control01").get("libvirt_tls"), None);
}

#[test]
fn magic_variables() {
    let dir = tempfile::tempdir().unwrap();
    let inv = load(dir.path(), "multinode", MULTINODE);
    let vars = inv.host_vars("compute01");
    assert_eq!(vars["inventory_hostname"], json!("compute01"));
    assert_eq!(vars["inventory_hostname_short"], json!("compute01"));
    assert_eq!(
        vars["group_names"],
        json!(["compute", "nova", "nova-compute", "storage"])
    );
    assert_eq!(vars["groups"]["control"], json!(["control01"]));
    assert_eq!(vars["groups"]["ungrouped"], json!(["lonely"]));
    assert_eq!(vars["groups"]["all"].as_array().unwrap().len(), 7);
    assert_eq!(
        vars["inventory_dir"],
        json!(dir.path().display().to_string())
    );
    assert_eq!(inv.host_vars("lonely")["group_names"], json!(["ungrouped"]));
    assert_eq!(inv.groups_of("control01"), strings(&["control", "nova"]));
}

#[test]
fn group_declared_only_by_children_section_and_hosts_under_all() {
    let dir = tempfile::tempdir().unwrap();
    let inv = load(
        dir.path(),
        "hosts.ini",
        "[all]\nsolo\n[parent:children]\nkid\n[kid]\nk1\n[parent:vars]\nx=1\n",
    );
    assert_eq!(inv.group_hosts("parent").unwrap(), strings(&["k1"]));
    assert_eq!(inv.group_hosts("ungrouped").unwrap(), strings(&["solo"]));
    assert_eq!(inv.host_vars("k1")["x"], json!(1));
    assert_eq!(inv.host_vars("solo").get("x"), None);
}

#[test]
fn unknown_group_is_an_error_naming_group_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let inv = load(dir.path(), "multinode", MULTINODE);
    let err = inv.group_hosts("computes").unwrap_err().to_string();
    let file = dir.path().join("multinode");
    assert_eq!(
        err,
        format!("group \"computes\" is not defined in {}", file.display())
    );
}
