//! A client's answers: a ring, oldest first, kept as three parallel arrays: the
//! fingerprint of each answer, what the DNS Calculation check reads of every answer (`Hot`),
//! and the rest (`Cold`).
//!
//! Not `VecDeque`s because of the two scans that run all the time. The duplicate check, for
//! every address of every response, compares every key of the buffer, wrapped or not, live
//! or not, in one pass that the compiler turns into wide compares with no tail, and looks
//! at positions only when a key matched somewhere. The SYN check walks every answer of the
//! client but reads 16 bytes of each, not 48. The arrays are never reordered except by
//! growth, so at the cap an eviction is an index bump.
//!
//! Growth: the arrays hold only the slots ever filled (no filler written ahead of use), and
//! their memory is reserved in two steps: `FIRST_CAP` slots, then straight to the cap
//! (at most `GROWTH` times more). Doubling up to 64 copied and zero-filled every answer four
//! times on the way; on a sensor's first minutes, when every client fills up at once, those
//! copies into fresh memory were a third of the workers' first-touch writes.

use crate::Nanos;
use std::net::{IpAddr, Ipv4Addr};

/// An answer's fingerprint. Two bytes: the scan at the 64-answer cap reads two cache
/// lines, and a false match (one address in a thousand) costs one full compare.
pub(super) type Key = u16;

/// Keys are compared this many at a time; the key buffer is padded to a multiple of it.
const LANES: usize = 16;

/// Room for this many answers the first time a client is seen.
const FIRST_CAP: usize = 4;

