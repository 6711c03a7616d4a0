//! Every parse error names the file and, where there is one, the line.

use super::{assert_at, assert_inventory_errors, inventory_error, write};
use crate::{load_inventory, load_vars_file, InventoryError};

#[test]
fn ini_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&str, usize, &str)] = &[
        (
            "[compute]\ncompute01\n\ncompute02 foo\n",
            4,
            r#"host "compute02": argument 1 is not key=value"#,
        ),
        ("# c\n[bad group]\n", 2, "invalid section header"),
        (
            "[compute]\nc1\n[compute:vars]\nnot an assignment\n",
            4,
            "expected key=value in [compute:vars]",
        ),
        (
            "[g]\nh\n[g:vars]\nx=1\n\n[g:vars]\nx=2\n",
            7,
            "\"x\" is set again for group \"g\" (first set on line 4)",
        ),
        (
            "[parent:children]\nmissing\n",
            2,
            "names group \"missing\", which is never defined",
        ),
        (
            "[h]\nx\n\n[ghost:vars]\na=1\n",
            4,
            "[ghost:vars] is for group \"ghost\"",
        ),
        ("[g:hostz]\n", 1, "unknown type \"hostz\""),
        ("[g]\nh a=\"open\n", 2, "no closing quotation"),
        ("[g]\nh a=1 a=2\n", 2, "sets \"a\" twice"),
        ("[a:children]\nb\n[b:children]\na\n", 4, "creates a loop"),
        ("[g]\nc[3:1]\n", 2, "begin <= end"),
        ("[g]\nc1:\n", 2, "reserved for a port"),
    ];
    assert_inventory_errors(d, "", cases);
}

#[test]
fn yaml_inventory_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&str, usize, &str)] = &[
        (
            "all:\n  hosts:\n    h1:\n    h1:\n",
            3,
            "duplicate entry \"h1\"",
        ),
        (
            "all:\n  children:\n    compute:\n      host:\n        h1:\n",
            4,
            "unknown field `host`",
        ),
        ("- all\n", 1, "invalid type: sequence"),
        ("all:\n  hosts: [h1, h2]\n", 2, "invalid type: sequence"),
        (
            "all:\n  hosts:\n    h1: not-a-map\n",
            3,
            "invalid type: string",
        ),
        (
            "all:\n  vars:\n    a: 1\n    a: 2\n",
            3,
            "duplicate entry with key \"a\"",
        ),
        (
            "all:\n  hosts:\n   h1:\n  bad indent\n",
            5,
            "could not find expected ':', while scanning a simple key at line 4",
        ),
    ];
    assert_inventory_errors(d, ".yml", cases);
}

#[test]
fn yaml_problems_without_a_line_still_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let message = inventory_error(
        d,
        "loop.yml",
        "a:\n  children:\n    b:\n      children:\n        a:\n",
    );
    assert!(
        message.starts_with(&format!("{}: ", d.join("loop.yml").display())),
        "{message}"
    );
    assert!(message.contains("loop of groups"), "{message}");
    let message = inventory_error(
        d,
        "vault.yml",
        "all:\n  vars:\n    pw: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      6162\n",
    );
    assert!(
        message.contains("group \"all\": variable pw: !vault values are not supported"),
        "{message}"
    );
}

#[test]
fn group_and_host_vars_errors_name_that_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "group_vars/compute.yml", "ok: 1\nlist:\n  - a\n - b\n");
    let message = inventory_error(d, "inv", "[compute]\nc1\n");
    assert_at(&message, d, "group_vars/compute.yml", 4, "");

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "host_vars/c1/main.yml", "- a\n- b\n");
    let message = inventory_error(d, "inv", "[compute]\nc1\n");
    assert_at(
        &message,
        d,
        "host_vars/c1/main.yml",
        1,
        "invalid type: sequence, expected a YAML mapping",
    );
}

#[test]
fn vars_file_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&str, usize, &str)] = &[
        ("- a\n- b\n", 1, "expected a YAML mapping"),
        ("just text\n", 1, "expected a YAML mapping"),
        ("a: 1\nb: 2\na: 3\n", 1, "duplicate entry with key \"a\""),
        ("a: [1, 2\n", 2, ""),
        (
            "$ANSIBLE_VAULT;1.1;AES256\n3132\n",
            1,
            "encrypted with ansible-vault",
        ),
    ];
    for (i, (content, line, needle)) in cases.iter().enumerate() {
        let name = format!("vars{i}.yml");
        let path = write(d, &name, content);
        let message = load_vars_file(&path).unwrap_err().to_string();
        assert_at(&message, d, &name, *line, needle);
    }
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope");
    let err = load_inventory(&path).unwrap_err();
    assert!(matches!(err, InventoryError::Io { .. }));
    assert!(
        err.to_string()
            .starts_with(&format!("{}: ", path.display())),
        "{err}"
    );
}
