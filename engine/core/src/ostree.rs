//! Order-statistics set: ordered keys with O(log n) insert, remove and rank.
