//! Output buffers that many tasks write, each to its own groups' values.

use std::mem::MaybeUninit;

/// A slice written by many tasks, each to disjoint values.
#[derive(Clone, Copy)]
pub struct Shared<T>(pub *mut T, pub usize);
unsafe impl<T: Send> Send for Shared<T> {}
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// # Safety
    /// Concurrent callers must take disjoint ranges.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range(&self, start: usize, len: usize) -> &mut [T] {
        assert!(start + len <= self.1);
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }

    /// Writes value `i`.
    ///
    /// # Safety
    /// Concurrent callers must write distinct values.
    pub unsafe fn write(&self, i: usize, value: T) {
        assert!(i < self.1);
        unsafe { self.0.add(i).write(value) }
    }

    /// [`Shared::range`] for a buffer that may not be initialized yet.
    ///
    /// # Safety
    /// As [`Shared::range`].
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range_uninit(&self, start: usize, len: usize) -> &mut [MaybeUninit<T>] {
        assert!(start + len <= self.1);
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start).cast(), len) }
    }
}

/// A `Vec` of `len` values that `write` fills, not zeroed first: zeroing
/// would cost a whole extra pass over memory (or fresh zero pages).
///
/// # Safety
/// `write` initializes every one of the `len` values it is given.
pub unsafe fn written<T, R>(
    len: usize,
    write: impl FnOnce(&mut [MaybeUninit<T>]) -> R,
) -> (Vec<T>, R) {
    let mut values = Vec::with_capacity(len);
    let result = write(&mut values.spare_capacity_mut()[..len]);
    // SAFETY: the caller's promise.
    unsafe { values.set_len(len) };
    (values, result)
}
