//! How the process holds memory while it loads a city.
//!
//! A load allocates and frees many gigabytes of short-lived buffers (converted batches, hash
//! tables, the door-event reorder). By default glibc maps every large block afresh and unmaps it
//! when freed, so the next block of that size is fresh memory again, which the kernel has to
//! zero page by page. On a virtual machine that cost about a third of a load's CPU time.
//! [`keep_freed_memory`] tells glibc to serve large blocks from its heap and keep what is freed,
//! for the next block to reuse; [`release_freed_memory`] hands what is free back to the system
//! once a load is done, so that a served city holds only its own memory (and within a load, after
//! its largest transients: the door events' sort, the identity numbers' hash table, so that the
//! next steps' memory does not come on top of what they freed).
//!
//! Two calls into the C library here, which have no preconditions, are one of the two places
//! with `unsafe` code (the other maps snapshot files: [`crate::store`]'s `mapped`). Other
//! platforms and allocators are left as they are.

/// Keeps freed memory in the process for reuse, instead of returning each large block to the
/// system when it is freed. Process-wide; a binary calls it once, at start.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` only sets allocator parameters; both are valid glibc parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// Returns the process's free memory to the system (after a load, or once a replaced city is
/// dropped). Cheap when little is free.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `malloc_trim` only releases free pages of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}
