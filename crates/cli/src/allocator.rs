//! Allocator settings for a process that moves message-sized buffers between threads for hours.
//!
//! glibc's malloc gives threads arenas of their own (up to eight per core) and, each time a large
//! block is freed, raises its mmap threshold (up to 32 MiB), so later message-sized buffers are
//! carved out of those arenas instead of getting mappings of their own. Freed memory then stays
//! in the arenas: a collection's resident memory grew with the mailbox (85 MB after 10,000
//! messages against 66 MB after 2,000) while its live heap stayed near 30 MB. Two arenas and a
//! fixed 128 KiB threshold, so that every message body has its own mapping and goes back to the
//! system when dropped, keep it at about 60 and 51 MB (`bench/README.md`).
//!
//! An administrator's own glibc settings (`GLIBC_TUNABLES=glibc.malloc.*`, `MALLOC_ARENA_MAX`,
//! `MALLOC_MMAP_THRESHOLD_`) win: nothing is changed when any is set. Other C libraries keep
//! their defaults.

/// Arenas: one per worker core is enough for the collector's few allocating threads.
const ARENAS: i32 = 2;
/// Blocks from this size on get a mapping of their own.
const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Applies the settings; call first thing in `main`, before any thread starts.
pub fn tune() {
    let tunables = std::env::var("GLIBC_TUNABLES").ok();
    let legacy = ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    if !set_by_administrator(tunables.as_deref(), legacy) {
        apply();
    }
}

/// Whether the environment already configures glibc's malloc.
fn set_by_administrator(tunables: Option<&str>, legacy_variable: bool) -> bool {
    legacy_variable
        || tunables.is_some_and(|t| t.split(':').any(|item| item.starts_with("glibc.malloc.")))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(
    unsafe_code,
    reason = "mallopt is glibc's only interface for these settings; see docs/architecture.md"
)]
fn apply() {
    // SAFETY: mallopt takes two plain integers, changes the allocator's parameters under the
    // allocator's own lock and touches no memory of ours; both parameters exist in every glibc
    // since 2.10. A setting glibc refuses returns 0 and leaves the default, which is harmless.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() {}

#[cfg(test)]
mod tests {
    use super::set_by_administrator;

    #[test]
    fn the_administrators_malloc_settings_win_and_others_do_not_count() {
        assert!(!set_by_administrator(None, false));
        assert!(set_by_administrator(None, true));
        assert!(set_by_administrator(
            Some("glibc.malloc.arena_max=4"),
            false
        ));
        assert!(set_by_administrator(
            Some("glibc.cpu.hwcaps=-AVX512F:glibc.malloc.mmap_threshold=65536"),
            false
        ));
        assert!(!set_by_administrator(
            Some("glibc.cpu.hwcaps=-AVX512F:glibc.rtld.nns=2"),
            false
        ));
        assert!(!set_by_administrator(Some(""), false));
    }
}
