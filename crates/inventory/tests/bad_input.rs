//! The bad-input corpus (`tests/bad-input/`, one file per case; see its README): every file
//! goes through the loader it is meant for and must end in an error, not a panic, that names
//! the file, says what is wrong, never repeats a secret, and comes within a second. A few
//! cases cannot be files in a repository (endless or huge files, symlink loops); they are
//! made here.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use virtfleet_inventory::{load_inventory, load_vars_file, InventoryError};

/// The marker every secret in the corpus carries.
const SECRET: &str = "Hunter2";

/// Each corpus file, what its error must say and the line it must name (0: no line).
const CASES: &[(&str, &str, usize)] = &[
    (
        "inventory-host-slash.ini",
        r#"invalid host name "/etc/passwd""#,
        3,
    ),
    (
        "inventory-host-dotdot.ini",
        r#"invalid host name "../../x""#,
        2,
    ),
    ("inventory-host-leading-dot.ini", "it starts with '.'", 2),
    ("inventory-host-nul.ini", r#""compute\u{0}01""#, 2),
    (
        "inventory-host-escape.ini",
        r#"invalid host name "compute\u{1b}c01""#,
        2,
    ),
    (
        "inventory-host-bidi.ini",
        r#""compute\u{202e}10etupmoc""#,
        2,
    ),
    ("inventory-host-empty.ini", "it is empty", 2),
    (
        "inventory-group-traversal.ini",
        r#"invalid group name "../../etc""#,
        1,
    ),
    (
        "inventory-child-traversal.ini",
        r#"invalid group name "../compute""#,
        5,
    ),
    ("inventory-range-huge.ini", "more than 100000 hosts", 2),
    ("inventory-range-product.ini", "more than 100000 hosts", 2),
    ("inventory-range-u64.ini", "more than 100000 hosts", 2),
    ("inventory-range-copies.ini", "take more than 256 MiB", 2),
    (
        "inventory-value-deep.ini",
        "nested deeper than 64 levels",
        2,
    ),
    (
        "inventory-group-var-deep.ini",
        "nested deeper than 64 levels",
        5,
    ),
    ("inventory-group-loop.ini", "creates a loop of groups", 8),
    (
        "inventory-secret-unclosed-quote.ini",
        "no closing quotation",
        2,
    ),
    (
        "inventory-secret-unquoted-blank.ini",
        "argument 2 is not key=value",
        2,
    ),
    (
        "inventory-secret-vars-line.ini",
        "expected key=value in [compute:vars]",
        5,
    ),
    (
        "inventory-yaml-host-slash.yml",
        r#"invalid host name "/etc/passwd""#,
        3,
    ),
    (
        "inventory-yaml-group-traversal.yml",
        r#"invalid group name "../compute""#,
        3,
    ),
    ("inventory-yaml-range-huge.yml", "more than 100000 hosts", 3),
    (
        "inventory-yaml-deep-flow.yml",
        "nested deeper than 64 levels",
        3,
    ),
    (
        "inventory-yaml-secret-type.yml",
        "invalid type: string, expected",
        3,
    ),
    (
        "vars-passwords-not-a-mapping.yml",
        "invalid type: string, expected",
        1,
    ),
    (
        "vars-passwords-list.yml",
        "invalid type: sequence, expected",
        1,
    ),
    (
        "vars-passwords-bad-int.yml",
        "invalid value: string, expected an integer",
        1,
    ),
    (
        "vars-passwords-bad-escape.yml",
        "found unknown escape character",
        1,
    ),
    (
        "vars-passwords-vault-value.yml",
        "!vault values are not supported",
        0,
    ),
    (
        "vars-passwords-encrypted.yml",
        "encrypted with ansible-vault",
        1,
    ),
    (
        "vars-globals-deep-flow.yml",
        "nested deeper than 64 levels",
        1,
    ),
    (
        "vars-globals-deep-flow-maps.yml",
        "nested deeper than 64 levels",
        1,
    ),
    (
        "vars-globals-deep-block.yml",
        "recursion limit exceeded",
        129,
    ),
    (
        "vars-globals-alias-bomb.yml",
        "repetition limit exceeded",
        0,
    ),
    (
        "vars-globals-merge-scalar.yml",
        "expected a mapping or list of mappings",
        0,
    ),
    ("vars-globals-not-utf8.yml", "not UTF-8 text", 2),
];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-input")
}

/// Loads `path` with the loader its name says (`inventory-*` or `vars-*`).
fn load(path: &Path) -> Result<(), InventoryError> {
    let name = path.file_name().unwrap().to_string_lossy();
    if name.starts_with("inventory-") {
        load_inventory(path).map(drop)
    } else {
        load_vars_file(path).map(drop)
    }
}

/// The error `path` gives, checked for what every error must be.
fn error_of(path: &Path) -> String {
    let start = Instant::now();
    let outcome = std::panic::catch_unwind(|| load(path));
    let took = start.elapsed();
    let message = match outcome {
        Err(_) => panic!("{}: the loader panicked", path.display()),
        Ok(Ok(())) => panic!("{}: loaded without error", path.display()),
        Ok(Err(e)) => e.to_string(),
    };
    assert!(
        took < Duration::from_secs(1),
        "{}: took {took:?}",
        path.display()
    );
    assert!(
        message.starts_with(&format!("{}", path.display())),
        "{message:?} does not start with the file name"
    );
    assert!(!message.contains(SECRET), "{message:?} repeats a secret");
    assert!(!message.contains('\n'), "{message:?} is not one line");
    message
}

#[test]
fn every_corpus_file_is_an_error_naming_it() {
    let dir = corpus();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "README.md")
        .collect();
    files.sort();
    let mut listed: Vec<&str> = CASES.iter().map(|(name, _, _)| *name).collect();
    listed.sort();
    assert_eq!(
        files, listed,
        "every corpus file needs a row in CASES, and only those"
    );
    for (name, needle, line) in CASES {
        let path = dir.join(name);
        let message = error_of(&path);
        let at = match line {
            0 => format!("{}: ", path.display()),
            line => format!("{}:{line}: ", path.display()),
        };
        assert!(
            message.starts_with(&at),
            "{message:?} should start with {at:?}"
        );
        assert!(
            message.contains(needle),
            "{message:?} should say {needle:?}"
        );
    }
}

/// Cases that cannot be files in a repository.
#[test]
fn endless_huge_and_looping_inputs_are_errors_naming_them() {
    for path in ["/dev/zero", "/dev/urandom"] {
        let message = error_of(Path::new(path));
        assert!(message.contains("larger than 16 MiB"), "{message}");
    }
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("globals.yml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let message = error_of(&big);
    assert!(message.contains("larger than 16 MiB"), "{message}");

    let inventory = dir.path().join("inventory-loop");
    std::fs::write(&inventory, "[compute]\ncompute01\n").unwrap();
    let vars = dir.path().join("host_vars/compute01");
    std::fs::create_dir_all(&vars).unwrap();
    std::os::unix::fs::symlink(".", vars.join("a")).unwrap();
    std::os::unix::fs::symlink(".", vars.join("b")).unwrap();
    let start = Instant::now();
    let message = load_inventory(&inventory).unwrap_err().to_string();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert!(
        message.contains("host_vars/compute01/a") && message.contains("symlink loop"),
        "{message}"
    );
}
