//! Input past virtfleet's limits (see `crate::limits`): each case is an error naming the file
//! (and line where there is one), within a second, never a hang, a crash or a huge allocation.

use std::path::Path;

use serde_json::json;

use super::{assert_at, inventory_error, quickly, write};
use crate::load_vars_file;

fn vars_error(dir: &Path, name: &str, content: &str) -> String {
    let path = write(dir, name, content);
    match load_vars_file(&path) {
        Ok(vars) => panic!("{name} loaded without error: {} keys", vars.len()),
        Err(e) => e.to_string(),
    }
}

/// `/dev/zero`, a huge file and a symlink loop are in the corpus test (tests/bad_input.rs).
#[test]
fn vars_dir_files_are_size_limited_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("host_vars")).unwrap();
    std::fs::File::create(d.join("host_vars/c1.yml"))
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    let message = quickly("a 17 MiB host_vars file", || {
        inventory_error(d, "inv", "[compute]\nc1\n")
    });
    assert!(
        message.contains("host_vars/c1.yml") && message.contains("16 MiB"),
        "{message}"
    );
}

#[test]
fn vars_directories_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let deep = d.join("group_vars/all").join(["x"; 20].join("/"));
    std::fs::create_dir_all(&deep).unwrap();
    let message = inventory_error(d, "inv", "[compute]\nc1\n");
    assert!(message.contains("more than 16 levels deep"), "{message}");
}

#[test]
fn deeply_nested_ini_values_are_an_error_not_a_stack_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let message = quickly("a 20k deep INI value", || {
        inventory_error(d, "inv0", &format!("[g]\nh1 x={deep}\n"))
    });
    assert_at(&message, d, "inv0", 2, "nested deeper than 64 levels");
    let message = inventory_error(d, "inv1", &format!("[g]\nh1\n[g:vars]\ny={deep}\n"));
    assert_at(&message, d, "inv1", 4, "nested deeper than 64 levels");
    // 64 levels are fine.
    let ok = format!("{}{}", "[".repeat(64), "]".repeat(64));
    let inv = super::load(d, "inv2", &format!("[g]\nh1 x={ok}\n"));
    assert!(inv.host_vars("h1")["x"].is_array());
}

#[test]
fn deeply_nested_yaml_fails_fast_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (open, close) in [("[", "]"), ("{a: ", "}")] {
        let deep = format!("a: {}1{}\n", open.repeat(100_000), close.repeat(100_000));
        let message = quickly("a 100k deep YAML value", || {
            vars_error(d, "deep.yml", &deep)
        });
        assert_at(&message, d, "deep.yml", 1, "nested deeper than 64 levels");
        let inventory = format!("all:\n  vars:\n    {deep}");
        let message = quickly("a 100k deep YAML inventory", || {
            inventory_error(d, "deep-inv.yml", &inventory)
        });
        assert_at(
            &message,
            d,
            "deep-inv.yml",
            3,
            "nested deeper than 64 levels",
        );
    }
    // Block nesting is cheap to parse; serde_yaml_ng's own limit (128) refuses it.
    let block: String = (0..3000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    let message = quickly("3000 nested block mappings", || {
        vars_error(d, "block.yml", &block)
    });
    assert!(message.contains("recursion limit exceeded"), "{message}");
    // Balanced brackets and closing brackets in strings, comments and block scalars are fine.
    let text = format!(
        "a: \"{0}\"\nb: '{1}'\n# {0}\nc: |\n  {1}\nd: [[[1]]]\n",
        "[x]".repeat(200),
        "]".repeat(200),
    );
    let path = write(d, "fine.yml", &text);
    let vars = load_vars_file(&path).unwrap();
    assert_eq!(vars["d"], json!([[[1]]]));
    // The check is an upper bound: 65 unbalanced `[` in one string are refused too.
    let message = vars_error(d, "odd.yml", &format!("a: \"{}\"\n", "[".repeat(65)));
    assert!(
        message.contains("nested deeper than 64 levels"),
        "{message}"
    );
}

#[test]
fn host_ranges_are_capped_before_expanding() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases: &[(&str, usize)] = &[
        ("[g]\nc[0:99999999999]\n", 2),
        ("[g]\nc[0:999]-[0:999]\n", 2),
        ("[g]\nc[0:18446744073709551615]\n", 2),
    ];
    for (i, (content, line)) in cases.iter().enumerate() {
        let name = format!("inv{i}");
        let message = quickly("a huge host range", || inventory_error(d, &name, content));
        assert_at(&message, d, &name, *line, "more than 100000 hosts");
    }
    // Across lines the count is of distinct hosts: listing them again adds none.
    let text = "[g]\na[1:60000]\n[h]\na[1:60000]\n[i]\nb[1:40000]\nb0\n";
    let message = inventory_error(d, "sum", text);
    assert_at(&message, d, "sum", 7, "more than 100000 hosts");
    let message = quickly("a huge YAML host range", || {
        inventory_error(d, "r.yml", "all:\n  hosts:\n    c[0:99999999999]:\n")
    });
    assert!(
        message.starts_with(&d.join("r.yml").display().to_string())
            && message.contains("more than 100000 hosts"),
        "{message}"
    );
}

#[test]
fn a_large_value_on_many_hosts_is_refused_before_copying() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 300 KB on 1000 hosts: about 300 MB of copies.
    let big = "x".repeat(300_000);
    let message = quickly("300 KB on 1000 hosts", || {
        inventory_error(d, "inv", &format!("[g]\nc[0:999] x={big}\n"))
    });
    assert_at(&message, d, "inv", 2, "take more than 256 MiB");
    let message = quickly("300 KB on 1000 YAML hosts", || {
        inventory_error(
            d,
            "inv.yml",
            &format!("all:\n  hosts:\n    c[0:999]: {{x: {big}}}\n"),
        )
    });
    assert!(message.contains("take more than 256 MiB"), "{message}");
}

/// `hosts` in group `g0`, and `g<i>` the parent of `g<i-1>` for each `i`, in that order.
fn group_chain(hosts: &str, links: impl Iterator<Item = usize>) -> String {
    let mut text = format!("[g0]\n{hosts}\n");
    for i in links {
        text.push_str(&format!("[g{i}:children]\ng{}\n", i - 1));
    }
    text
}

#[test]
fn many_groups_and_long_chains_of_groups_stay_fast() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A chain of 2000 groups written bottom-up, then a link that closes the loop.
    let mut text = group_chain("h1", (1..2000).rev());
    let inv = quickly("a chain of 2000 groups", || super::load(d, "chain", &text));
    assert_eq!(
        inv.host_vars("h1")["group_names"].as_array().unwrap().len(),
        2000
    );
    text.push_str("[g0:children]\ng1999\n");
    let message = quickly("a loop of 2000 groups", || {
        inventory_error(d, "loop", &text)
    });
    let line = text.lines().count();
    assert_at(&message, d, "loop", line, "creates a loop of groups");
    let many: String = (0..10_001).map(|i| format!("[g{i}]\n")).collect();
    let message = quickly("10001 groups", || inventory_error(d, "many", &many));
    assert!(message.contains("more than 10000 groups"), "{message}");
}

#[test]
fn the_groups_variable_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 50 000 hosts seen through 21 nested groups: 1 050 000 entries in `groups`.
    let text = group_chain("c[1:50000]", 1..=20);
    let message = inventory_error(d, "inv", &text);
    assert!(
        message.starts_with(&d.join("inv").display().to_string())
            && message.contains("more than 1000000 hosts in all"),
        "{message}"
    );
}
