//! A file read as an Arrow buffer by mapping it into memory (`mmap`), so that a snapshot's
//! columns are the page cache's pages themselves: nothing is copied or zeroed when the file is
//! read, and a page is brought in when a column is first read there.
//!
//! The files mapped are a snapshot's, which are written once into a new folder (never truncated
//! or written again in place: see [`crate::store::snapshot`]) and only ever unlinked, so a
//! mapping stays valid for as long as a column holds it, even after the snapshot is replaced.
//! Where a file cannot be mapped it is read into memory instead.
//!
//! One of the places with `unsafe` code (with [`crate::memory`] and [`crate::store::room`]): the
//! system calls that map and unmap, and the buffer made over the mapping.
#![allow(unsafe_code)]

use arrow::alloc::Allocation;
use arrow::buffer::Buffer;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

/// Memory mapped into the process (a file's, read-only; or anonymous, for
/// [`crate::store::room`]), unmapped when the last buffer over it is dropped.
pub(super) struct Mapping {
    pub(super) at: NonNull<u8>,
    pub(super) len: usize,
}

// SAFETY: the mapping is private to this process; a file's is read-only, and an anonymous
// one's bytes are written only where no buffer made over it reaches (see `store::room`).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}
impl std::panic::RefUnwindSafe for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `at..at + len` is a mapping made here, unmapped once, here.
        unsafe {
            libc::munmap(self.at.as_ptr().cast(), self.len);
        }
    }
}

impl Mapping {
    /// Fresh anonymous memory of `len` bytes (at least one), readable and writable, or `None`
    /// where the system refuses it; its pages cost memory only once written.
    pub(super) fn anonymous(len: usize) -> Option<Arc<Mapping>> {
        let len = len.max(1);
        // SAFETY: a fresh private anonymous mapping; the result is checked before use.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return None;
        }
        NonNull::new(at.cast::<u8>()).map(|at| Arc::new(Mapping { at, len }))
    }
}

/// The whole of a file as one buffer: mapped into memory where the system allows it, read into
/// memory otherwise.
pub fn read(path: &Path) -> std::io::Result<Buffer> {
    let file = File::open(path)?;
    let len = usize::try_from(file.metadata()?.len())
        .map_err(|_| std::io::Error::other("a file larger than the address space"))?;
    if len == 0 {
        return Ok(Buffer::from_vec(Vec::<u8>::new()));
    }
    // SAFETY: a fresh read-only private mapping of `len` bytes of an open file; the result is
    // checked before use.
    let at = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    let Some(at) = NonNull::new(at.cast::<u8>()).filter(|_| at != libc::MAP_FAILED) else {
        return Ok(Buffer::from_vec(std::fs::read(path)?));
    };
    let owner: Arc<dyn Allocation> = Arc::new(Mapping { at, len });
    // SAFETY: `at` is valid for `len` bytes for as long as `owner` lives, which the buffer holds.
    Ok(unsafe { Buffer::from_custom_allocation(at, len, owner) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_file_reads_as_its_bytes_and_outlives_its_unlinking() {
        let dir = std::env::temp_dir().join(format!("gridlens-mapped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &bytes).unwrap();
        let b = read(&p).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(b.as_slice(), &bytes[..]);
        let part = b.slice_with_length(1000, 10);
        drop(b);
        assert_eq!(part.as_slice(), &bytes[1000..1010]);
        let empty = dir.join("none");
        assert!(read(&empty).is_err());
    }
}
