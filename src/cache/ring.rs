//! A client's answers: a ring of slots, oldest first, with the fingerprint of each answer in
//! a parallel ring of keys.
//!
//! Not a pair of `VecDeque`s because of the duplicate check, which runs for every address
//! of every response: here it compares every key of the buffer, wrapped or not, live or
//! not, in one pass that the compiler turns into wide compares with no tail, and looks at
//! positions only when a key matched somewhere. The buffers grow by doubling up to the cap
//! and are never reordered except by growth, so at the cap an eviction is an index bump.

use super::Slot;

/// Keys are compared this many at a time; the key buffer is padded to a multiple of it.
const LANES: usize = 8;

/// Room for this many answers the first time a client is seen.
const FIRST_CAP: usize = 4;

#[derive(Debug, Default)]
pub(super) struct Ring {
    /// Physical storage; `slots.len()` is the capacity.
    slots: Vec<Slot>,
    /// `keys[p]` belongs to `slots[p]`; entries past the capacity, and those of slots not
    /// live, hold stale values that `find` skips.
    keys: Vec<u32>,
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
        if p >= self.slots.len() {
            p - self.slots.len()
        } else {
            p
        }
    }

    pub(super) fn front(&self) -> Option<&Slot> {
        if self.len == 0 {
            return None;
        }
        self.slots.get(self.head)
    }

    /// The live slots, oldest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = &Slot> {
        let (wrapped, tail) = self.slots.split_at(self.head.min(self.slots.len()));
        let first = self.len.min(tail.len());
        let rest = self.len - first;
        tail.iter().take(first).chain(wrapped.iter().take(rest))
    }

    /// The live slots, oldest first, for rewriting in place.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        let head = self.head.min(self.slots.len());
        let (wrapped, tail) = self.slots.split_at_mut(head);
        let first = self.len.min(tail.len());
        let rest = self.len - first;
        tail.iter_mut().take(first).chain(wrapped.iter_mut().take(rest))
    }

    /// Whether `key` may be live: compares every key in the buffer, without early exit.
    fn may_hold(&self, key: u32) -> bool {
        self.keys.chunks_exact(LANES).fold(false, |hit, c| hit | c.iter().fold(false, |h, k| h | (*k == key)))
    }

    /// The logical position of the live answer with fingerprint `key` for which `same`
    /// holds, oldest first.
    pub(super) fn find(&self, key: u32, same: impl Fn(&Slot) -> bool) -> Option<usize> {
        if !self.may_hold(key) {
            return None;
        }
        (0..self.len).find(|&i| {
            let p = self.phys(i);
            self.keys.get(p) == Some(&key) && self.slots.get(p).is_some_and(&same)
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
            if let (Some(&s), Some(&k)) = (self.slots.get(from), self.keys.get(from)) {
                if let (Some(st), Some(kt)) = (self.slots.get_mut(to), self.keys.get_mut(to)) {
                    (*st, *kt) = (s, k);
                }
            }
        }
        self.len -= 1;
    }

    /// Appends an answer, growing the buffers (up to `cap`) when they are full. The caller
    /// makes room first: at `cap` answers, this drops the oldest.
    pub(super) fn push_back(&mut self, key: u32, slot: Slot, cap: usize) {
        if self.len >= self.slots.len() {
            if self.slots.len() >= cap {
                self.pop_front();
            } else {
                self.grow(slot, cap);
            }
        }
        let p = self.phys(self.len);
        if let (Some(s), Some(k)) = (self.slots.get_mut(p), self.keys.get_mut(p)) {
            *s = slot;
            *k = key;
            self.len += 1;
        }
    }

    /// Doubles the capacity, at most to `cap`, and puts the oldest answer first.
    fn grow(&mut self, fill: Slot, cap: usize) {
        let new_cap = (2 * self.slots.len()).max(FIRST_CAP).min(cap.max(1));
        let mut slots = Vec::with_capacity(new_cap);
        slots.extend(self.iter().copied());
        slots.resize(new_cap, fill);
        let mut keys = Vec::with_capacity(new_cap.next_multiple_of(LANES));
        keys.extend((0..self.len).map(|i| self.keys.get(self.phys(i)).copied().unwrap_or(0)));
        keys.resize(new_cap.next_multiple_of(LANES), 0);
        self.slots = slots;
        self.keys = keys;
        self.head = 0;
    }
}
