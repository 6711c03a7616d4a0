//! Host and group names Ansible refuses: they would name files outside `host_vars/` and
//! `group_vars/` or print as something else. Each is an error naming file:line and the name.

use super::{assert_inventory_errors, inventory_error, write};

#[test]
fn ini_host_and_group_names_are_validated_like_ansible() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&str, usize, &str)] = &[
        (
            "[compute]\n/etc/passwd\n",
            2,
            r#"invalid host name "/etc/passwd": it contains '/'"#,
        ),
        (
            "[compute]\nok1\n../../x ansible_host=10.0.0.1\n",
            3,
            r#"invalid host name "../../x""#,
        ),
        (
            "[compute]\n.hidden\n",
            2,
            r#"invalid host name ".hidden": it starts with '.'"#,
        ),
        (
            "[compute]\n\"a\u{1}b\"\n",
            2,
            r#"invalid host name "a\u{1}b": it contains a control character"#,
        ),
        (
            "[compute]\nab\0c\n",
            2,
            r#"invalid host name "ab\u{0}c": it contains a control character"#,
        ),
        (
            "[compute]\nabc\u{202e}def\n",
            2,
            r#"invalid host name "abc\u{202e}def": it contains a control character"#,
        ),
        (
            "[compute]\nc[1:2]/x\n",
            2,
            r#"invalid host name "c1/x": it contains '/'"#,
        ),
        (
            "[compute]\n\"\" a=1\n",
            2,
            "invalid host name \"\": it is empty",
        ),
        ("[compute]\n:22\n", 2, "invalid host name \"\": it is empty"),
        ("[../evil]\nh1\n", 1, r#"invalid group name "../evil""#),
        (
            "[ok]\nh1\n[parent:children]\n../evil\n",
            4,
            r#"invalid group name "../evil""#,
        ),
        (
            "[.secret:vars]\na=1\n",
            1,
            r#"invalid group name ".secret": it starts with '.'"#,
        ),
    ];
    assert_inventory_errors(d, "", cases);
}

#[test]
fn yaml_host_and_group_names_are_validated_like_ansible() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&str, usize, &str)] = &[
        (
            "all:\n  hosts:\n    /etc/passwd:\n",
            3,
            r#"invalid host name "/etc/passwd": it contains '/'"#,
        ),
        // serde_yaml_ng names the line where the mapping starts, as for duplicate entries.
        (
            "all:\n  hosts:\n    ok1:\n    \"a\\tb\": {x: 1}\n",
            3,
            r#"invalid host name "a\tb": it contains a control character"#,
        ),
        (
            "all:\n  children:\n    ../g:\n      hosts:\n        h1:\n",
            3,
            r#"invalid group name "../g""#,
        ),
        (
            "../top:\n  hosts:\n    h1:\n",
            1,
            r#"invalid group name "../top""#,
        ),
        (
            "all:\n  hosts:\n    c[1:2]/x:\n",
            3,
            r#"invalid host name "c1/x""#,
        ),
    ];
    assert_inventory_errors(d, ".yml", cases);
}

/// `host_vars/<name>` and `group_vars/<name>` are only ever looked up inside those
/// directories: a file a traversing name would reach is never read.
#[test]
fn vars_lookup_never_leaves_host_vars_or_group_vars() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Were these read, the error would be a YAML error about them (or their content).
    write(d, "outside.yml", "leaked: [unclosed\n");
    write(d, "host_vars/.yml", "leaked: [unclosed\n");
    std::fs::create_dir_all(d.join("group_vars")).unwrap();
    for (i, content) in [
        "[compute]\n../outside\n",
        "all:\n  hosts:\n    ../outside:\n",
        "[../outside]\nh1\n",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("inv{i}");
        let message = inventory_error(d, &name, content);
        assert!(message.contains("invalid"), "{message}");
        assert!(!message.contains("outside.yml"), "{message}");
        assert!(!message.contains("leaked"), "{message}");
    }
}
