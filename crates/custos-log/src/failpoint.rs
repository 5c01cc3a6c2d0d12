//! Failpoints for the crash suite (tests/tests/faults.rs): `CUSTOS_FAILPOINT=NAME` (or
//! `NAME@N`, the N-th time it is reached) makes the process abort right there, as a power cut
//! or a kill would stop it, with nothing flushed or unwound. Unset, a failpoint costs one load
//! of a value read once. Hand-written rather than the `fail` crate: that one is compiled in
//! only under a cargo feature, so the tests would run another build than the one users get.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Every failpoint, in the order an append, a checkpoint write and a rebuild reach them.
pub const FAILPOINTS: &[&str] = &[
    "append:before-batch",
    "append:after-batch",
    "append:after-flush",
    "append:after-fsync",
    "meta:after-file-write",
    "meta:after-file-fsync",
    "meta:after-dir-fsync",
    "meta:after-batch",
    "meta:after-file-remove",
    "merge:after-batch",
    "merge:before-file-remove",
    "sync:after-flush",
    "sync:after-fsync",
    "rebuild:before-swap",
    "rebuild:after-swap",
];

struct Armed {
    name: String,
    nth: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("CUSTOS_FAILPOINT").ok()?;
            let (name, nth) = match spec.split_once('@') {
                Some((n, k)) => (n.to_string(), k.parse().ok()?),
                None => (spec, 1),
            };
            Some(Armed { name, nth, hits: AtomicU64::new(0) })
        })
        .as_ref()
}

/// Aborts the process here when this failpoint is armed and reached for the N-th time.
pub fn failpoint(name: &str) {
    if let Some(a) = armed() {
        debug_assert!(FAILPOINTS.contains(&name), "unlisted failpoint {name}");
        if a.name == name && a.hits.fetch_add(1, Ordering::SeqCst) + 1 == a.nth {
            eprintln!("failpoint {name}: aborting");
            std::process::abort();
        }
    }
}
