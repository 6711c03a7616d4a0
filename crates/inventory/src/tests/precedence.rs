//! Each level sets `v<level>` and every key above it, so `v<K>` must end up with level K's
//! value exactly when each level beats every level below it.

use serde_json::{json, Value};

use super::{load, write};
use crate::{load_vars_file, merge, Vars};

const LEVELS: usize = 10;

/// Lines `vK<sep>"LN"` for every K from `level` up.
fn keys_from(level: usize, sep: &str) -> String {
    (level..=LEVELS)
        .map(|k| format!("v{k}{sep}\"L{level}\"\n"))
        .collect()
}

#[test]
fn every_level_overrides_the_one_below() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 1-3: group vars written in the inventory, all < parent (nova) < child (compute).
    // 4-6: group_vars files in the same group order.
    // 7: host vars in the inventory; 8: host_vars file; 9-10: extra vars files.
    let inventory = format!(
        "[compute]\ncompute01 {}\n[nova:children]\ncompute\n\
         [all:vars]\n{}[nova:vars]\n{}[compute:vars]\n{}",
        keys_from(7, "=").replace('\n', " "),
        keys_from(1, "="),
        keys_from(2, "="),
        keys_from(3, "="),
    );
    write(d, "group_vars/all.yml", &keys_from(4, ": "));
    write(d, "group_vars/nova.yaml", &keys_from(5, ": "));
    write(d, "group_vars/compute", &keys_from(6, ": "));
    write(d, "host_vars/compute01.yml", &keys_from(8, ": "));
    let globals = write(d, "globals.yml", &keys_from(9, ": "));
    let passwords = write(d, "passwords.yml", &keys_from(10, ": "));

    let inv = load(d, "multinode", &inventory);
    let mut vars = inv.host_vars("compute01");
    merge(&mut vars, &load_vars_file(&globals).unwrap());
    merge(&mut vars, &load_vars_file(&passwords).unwrap());
    for k in 1..=LEVELS {
        assert_eq!(vars[&format!("v{k}")], json!(format!("L{k}")), "v{k}");
    }
}

#[test]
fn same_depth_groups_go_by_name_unless_priority_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let inv = load(
        dir.path(),
        "inv",
        "[aaa]\nh\n[zzz]\nh\n[aaa:vars]\nx=from_aaa\ny=from_aaa\n\
         [zzz:vars]\nx=from_zzz\ny=from_zzz\nansible_group_priority=0\n",
    );
    // Equal depth: zzz sorts after aaa, but its lower priority puts it first.
    assert_eq!(inv.host_vars("h")["x"], json!("from_aaa"));
    let inv = load(
        dir.path(),
        "inv2",
        "[aaa]\nh\n[zzz]\nh\n[aaa:vars]\nx=a\n[zzz:vars]\nx=z\n",
    );
    assert_eq!(inv.host_vars("h")["x"], json!("z"));
}

#[test]
fn depth_beats_name_order() {
    let dir = tempfile::tempdir().unwrap();
    // `aaa` is a child of `zzz`, so it is deeper and wins despite its name.
    let inv = load(
        dir.path(),
        "inv",
        "[aaa]\nh\n[zzz:children]\naaa\n[aaa:vars]\nx=child\n[zzz:vars]\nx=parent\n",
    );
    assert_eq!(inv.host_vars("h")["x"], json!("child"));
}

#[test]
fn group_vars_directories_and_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "group_vars/compute/10-base.yml",
        "a: base\nb: base\nc: base\n",
    );
    write(d, "group_vars/compute/20-site.yaml", "b: site\nc: site\n");
    write(d, "group_vars/compute/nested/30.json", "{\"n\": 1}");
    write(d, "group_vars/compute/.20-site.yaml.swp", "{{{ not yaml");
    write(d, "group_vars/compute/README.md", "- not: [vars");
    write(d, "group_vars/compute/old.yml~", "- not: [vars");
    // `compute.yml` is read after the `compute/` directory, so it wins.
    write(d, "group_vars/compute.yml", "c: file\n");
    write(d, "host_vars/c1/main.yml", "h: 1\n");
    write(
        d,
        "host_vars/unknown-host.yml",
        "- ignored: because nobody reads it\n",
    );
    let inv = load(d, "inv", "[compute]\nc1\n");
    let vars = inv.host_vars("c1");
    assert_eq!(vars["a"], json!("base"));
    assert_eq!(vars["b"], json!("site"));
    assert_eq!(vars["c"], json!("file"));
    assert_eq!(vars["n"], json!(1));
    assert_eq!(vars["h"], json!(1));
}

#[test]
fn merge_replaces_top_level_keys_whole() {
    let mut lower: Vars = json!({"a": {"x": 1, "y": 2}, "b": 1})
        .as_object()
        .unwrap()
        .clone();
    let higher: Vars = json!({"a": {"x": 9}}).as_object().unwrap().clone();
    merge(&mut lower, &higher);
    assert_eq!(Value::Object(lower), json!({"a": {"x": 9}, "b": 1}));
}

#[test]
fn vars_files_keep_types_and_accept_empty_files() {
    let dir = tempfile::tempdir().unwrap();
    let globals = write(
        dir.path(),
        "globals.yml",
        "---\nlibvirt_tls: true\nnova_libvirt_port: 16514\n1: numeric key\nsecret: !unsafe '{{ x }}'\n",
    );
    let vars = load_vars_file(&globals).unwrap();
    assert_eq!(vars["libvirt_tls"], json!(true));
    assert_eq!(vars["nova_libvirt_port"], json!(16514));
    assert_eq!(vars["1"], json!("numeric key"));
    // Kept literal for the templating that comes later (see tests::secrets).
    assert_eq!(crate::unsafe_text(&vars["secret"]), Some("{{ x }}"));
    let empty = write(dir.path(), "passwords.yml", "# all commented out\n");
    assert!(load_vars_file(&empty).unwrap().is_empty());
}
