use serde_json::json;

use super::{load, strings};

const INVENTORY: &str = r#"
all:
  vars:
    ansible_user: root
    libvirt_tls: false
  hosts:
    lonely:
  children:
    control:
      hosts:
        control01: {ansible_host: 10.0.0.10}
    compute:
      hosts:
        compute[01:02]:
        compute03:
          ansible_host: 10.0.0.23
          nova_compute_virt_type: qemu
          ports: [16514, 16509]
          base: &base {a: 1, b: 2}
          derived:
            <<: *base
            b: 3
      vars:
        libvirt_tls: true
    nova:
      children:
        control:
        compute:
"#;

#[test]
fn structure_order_and_membership() {
    let dir = tempfile::tempdir().unwrap();
    let inv = load(dir.path(), "inventory.yml", INVENTORY);
    assert_eq!(
        inv.hosts(),
        strings(&["lonely", "control01", "compute01", "compute02", "compute03"])
    );
    assert_eq!(
        inv.group_hosts("nova").unwrap(),
        strings(&["control01", "compute01", "compute02", "compute03"])
    );
    assert_eq!(inv.group_hosts("ungrouped").unwrap(), strings(&["lonely"]));
    assert_eq!(inv.groups_of("compute02"), strings(&["compute", "nova"]));
    assert_eq!(inv.groups_of("lonely"), strings(&["ungrouped"]));
}

#[test]
fn vars_keep_yaml_types_and_child_groups_win() {
    let dir = tempfile::tempdir().unwrap();
    let inv = load(dir.path(), "inventory.yml", INVENTORY);
    let vars = inv.host_vars("compute03");
    assert_eq!(vars["ansible_host"], json!("10.0.0.23"));
    assert_eq!(vars["ports"], json!([16514, 16509]));
    assert_eq!(vars["derived"], json!({"a": 1, "b": 3}));
    assert_eq!(vars["libvirt_tls"], json!(true));
    assert_eq!(vars["ansible_user"], json!("root"));
    assert_eq!(inv.host_vars("control01")["libvirt_tls"], json!(false));
    assert_eq!(
        inv.host_vars("compute01")["group_names"],
        json!(["compute", "nova"])
    );
}

#[test]
fn yaml_is_detected_without_an_extension_and_ini_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = load(dir.path(), "hosts", "# lab\nall:\n  hosts:\n    h1:\n");
    assert_eq!(yaml.hosts(), strings(&["h1"]));
    let ini = load(dir.path(), "lab.ini", "[compute]\nh2\n");
    assert_eq!(ini.group_hosts("compute").unwrap(), strings(&["h2"]));
    let json = load(
        dir.path(),
        "inv.json",
        r#"{"compute": {"hosts": {"h3": {"x": 1}}}}"#,
    );
    assert_eq!(json.host_vars("h3")["x"], json!(1));
}

#[test]
fn empty_and_bare_string_sections() {
    let dir = tempfile::tempdir().unwrap();
    let empty = load(dir.path(), "empty.yml", "# nothing yet\n");
    assert!(empty.hosts().is_empty());
    let inv = load(dir.path(), "short.yml", "compute:\n  hosts: c1\nother:\n");
    assert_eq!(inv.group_hosts("compute").unwrap(), strings(&["c1"]));
    assert!(inv.group_hosts("other").unwrap().is_empty());
}