/// The second reservation is at most this many times the first: the default cap (64) is
/// reached in one step, a much larger configured cap still grows gradually.
const GROWTH: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hot {
    pub(super) ts: Nanos,
    /// The address when it is IPv4: the only kind the formulas run over.
    pub(super) v4: Option<Ipv4Addr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Cold {
    /// Where the answer's record (resolver and names) starts in the client's arena.
    pub(super) rec: usize,
    pub(super) ttl: u32,
    pub(super) addr: IpAddr,
}

#[derive(Debug, Default)]
pub(super) struct Ring {
    /// Physical storage, all three the same length but `keys`, which is padded: that
    /// length is the ring's size, what it wraps at. `keys[p]`, `hot[p]` and `cold[p]` are
    /// one answer. Positions not live (and the padding) hold stale values that `find` skips.
    keys: Vec<Key>,
    hot: Vec<Hot>,
    cold: Vec<Cold>,
    /// Physical index of the oldest answer.
    head: usize,
    len: usize,
}

impl Ring {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn phys(&self, i: usize) -> usize {
        let p = self.head + i;
        if p >= self.hot.len() {
            p - self.hot.len()
        } else {
            p
        }
    }

    pub(super) fn front(&self) -> Option<&Hot> {
        if self.len == 0 {
            return None;
        }
        self.hot.get(self.head)
    }

    /// The live part of an array of the ring's capacity, oldest first, as two runs.
    fn live<'a, T>(&self, v: &'a [T]) -> (&'a [T], &'a [T]) {
        let (wrapped, tail) = v.split_at(self.head.min(v.len()));
        let first = self.len.min(tail.len());
        (tail.get(..first).unwrap_or_default(), wrapped.get(..self.len - first).unwrap_or_default())
    }

    /// The live answers, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Hot, &Cold)> {
        let (hot_a, hot_b) = self.live(&self.hot);
        let (cold_a, cold_b) = self.live(&self.cold);
        hot_a.iter().zip(cold_a).chain(hot_b.iter().zip(cold_b))
    }

    /// The cold part of the live answers, oldest first, for rewriting in place.
    pub(super) fn cold_mut(&mut self) -> impl Iterator<Item = &mut Cold> {
        let head = self.head.min(self.cold.len());
        let (wrapped, tail) = self.cold.split_at_mut(head);
        let first = self.len.min(tail.len());
        let rest = self.len - first;
        tail.iter_mut().take(first).chain(wrapped.iter_mut().take(rest))
    }

    /// Whether `key` may be live: compares every key in the buffer, without early exit.
    fn may_hold(&self, key: Key) -> bool {
        self.keys.chunks_exact(LANES).fold(false, |hit, c| hit | c.iter().fold(false, |h, k| h | (*k == key)))
    }

    /// The logical position of the live answer with fingerprint `key` for which `same`
    /// holds, oldest first.
    pub(super) fn find(&self, key: Key, same: impl Fn(&Cold) -> bool) -> Option<usize> {
        if !self.may_hold(key) {
            return None;
        }
        (0..self.len).find(|&i| {
            let p = self.phys(i);
            self.keys.get(p) == Some(&key) && self.cold.get(p).is_some_and(&same)
        })
    }

    pub(super) fn pop_front(&mut self) {
        if self.len > 0 {
            self.head = self.phys(1);
            self.len -= 1;
        }
    }

    /// Removes the answer at logical position `i`, keeping the order of the others.
    pub(super) fn remove(&mut self, i: usize) {
        if i >= self.len {
            return;
        }
        for j in i..self.len - 1 {
            let (to, from) = (self.phys(j), self.phys(j + 1));
            move_within(&mut self.keys, from, to);
            move_within(&mut self.hot, from, to);
            move_within(&mut self.cold, from, to);
        }
        self.len -= 1;
    }

    /// Appends an answer, growing the arrays (up to `cap`) when they are full. The caller
    /// makes room first: at `cap` answers, this drops the oldest.
    pub(super) fn push_back(&mut self, key: Key, hot: Hot, cold: Cold, cap: usize) {
        if self.len >= self.hot.len() {
            if self.hot.len() >= cap.max(1) {
                self.pop_front();
            } else {
                self.append(key, hot, cold, cap);
                return;
            }
        }
        let p = self.phys(self.len);
        if let (Some(k), Some(h), Some(c)) = (self.keys.get_mut(p), self.hot.get_mut(p), self.cold.get_mut(p))
        {
            (*k, *h, *c) = (key, hot, cold);
            self.len += 1;
        }
    }

    /// Adds a slot at the end of a full ring below the cap, putting the oldest answer first
    /// if the ring had wrapped.
    fn append(&mut self, key: Key, hot: Hot, cold: Cold, cap: usize) {
        let size = self.hot.len();
        if self.head > 0 {
            let head = self.head.min(size);
            self.hot.rotate_left(head);
            self.cold.rotate_left(head);
            if let Some(keys) = self.keys.get_mut(..size) {
                keys.rotate_left(head);
            }
            self.head = 0;
        }
        if size == self.hot.capacity() {
            let room = size.saturating_mul(GROWTH).max(FIRST_CAP).min(cap.max(1)).max(size + 1);
            self.hot.reserve_exact(room - size);
            self.cold.reserve_exact(room - size);
            self.keys.reserve_exact(room.next_multiple_of(LANES).saturating_sub(self.keys.len()));
        }
        if self.keys.len() <= size {
            self.keys.resize((size + 1).next_multiple_of(LANES), 0);
        }
        if let Some(k) = self.keys.get_mut(size) {
            *k = key;
        }
        self.hot.push(hot);
        self.cold.push(cold);
        self.len = size + 1;
    }
}

