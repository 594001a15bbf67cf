//! The decompression budget of one top-level archive: how many bytes may be inflated out of it,
//! across every nesting level, before reading stops. A zip bomb, a gzip bomb or a deeply nested
//! archive costs at most this much time and memory and is reported as cut short.

use std::cell::Cell;
use std::io::{self, Read};

/// Inflated bytes allowed for an archive of `compressed` bytes: `ratio` times its size (at least
/// 1 MiB of it, so small, very compressible files are read whole), never above `max_total`.
pub(crate) fn allowance(compressed: u64, ratio: u64, max_total: u64) -> u64 {
    compressed
        .max(1 << 20)
        .saturating_mul(ratio.max(1))
        .min(max_total)
}

/// The bytes inflated so far and the cap; shared by every reader of one top-level archive.
#[derive(Debug)]
pub(crate) struct Budget {
    used: Cell<u64>,
    cap: u64,
    exhausted: Cell<bool>,
}

impl Budget {
    /// A budget of `cap` inflated bytes.
    pub(crate) fn new(cap: u64) -> Self {
        Budget {
            used: Cell::new(0),
            cap,
            exhausted: Cell::new(false),
        }
    }

    /// Whether a reader was refused bytes (the archive was cut short).
    pub(crate) fn exhausted(&self) -> bool {
        self.exhausted.get()
    }

    /// Bytes inflated so far.
    pub(crate) fn used(&self) -> u64 {
        self.used.get()
    }

    /// `inner`, counting what it yields against this budget.
    pub(crate) fn reader<R: Read>(&self, inner: R) -> Metered<'_, R> {
        Metered {
            inner,
            budget: self,
        }
    }
}

/// A decompressing reader metered by a [`Budget`]: once the budget is spent, reads fail (an
/// `Other` I/O error) and the budget is marked exhausted.
pub(crate) struct Metered<'a, R> {
    inner: R,
    budget: &'a Budget,
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.budget.cap.saturating_sub(self.budget.used.get());
        if left == 0 {
            self.budget.exhausted.set(true);
            return Err(io::Error::other("archive decompression budget spent"));
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..n])?;
        self.budget.used.set(self.budget.used.get() + got as u64);
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spent_budget_stops_reading_and_says_so() {
        let budget = Budget::new(10);
        let mut out = Vec::new();
        let err = budget
            .reader(io::repeat(0))
            .read_to_end(&mut out)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        assert_eq!(out.len(), 10);
        assert!(budget.exhausted());
        assert_eq!(allowance(100, 100, 1 << 40), 100 << 20);
        assert_eq!(allowance(1 << 30, 100, 1 << 30), 1 << 30);
    }
}
