//! The man page and completions come from the binary's own command-line definition: every
//! subcommand is in them, and `--version` names the revision.

use std::process::Command;

const SUBCOMMANDS: [&str; 8] = [
    "deploy",
    "reconfigure",
    "genconfig",
    "check",
    "audit",
    "rotate",
    "certs",
    "completions",
];

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_virtfleet"))
        .args(args)
        .output()
        .expect("virtfleet runs");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn man_page_and_completions_name_every_subcommand() {
    let man = run(&["manpage"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH virtfleet 1"),
        "{man}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let completions = run(&["completions", shell]);
        for sub in SUBCOMMANDS {
            assert!(completions.contains(sub), "{shell}: no {sub}");
            assert!(man.contains(sub), "man page: no {sub}");
        }
        assert!(completions.contains("limit"), "{shell}: no --limit");
    }
}

#[test]
fn every_man_page_the_main_one_refers_to_is_generated() {
    let dir = tempfile::tempdir().unwrap();
    run(&["manpage", "--dir", dir.path().to_str().unwrap()]);
    let main = std::fs::read_to_string(dir.path().join("virtfleet.1")).unwrap();
    assert!(
        main.contains(".SH EXAMPLES") && !main.contains(".SH EXTRA"),
        "{main}"
    );
    // The environment: the options' variables from the definition, then the others.
    let environment = main.split(".SH ENVIRONMENT").nth(1).expect("ENVIRONMENT");
    for name in ["VIRTFLEET_CONFIGDIR", "HOME", "SSH_AUTH_SOCK", "USER"] {
        assert!(environment.contains(name), "{name}: {environment}");
    }
    for sub in SUBCOMMANDS {
        let page = dir.path().join(format!("virtfleet-{sub}.1"));
        let text = std::fs::read_to_string(&page).unwrap_or_else(|_| panic!("no {page:?}"));
        assert!(
            main.contains(&format!("virtfleet\\-{sub}(1)")),
            "{sub}: {main}"
        );
        assert!(text.contains(".TH virtfleet-"), "{sub}: {text}");
        // Every page says what its exit status means.
        assert!(text.contains(".SH \"EXIT STATUS\""), "{sub}: {text}");
    }
    let issue = std::fs::read_to_string(dir.path().join("virtfleet-certs-issue.1")).unwrap();
    assert!(issue.contains("\\-\\-renew\\-days"), "{issue}");
}

#[test]
fn version_names_the_revision() {
    let version = run(&["--version"]);
    let (_, revision) = version
        .trim()
        .split_once(" (")
        .unwrap_or_else(|| panic!("{version}"));
    assert!(revision.ends_with(')'), "{version}");
    assert!(revision.len() > 2, "{version}");
}
