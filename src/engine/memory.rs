//! Handing freed memory back to the operating system.
//!
//! A replay builds every view's arrangement at once: batchers fill, spines merge, and the
//! buffers they free at the end are several hundred MiB more than the views keep. An allocator
//! with thread-local heaps (the binary's mimalloc) returns a thread's freed pages when that
//! thread next allocates or frees; a worker whose views then serve without change does neither
//! for long, and the process stays at its replay's peak. So each worker, once its replay is
//! done, calls the embedder's [`release_memory`](super::Hooks::release_memory) hook now and
//! then, from its own thread. (Not during the replay: what it frees, it soon allocates again,
//! and memory handed back is zeroed by the kernel when touched anew.)

use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a worker calls the hook.
const RELEASE_EVERY: Duration = Duration::from_secs(1);

/// One worker's schedule of calls to the release hook.
pub(super) struct Release {
    hook: Option<Arc<dyn Fn() + Send + Sync>>,
    last: Instant,
}

impl Release {
    pub(super) fn new(hook: Option<Arc<dyn Fn() + Send + Sync>>) -> Self {
        Release {
            hook,
            last: Instant::now(),
        }
    }

    /// Calls the hook if [`RELEASE_EVERY`] has passed since it last did.
    pub(super) fn tick(&mut self) {
        if let Some(hook) = &self.hook
            && self.last.elapsed() >= RELEASE_EVERY
        {
            hook();
            self.last = Instant::now();
        }
    }
}