fn move_within<T: Copy>(v: &mut [T], from: usize, to: usize) {
    if let Some(&x) = v.get(from) {
        if let Some(y) = v.get_mut(to) {
            *y = x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot(n: u8) -> Hot {
        Hot { ts: u64::from(n), v4: Some(Ipv4Addr::new(10, 0, 0, n)) }
    }

    fn cold(n: u8) -> Cold {
        Cold { rec: usize::from(n), ttl: 0, addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED) }
    }

    fn push(r: &mut Ring, n: u8, cap: usize) {
        r.push_back(Key::from(n) * 7, hot(n), cold(n), cap);
    }

    fn contents(r: &Ring) -> Vec<u8> {
        r.iter()
            .map(|(h, c)| {
                assert_eq!(h.ts, c.rec as u64, "hot and cold out of step");
                c.rec as u8
            })
            .collect()
    }

    #[test]
    fn grows_from_a_wrapped_position_in_order() {
        let mut r = Ring::default();
        for n in 0..4 {
            push(&mut r, n, 16);
        }
        // Drop two from the front and wrap around the four slots.
        r.pop_front();
        r.pop_front();
        push(&mut r, 4, 16);
        push(&mut r, 5, 16);
        assert_eq!((r.head, r.hot.len()), (2, 4), "full and wrapped");
        push(&mut r, 6, 16);
        assert_eq!(contents(&r), vec![2, 3, 4, 5, 6]);
        assert_eq!((r.head, r.hot.len(), r.hot.capacity()), (0, 5, 16), "unwrapped, one step to the cap");
        for n in 2..=6u8 {
            let i = r.find(Key::from(n) * 7, |c| c.rec == usize::from(n));
            assert_eq!(i, Some(usize::from(n) - 2), "key of {n} after growth");
        }
    }

    #[test]
    fn removes_across_the_wrap_and_skips_stale_keys() {
        let mut r = Ring::default();
        for n in 0..8 {
            push(&mut r, n, 8);
        }
        for n in 8..13 {
            r.pop_front();
            push(&mut r, n, 8);
        }
        assert_eq!(contents(&r), vec![5, 6, 7, 8, 9, 10, 11, 12]);
        r.remove(1); // before the wrap
        r.remove(4); // after it
        assert_eq!(contents(&r), vec![5, 7, 8, 9, 11, 12]);
        // 6 and 10 are gone, and the two positions left free still hold old keys.
        assert_eq!(r.find(6 * 7, |_| true), None);
        assert_eq!(r.find(10 * 7, |_| true), None);
        assert_eq!(r.find(12 * 7, |_| true), Some(5));
        assert!(r.keys.contains(&(12 * 7)));
        r.remove(0);
        r.remove(r.len() - 1);
        r.remove(r.len()); // past the end: nothing
        assert_eq!(contents(&r), vec![7, 8, 9, 11]);
        while !r.is_empty() {
            r.pop_front();
        }
        r.pop_front();
        assert_eq!(contents(&r), Vec::<u8>::new());
        assert_eq!(r.find(8 * 7, |_| true), None, "a stale key is not live");
    }

    #[test]
    fn memory_is_reserved_in_few_steps_and_never_past_the_cap() {
        for (cap, steps) in [(64, vec![4, 64]), (1000, vec![4, 64, 1000]), (5, vec![4, 5])] {
            let mut r = Ring::default();
            let mut seen = vec![];
            for n in 0..cap + 10 {
                if r.len() >= cap {
                    r.pop_front();
                }
                r.push_back(n as Key, hot(n as u8), cold(n as u8), cap);
                assert_eq!(r.hot.capacity(), r.cold.capacity());
                assert!(r.keys.len() >= r.hot.len() && r.keys.len() % LANES == 0);
                if seen.last() != Some(&r.hot.capacity()) {
                    seen.push(r.hot.capacity());
                }
            }
            assert_eq!(seen, steps, "cap {cap}");
            assert_eq!(r.len(), cap);
            let want: Vec<u8> = (10..cap + 10).map(|n| n as u8).collect();
            assert_eq!(contents(&r), want, "cap {cap}: the newest, oldest first");
            for n in 10..cap + 10 {
                let i = r.find(n as Key, |c| c.rec == usize::from(n as u8));
                assert_eq!(i, Some(n - 10), "cap {cap}: key of {n}");
            }
        }
    }

    #[test]
    fn a_cap_below_the_first_step_is_kept() {
        let mut r = Ring::default();
        for n in 0..5 {
            if r.len() >= 3 {
                r.pop_front();
            }
            push(&mut r, n, 3);
        }
        assert_eq!(contents(&r), vec![2, 3, 4]);
        assert_eq!(r.hot.len(), 3);
    }
}
