//! Errors never repeat a value: only names, files, lines and what is wrong. Values may be
//! passwords (passwords.yml, `ansible_password=...` on a host line). And Ansible's `!unsafe`,
//! which keeps a password containing `{{` from being templated, is kept.

use serde_json::json;

use super::{inventory_error, write};
use crate::load_vars_file;

const SECRET: &str = "Hunter2-Secret";

/// Broken inputs that carry a secret; no error may repeat it (or its tail).
#[test]
fn errors_never_echo_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vars_files = [
        format!("{SECRET}\n"),
        format!("\"{SECRET}\"\n"),
        format!("- {SECRET}\n"),
        format!("{SECRET}: [1\n"),
        format!("a: !!int {SECRET}\n"),
        format!("a: !!float {SECRET}\n"),
        format!("a: !!bool {SECRET}\n"),
        format!("a: !!binary {SECRET}\n"),
        format!("a: !!null {SECRET}\n"),
        format!("a: !vault {SECRET}\n"),
        format!("x: 1\n<<: {SECRET}\n"),
        format!("nova_password: \"{SECRET}\\q\"\n"),
        format!("nova_password: '{SECRET}\n"),
    ];
    for (i, content) in vars_files.iter().enumerate() {
        let name = format!("passwords{i}.yml");
        let path = write(d, &name, content);
        if let Err(e) = load_vars_file(&path) {
            let message = e.to_string();
            assert!(message.contains(&name), "{message}");
            assert!(!message.contains("Secret"), "case {i}: {message}");
        }
    }
    let inventories = [
        ("a.yml", format!("all:\n  hosts:\n    h1: {SECRET}\n")),
        ("b.yml", format!("all:\n  vars: {SECRET}\n")),
        ("c.yml", format!("all:\n  hosts:\n    h1: [{SECRET}]\n")),
        (
            "d.yml",
            format!("all:\n  hosts:\n    h1:\n      pw: !vault {SECRET}\n"),
        ),
        ("e", format!("[g]\nh1 ansible_password=\"{SECRET}\n")),
        ("f", format!("[g]\nh1 ansible_password=Hunter2 {SECRET}\n")),
        (
            "g",
            format!("[g]\nh1 a_password={SECRET} a_password={SECRET}\n"),
        ),
        ("h", format!("[g]\nh1\n[g:vars]\n{SECRET}\n")),
        ("i", format!("[g]\nh1 ={SECRET}\n")),
        ("j", format!("[g]\nh1\n[g:vars]\n={SECRET}\n")),
        ("k", format!("[g]\nh1\n[g:vars]\na=1\na={SECRET}\n")),
    ];
    for (name, content) in inventories {
        let message = inventory_error(d, name, &content);
        assert!(message.contains(name), "{message}");
        assert!(!message.contains("Secret"), "{name}: {message}");
    }
}

/// Ansible's `!unsafe` is carried as `{"__ansible_unsafe": text}` (Ansible's own JSON form)
/// when the text would otherwise be templated; other tagged text is plain.
#[test]
fn unsafe_tag_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "passwords.yml",
        "pw: !unsafe \"pw{{ 7*7 }}\"\nplain: !unsafe no-braces\n\
         list: !unsafe [\"a{% b %}\", 1, {k: \"{{ c }}\"}]\nnormal: \"{{ x }}\"\n",
    );
    let vars = load_vars_file(&path).unwrap();
    assert_eq!(vars["pw"], json!({"__ansible_unsafe": "pw{{ 7*7 }}"}));
    assert_eq!(vars["plain"], json!("no-braces"));
    assert_eq!(
        vars["list"],
        json!([{"__ansible_unsafe": "a{% b %}"}, 1, {"k": {"__ansible_unsafe": "{{ c }}"}}])
    );
    assert_eq!(vars["normal"], json!("{{ x }}"));
    assert_eq!(crate::unsafe_text(&vars["pw"]), Some("pw{{ 7*7 }}"));
    assert_eq!(crate::unsafe_text(&vars["normal"]), None);
}
