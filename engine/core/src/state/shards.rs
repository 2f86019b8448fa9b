//! How a hash table with an entry per application is split, so that growing it never holds
//! the writer back: [`COUNT`] tables, an entry in the one bits 32 to 39 of its hash name
//! ([`of`]: bits a table uses neither for a bucket, the low bits, nor for its 7-bit tag, the
//! top ones). A table doubles when it fills, moving every entry; one table of 458,752
//! entries took the writer about 30 ms, in the middle of a surge, while one of [`COUNT`]
//! moves 1/256 of them. Used by the state's child index (`child_index.rs`) and the writer's
//! idempotency-key index.

/// How many tables.
pub const COUNT: usize = 256;

/// The table that holds the entry of `hash`.
pub fn of(hash: u64) -> usize {
    (hash >> 32) as usize % COUNT
}

/// The room to reserve in each table for `total` entries over all of them: an equal share,
/// and a margin, since the shares are equal only on average.
pub fn room_each(total: usize) -> usize {
    let share = total / COUNT;
    share + share / 8 + 4
}
