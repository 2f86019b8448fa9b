//! A vector kept in segments of at most [`SEGMENT`] items, so that growing it never moves
//! what it holds.
//!
//! A `Vec` doubles its buffer when it fills: every item is copied into a buffer twice the
//! size, whose pages the kernel zeroes first. For the applications of an authority that is one
//! pause of the writer at each power of two: measured over HTTP at 7,500 submissions a second,
//! 101 ms at 262,144 applications and 188 ms at 524,288 (docs/PERFORMANCE.md, "A pause at
//! each power of two"), and it grows with the state (gigabytes at ten million). Here a full
//! segment stays where it is and the next one is allocated whole: past the first segment
//! (which grows by doubling, so that a small state stays small), nothing is ever copied.
//!
//! The applications are kept in one, and so is each application's submission position
//! (`history.rs`), which grows with them.
//!
//! Reads index the segment (`i >> SEGMENT_BITS`) and the item in it (`i & (SEGMENT - 1)`).
//! It serializes exactly as a `Vec` of the same items (a sequence of known length), so the
//! state hash and the snapshot do not change.

use std::fmt;
use std::ops::{Index, IndexMut};

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const SEGMENT_BITS: u32 = 14;
/// Items per full segment (16,384: 2.4 MB of applications).
pub const SEGMENT: usize = 1 << SEGMENT_BITS;

#[derive(Clone, PartialEq, Eq)]
pub struct Segmented<T> {
    /// Every segment but the last holds exactly [`SEGMENT`] items; the last holds 1 to
    /// [`SEGMENT`].
    segments: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Segmented<T> {
    fn default() -> Self {
        Segmented {
            segments: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Segmented<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, item: T) {
        match self.segments.last_mut() {
            Some(last) if last.len() < SEGMENT => last.push(item),
            Some(_) => {
                // Past the first segment, each new one is allocated whole: nothing is
                // copied again.
                let mut segment = Vec::with_capacity(SEGMENT);
                segment.push(item);
                self.segments.push(segment);
            }
            // The first grows by doubling up to its full size, so a small state stays small.
            None => self.segments.push(vec![item]),
        }
        self.len += 1;
    }

    pub fn get(&self, index: usize) -> Option<&T> {
        self.segments
            .get(index >> SEGMENT_BITS)?
            .get(index & (SEGMENT - 1))
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.segments
            .get_mut(index >> SEGMENT_BITS)?
            .get_mut(index & (SEGMENT - 1))
    }

    pub fn last(&self) -> Option<&T> {
        self.segments.last()?.last()
    }

    /// Every item, in order.
    pub fn iter(&self) -> Iter<'_, T> {
        self.iter_from(0)
    }

    /// The items from `start` on, in order.
    pub fn iter_from(&self, start: usize) -> Iter<'_, T> {
        let first = start >> SEGMENT_BITS;
        let (current, rest) = match self.segments.get(first) {
            Some(segment) => (
                segment[(start & (SEGMENT - 1)).min(segment.len())..].iter(),
                self.segments[first + 1..].iter(),
            ),
            None => ([].iter(), [].iter()),
        };
        Iter {
            current,
            rest,
            left: self.len.saturating_sub(start),
        }
    }
}

impl<T> Extend<T> for Segmented<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, items: I) {
        for item in items {
            self.push(item);
        }
    }
}

impl<T> FromIterator<T> for Segmented<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut segmented = Segmented::new();
        segmented.extend(items);
        segmented
    }
}

impl<T> Index<usize> for Segmented<T> {
    type Output = T;
    fn index(&self, index: usize) -> &T {
        match self.get(index) {
            Some(item) => item,
            None => panic!("index {index} out of range for length {}", self.len),
        }
    }
}

impl<T> IndexMut<usize> for Segmented<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        let len = self.len;
        match self.get_mut(index) {
            Some(item) => item,
            None => panic!("index {index} out of range for length {len}"),
        }
    }
}

/// The items of a [`Segmented`], in order.
#[derive(Clone)]
pub struct Iter<'a, T> {
    current: std::slice::Iter<'a, T>,
    rest: std::slice::Iter<'a, Vec<T>>,
    left: usize,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;
    fn next(&mut self) -> Option<&'a T> {
        loop {
            if let Some(item) = self.current.next() {
                self.left -= 1;
                return Some(item);
            }
            self.current = self.rest.next()?.iter();
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T> ExactSizeIterator for Iter<'_, T> {}

impl<'a, T> IntoIterator for &'a Segmented<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

impl<T: fmt::Debug> fmt::Debug for Segmented<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Serialize> Serialize for Segmented<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for item in self {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Segmented<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Items<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Items<T> {
            type Value = Segmented<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Segmented<T>, A::Error> {
                let mut items = Segmented::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(items)
            }
        }
        deserializer.deserialize_seq(Items(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_reads_like_a_vec_across_segments_and_never_moves_a_full_segment() {
        let n = 3 * SEGMENT + 5;
        let mut segmented = Segmented::new();
        let mut plain = Vec::new();
        let mut in_full_segment = None;
        for i in 0..n {
            segmented.push(i as u64);
            plain.push(i as u64);
            if i == 2 * SEGMENT - 1 {
                in_full_segment = Some(&segmented[SEGMENT] as *const u64);
            }
            if i == 0 {
                assert_eq!(segmented.last(), Some(&0));
            }
        }
        // Items stored in a full segment stay where they were put.
        assert_eq!(in_full_segment, Some(&segmented[SEGMENT] as *const u64));
        assert_eq!(segmented.len(), n);
        assert!(segmented.iter().eq(plain.iter()));
        assert_eq!(segmented.iter().len(), n);
        for start in [
            0,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            n - 1,
            n,
            n + 7,
        ] {
            let from = segmented.iter_from(start);
            assert_eq!(from.len(), n.saturating_sub(start), "from {start}");
            assert!(from.eq(plain.iter().skip(start)), "from {start}");
        }
        for i in [0, SEGMENT - 1, SEGMENT, 2 * SEGMENT + 17, n - 1] {
            assert_eq!(segmented[i], plain[i]);
            segmented[i] += 1;
            assert_eq!(segmented.get(i), Some(&(plain[i] + 1)));
        }
        assert_eq!(segmented.get(n), None);
        assert_eq!(segmented.last(), Some(&(n as u64 - 1 + 1)));
        let empty: Segmented<u8> = Segmented::new();
        assert!(empty.is_empty() && empty.iter().next().is_none() && empty.last().is_none());
    }

    #[test]
    fn it_serializes_as_the_vec_of_its_items() {
        let items: Vec<u32> = (0..(SEGMENT as u32 + 3)).collect();
        let segmented: Segmented<u32> = items.iter().copied().collect();
        let text = serde_json::to_string(&segmented).unwrap();
        assert_eq!(text, serde_json::to_string(&items).unwrap());
        let back: Segmented<u32> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, segmented);
        assert_eq!(
            format!("{:?}", back.iter().take(2).collect::<Vec<_>>()),
            "[0, 1]"
        );
    }
}
