//! How blocking work leaves the async workers: the one policy, used by every caller.
//!
//! - [`run`]: everything that may block (store writes and admin work, backups, `/metrics`,
//!   the embedded top-level node's calls, opening a node, joining threads) runs on tokio's
//!   blocking pool.
//! - [`ReadPool`]: resolutions that may wait for the disk run on a few store-read threads
//!   instead (measured: see its module).
//!
//! Anonymous reads that memory answers stay on the async worker or the DNS receive thread
//! that asked (`Core::resolve_routed`, `Core::resolve_now`): they never block.

mod reads;

pub use reads::ReadPool;

use crate::error::{Error, Result};

/// Runs `f` on the blocking pool and waits for it. Errors: `Internal` when `f` panicked.
pub async fn run<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("blocking task failed: {e}")))
}
