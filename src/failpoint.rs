//! Failure injection for the crash-safety tests, test-only: nothing sets it in operation.
//!
//! `IDNODE_FAILPOINT=<point>` aborts the process when it reaches `<point>` (what a SIGKILL
//! at that moment would leave: no destructor runs, nothing is flushed);
//! `IDNODE_FAILPOINT=<point>=error` makes that point fail as an I/O error there would. The
//! variable is read once; unset, a point costs a load and a comparison, and points sit at
//! phase boundaries, never per record. The points are named where they are hit
//! (`offline-import:*`: `bulk/offline.rs` and `resolver/register.rs`).
//!
//! Must not: be used to change behaviour in any other way.

use std::sync::OnceLock;

/// Passes, aborts the process, or fails, as `IDNODE_FAILPOINT` asks for `point`.
pub fn hit(point: &str) -> std::io::Result<()> {
    static SET: OnceLock<Option<(String, bool)>> = OnceLock::new();
    let set = SET.get_or_init(|| {
        let value = std::env::var("IDNODE_FAILPOINT").ok()?;
        Some(match value.split_once('=') {
            Some((name, "error")) => (name.to_owned(), true),
            _ => (value, false),
        })
    });
    match set {
        Some((name, error)) if name == point => {
            if *error {
                Err(std::io::Error::other(format!("failpoint {point}")))
            } else {
                std::process::abort()
            }
        }
        _ => Ok(()),
    }
}
