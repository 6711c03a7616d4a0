use super::{load, strings, MULTINODE};
use crate::{Inventory, InventoryError};

fn inventory() -> (tempfile::TempDir, Inventory) {
    let dir = tempfile::tempdir().unwrap();
    let inv = load(dir.path(), "multinode", MULTINODE);
    (dir, inv)
}

fn select(inv: &Inventory, pattern: &str) -> Vec<String> {
    inv.select(inv.hosts(), pattern)
        .unwrap_or_else(|e| panic!("{pattern}: {e}"))
}

#[test]
fn names_groups_and_globs() {
    let (_dir, inv) = inventory();
    assert_eq!(select(&inv, "compute02"), strings(&["compute02"]));
    assert_eq!(select(&inv, "control"), strings(&["control01"]));
    assert_eq!(
        select(&inv, "compute0*"),
        strings(&["compute01", "compute02", "compute03", "compute04"])
    );
    assert_eq!(
        select(&inv, "compute0[!24]"),
        strings(&["compute01", "compute03"])
    );
    assert_eq!(
        select(&inv, "compute0[1-2]"),
        strings(&["compute01", "compute02"])
    );
    // A glob matches group names too: `nova-*` is the nova-compute group.
    assert_eq!(select(&inv, "nova-*"), inv.group_hosts("compute").unwrap());
}

#[test]
fn result_keeps_inventory_order_without_duplicates() {
    let (_dir, inv) = inventory();
    assert_eq!(
        select(&inv, "compute03, control01 ,compute03,control"),
        strings(&["control01", "compute03"])
    );
}

#[test]
fn exclusion_and_intersection() {
    let (_dir, inv) = inventory();
    assert_eq!(
        select(&inv, "compute,!compute02,!edge01"),
        strings(&["compute01", "compute03", "compute04"])
    );
    // Colon-separated, and exclusions apply after unions whatever their position.
    assert_eq!(select(&inv, "!compute:nova"), strings(&["control01"]));
    assert_eq!(select(&inv, "nova:&control"), strings(&["control01"]));
    assert_eq!(select(&inv, "!compute"), strings(&["lonely", "control01"]));
    assert_eq!(select(&inv, "&storage,!compute0*"), strings(&["edge01"]));
}

#[test]
fn subscripts_pick_by_position() {
    let (_dir, inv) = inventory();
    assert_eq!(select(&inv, "compute[0]"), strings(&["compute01"]));
    assert_eq!(select(&inv, "compute[-1]"), strings(&["edge01"]));
    assert_eq!(
        select(&inv, "compute[1:2]"),
        strings(&["compute02", "compute03"])
    );
    assert_eq!(
        select(&inv, "compute[3:]"),
        strings(&["compute04", "edge01"])
    );
}

#[test]
fn limit_only_narrows_the_given_hosts() {
    let (_dir, inv) = inventory();
    let compute = inv.group_hosts("compute").unwrap();
    assert_eq!(inv.select(&compute, "nova,lonely").unwrap(), compute);
    assert!(inv.select(&compute, "control").unwrap().is_empty());
}

#[test]
fn an_item_matching_nothing_is_an_error_naming_it() {
    let (dir, inv) = inventory();
    for (pattern, item) in [
        ("compute01,comptue02", "comptue02"),
        ("compute,!nope", "nope"),
        ("db*", "db*"),
        ("compute[9]", "compute[9]"),
    ] {
        match inv.select(inv.hosts(), pattern) {
            Err(InventoryError::NoMatch { item: got, .. }) => assert_eq!(got, item, "{pattern}"),
            other => panic!("{pattern}: expected NoMatch, got {other:?}"),
        }
    }
    let message = inv.select(inv.hosts(), "nope").unwrap_err().to_string();
    let file = dir.path().join("multinode");
    assert_eq!(
        message,
        format!(
            "host pattern item \"nope\" matches no host or group in {}",
            file.display()
        )
    );
    assert!(matches!(
        inv.select(inv.hosts(), " , "),
        Err(InventoryError::BadPattern { .. })
    ));
    assert!(matches!(
        inv.select(inv.hosts(), "~comp.*"),
        Err(InventoryError::BadPattern { .. })
    ));
}
