//! The listed blocks of a snapshot and the bounded LRU cache of fetched ones.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::EbsError;

/// The listed blocks, sorted by index, and their tokens.
#[derive(Debug, Default)]
pub(super) struct BlockList {
    pub(super) indices: Vec<u64>,
    pub(super) tokens: Vec<Box<str>>,
    /// Bumped by every re-listing.
    pub(super) generation: u64,
}

impl BlockList {
    pub(super) fn position(&self, index: u64) -> Option<usize> {
        self.indices.binary_search(&index).ok()
    }

    pub(super) fn contains(&self, index: u64) -> bool {
        self.position(index).is_some()
    }

    /// The listed block before `index`, if any.
    pub(super) fn previous(&self, index: u64) -> Option<u64> {
        let p = self.indices.partition_point(|&i| i < index);
        p.checked_sub(1).map(|p| self.indices[p])
    }

    /// Up to `n` listed blocks at or after `index`.
    pub(super) fn following(&self, index: u64, n: usize) -> &[u64] {
        let p = self.indices.partition_point(|&i| i < index);
        let end = p.saturating_add(n).min(self.indices.len());
        &self.indices[p..end]
    }
}

/// A block of the cache.
pub(super) enum Slot {
    /// A task is fetching it.
    Pending,
    Ready {
        data: Arc<[u8]>,
        used: u64,
    },
    /// The fetch failed for good; the next reader gets the error and the slot is cleared.
    Failed(EbsError),
}

/// Bounded LRU of fetched blocks, plus the fetches in flight.
pub(super) struct Cache {
    pub(super) slots: HashMap<u64, Slot>,
    /// Last use → block index, of the `Ready` slots.
    pub(super) lru: BTreeMap<u64, u64>,
    pub(super) clock: u64,
    pub(super) capacity: usize,
    pub(super) pending: usize,
}

impl Cache {
    pub(super) fn new(capacity: usize) -> Self {
        Cache {
            slots: HashMap::new(),
            lru: BTreeMap::new(),
            clock: 0,
            capacity: capacity.max(1),
            pending: 0,
        }
    }

    /// Mark `index` as being fetched unless the cache already has it in any state.
    pub(super) fn claim(&mut self, index: u64) -> bool {
        if self.slots.contains_key(&index) {
            return false;
        }
        self.slots.insert(index, Slot::Pending);
        self.pending += 1;
        true
    }

    /// The block, when it is ready; counts as a use.
    pub(super) fn get(&mut self, index: u64) -> Option<Arc<[u8]>> {
        self.clock += 1;
        let clock = self.clock;
        match self.slots.get_mut(&index) {
            Some(Slot::Ready { data, used }) => {
                self.lru.remove(used);
                *used = clock;
                self.lru.insert(clock, index);
                Some(data.clone())
            }
            _ => None,
        }
    }

    /// A fetch ended: keep the block (evicting the least recently used beyond capacity) or the
    /// error.
    pub(super) fn complete(&mut self, index: u64, result: Result<Arc<[u8]>, EbsError>) {
        if let Some(Slot::Pending) = self.slots.get(&index) {
            self.pending = self.pending.saturating_sub(1);
        }
        match result {
            Ok(data) => {
                self.clock += 1;
                if let Some(Slot::Ready { used, .. }) = self.slots.get(&index) {
                    self.lru.remove(used);
                }
                self.slots.insert(
                    index,
                    Slot::Ready {
                        data,
                        used: self.clock,
                    },
                );
                self.lru.insert(self.clock, index);
                while self.lru.len() > self.capacity {
                    let Some((_, victim)) = self.lru.pop_first() else {
                        break;
                    };
                    self.slots.remove(&victim);
                }
            }
            Err(e) => {
                self.slots.insert(index, Slot::Failed(e));
            }
        }
    }

    pub(super) fn ready(&self) -> usize {
        self.lru.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_list_lookups() {
        let list = BlockList {
            indices: vec![2, 3, 7, 20],
            tokens: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            generation: 0,
        };
        assert!(list.contains(7) && !list.contains(8));
        assert_eq!(list.previous(7), Some(3));
        assert_eq!(list.previous(8), Some(7));
        assert_eq!(list.previous(2), None);
        assert_eq!(list.following(4, 2), &[7, 20]);
        assert_eq!(list.following(3, 10), &[3, 7, 20]);
        assert_eq!(list.following(21, 4), &[] as &[u64]);
    }

    #[test]
    fn cache_keeps_at_most_its_capacity_least_recently_used_first() {
        let mut c = Cache::new(3);
        let block = |n: u8| -> Arc<[u8]> { Arc::from(vec![n; 4]) };
        for i in 0..3 {
            assert!(c.claim(i));
            assert!(!c.claim(i), "a pending block is not claimed twice");
            c.complete(i, Ok(block(i as u8)));
        }
        assert_eq!(c.pending, 0);
        assert_eq!(c.get(0).as_deref(), Some(&[0u8; 4][..])); // 0 is now the most recent
        assert!(c.claim(3));
        c.complete(3, Ok(block(3)));
        assert_eq!(c.ready(), 3);
        assert!(c.get(1).is_none(), "1 was least recently used");
        assert!(c.get(0).is_some() && c.get(2).is_some() && c.get(3).is_some());
        for i in 10..100 {
            c.claim(i);
            c.complete(i, Ok(block(1)));
            assert!(c.ready() <= 3);
            assert_eq!(c.slots.len(), c.ready());
        }
        // A failure is kept for the reader, and does not count against the capacity.
        assert!(c.claim(500));
        c.complete(500, Err(EbsError::Runtime("x".into())));
        assert!(matches!(c.slots.get(&500), Some(Slot::Failed(_))));
        assert_eq!(c.ready(), 3);
    }
}
