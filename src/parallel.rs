//! Spreading blocking per-entry work (hashing, unlinking) over every core.

use std::sync::atomic::{AtomicUsize, Ordering};

/// `items.iter().map(f)` on all available cores, results in input order. Work is handed
/// out one item at a time, so a few huge entries do not leave other threads idle.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    map_with(cores(), items, f)
}

/// Threads for work that mostly waits on the disk (cold directory walks, small reads):
/// more requests in flight than cores keeps the device's queue full.
pub const IO_THREADS: usize = 16;

/// Makes every thread allocate from glibc's main arena. By default glibc gives each of
/// the [`IO_THREADS`] an arena of its own, and `malloc_trim` never shrinks the top of a
/// thread's arena: what a scan's threads once used stayed resident — 242 bytes per
/// indexed entry at 100k entries instead of 66–70 with one arena (two arenas: 70–95;
/// `docs/benchmarks.md`). The threads allocate little per file (they read into stack
/// buffers), so one arena costs no measurable speed. Call once, before any thread starts.
pub fn share_allocator_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; M_ARENA_MAX applies to arenas
    // created afterwards.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Hands freed heap memory back to the OS: after a scan (its transient buffers, the
/// old index), an eviction plan, a snapshot or a large socket reply, so a long-running
/// daemon's RSS reflects what it holds, not its peak.
pub fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// [`map`] with a given number of threads.
pub fn map_with<T: Sync, R: Send>(
    threads: usize,
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        done.push((i, f(item)));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker panicked"))
            .collect()
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order() {
        let v: Vec<u32> = (0..1000).collect();
        assert_eq!(
            super::map(&v, |x| x * 2),
            v.iter().map(|x| x * 2).collect::<Vec<_>>()
        );
        assert!(super::map(&Vec::<u32>::new(), |x| *x).is_empty());
    }
}
