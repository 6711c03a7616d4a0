//! Limits on input that would otherwise be unbounded. Each one turns hostile or broken input
//! into an error naming the file (and line where there is one) instead of a hang, a crash or
//! an allocation that takes the machine down. All are far above what real Kolla inventories,
//! globals.yml, passwords.yml and group_vars/host_vars need:
//!
//! | what | limit | where |
//! |---|---|---|
//! | size of one file read (inventory, `group_vars/*`, `host_vars/*`, `globals.yml`, `passwords.yml`) | [`MAX_FILE_BYTES`] (16 MiB) | read with `take`, so `-i /dev/zero` stops after 16 MiB |
//! | bytes of all files one inventory load reads | [`MAX_TOTAL_BYTES`] (128 MiB) | inventory + its `group_vars/` and `host_vars/` |
//! | nesting of an INI value read as a Python literal (`x=[[...]]`) | [`MAX_NESTING`] (64) | per value |
//! | nesting of YAML flow collections (`[`, `{`) | [`MAX_NESTING`] (64) | checked before parsing (parsing deep flow nesting is quadratic); block nesting is refused past 128 by the YAML parser |
//! | hosts one inventory holds, host ranges included (`c[0:99]`) | [`MAX_HOSTS`] (100 000) | counted before a range is expanded |
//! | groups one inventory holds | [`MAX_GROUPS`] (10 000) | |
//! | entries of Ansible's `groups` variable (a host counts once for every group it is in, through child groups too) | [`MAX_GROUP_MEMBERS`] (1 000 000) | every host gets a copy of it |
//! | host variables written in the inventory, counted once per host they are set on | [`MAX_HOST_VARS_BYTES`] (256 MiB, as JSON text) | refused before copying (`c[0:99999] x=<a long value>`) |
//! | directory levels under one `group_vars/<name>/` or `host_vars/<name>/` | [`MAX_VARS_DIR_DEPTH`] (16) | a directory reached twice (symlink loop) is an error too |
//!
//! Template work (minijinja's fuel) is limited where templates are rendered, in
//! `virtfleet-plan`.

/// Largest file any loader reads, in bytes.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// Most bytes one inventory load reads across the inventory file and every file under its
/// `group_vars/` and `host_vars/`.
pub const MAX_TOTAL_BYTES: u64 = 128 << 20;

/// Deepest nesting of lists and maps in one value: INI values read as Python literals, and
/// YAML flow collections.
pub const MAX_NESTING: usize = 64;

/// Most hosts in one inventory, after expanding host ranges.
pub const MAX_HOSTS: usize = 100_000;

/// Most groups in one inventory.
pub const MAX_GROUPS: usize = 10_000;

/// Most entries in Ansible's `groups` variable: a host counts once for each group it is in,
/// directly or through child groups.
pub const MAX_GROUP_MEMBERS: usize = 1_000_000;

/// Most bytes (as JSON text, estimated) of host variables written in the inventory file,
/// each counted once per host it is set on.
pub const MAX_HOST_VARS_BYTES: u64 = 256 << 20;

/// Deepest directory level below `group_vars/<name>/` or `host_vars/<name>/`.
pub const MAX_VARS_DIR_DEPTH: usize = 16;

/// `16 MiB` for messages.
pub(crate) fn human_bytes(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}
