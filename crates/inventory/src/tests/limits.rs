//! Input past virtfleet's limits (see `crate::limits`): each case is an error naming the file
//! (and line where there is one), within a second, never a hang, a crash or a huge allocation.

use std::path::Path;

use serde_json::json;

use super::{assert_at, inventory_error, quickly, write};
use crate::{load_inventory, load_vars_file};

fn vars_error(dir: &Path, name: &str, content: &str) -> String {
    let path = write(dir, name, content);
    match load_vars_file(&path) {
        Ok(vars) => panic!("{name} loaded without error: {} keys", vars.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn oversized_and_endless_files_fail_fast() {
    for path in [Path::new("/dev/zero"), Path::new("/dev/urandom")] {
        let message = quickly("reading /dev/zero", || load_inventory(path))
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&format!("{}: ", path.display())) && message.contains("16 MiB"),
            "{message}"
        );
        let message = quickly("reading /dev/zero", || load_vars_file(path))
            .unwrap_err()
            .to_string();
        assert!(message.contains("16 MiB"), "{message}");
    }
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("globals.yml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(17 << 20)
        .unwrap();
    let message = quickly("a 17 MiB file", || load_vars_file(&big))
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with(&format!("{}: ", big.display())) && message.contains("16 MiB"),
        "{message}"
    );
    // The same limit holds for group_vars/ and host_vars/ files.
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
    std::fs::create_dir_all(d.join("host_vars/c1")).unwrap();
    std::fs::write(d.join("host_vars/c1/main.yml"), "a: 1\n").unwrap();
    // Two links back to the directory itself: 2^n paths if followed blindly.
    std::os::unix::fs::symlink(".", d.join("host_vars/c1/a")).unwrap();
    std::os::unix::fs::symlink(".", d.join("host_vars/c1/b")).unwrap();
    let message = quickly("a symlink loop in host_vars", || {
        inventory_error(d, "inv", "[compute]\nc1\n")
    });
    assert!(
        message.contains("host_vars/c1/a") && message.contains("symlink loop"),
        "{message}"
    );

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
