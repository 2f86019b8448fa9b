//! Which people may have a data key in this file, kept in memory so that a first submission
//! with contact details does not ask the database whether its applicant has a key.
//!
//! Sealing a new applicant's contact details looks for their key first
//! ([`crate::DataKeyStore::data_key`]); in a surge almost every applicant is new and the
//! answer is "none". Each such look-up took a reader connection from the pool, locked it
//! for the C API and left the Tokio worker for the read: cheap alone, but thousands a second
//! at the peak of a national first minute, and the source of stalls of a few hundred
//! milliseconds there (docs/PERFORMANCE.md, "Contacts: the key look-up").
//!
//! The filter holds a 64-bit fingerprint of every `(authority, person)` whose key may be in
//! the table: every key the file held when it was opened (read in the background by a
//! scan) and every key this process inserts (added *before* the insert runs, whether or not
//! the transaction then commits). A person absent from the filter has no key, and the
//! look-up answers `None` without the database; a fingerprint present (a key, a destroyed
//! key, a failed insert, or another person's fingerprint) sends the look-up to the
//! database as before. So the filter may only err towards asking.
//!
//! That holds because only this process writes the table while it has the file open (the
//! same premise as [`crate::DataKeyStore::single_process`]), and every insert goes through
//! the store's own statements (`store_data_keys`, `insert_new_keys`). Raw SQL on
//! [`super::SqliteStore::pool`] that inserts keys would bypass it: tests and tools use that
//! pool for reads and schema changes only.
//!
//! Until the scan has finished, every look-up asks the database. The scan reads a snapshot;
//! a key committed after that snapshot was added to the filter before its insert ran, so
//! the union of the two is complete when the scan's results are merged.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Mutex;

/// A fingerprint is already a uniform hash: the set's own hashing keeps it as it is.
#[derive(Default)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; fold anything else in, for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Fingerprints = HashSet<u64, BuildHasherDefault<FingerprintHasher>>;

/// The fingerprint of one person's key: SipHash (the standard library's, with fixed keys)
/// of the authority and the person's hex. A collision only sends a look-up to the database.
pub(super) fn fingerprint(authority: &str, person: &str) -> u64 {
    #[allow(deprecated)] // SipHasher's fixed keys are the point: the same on every start.
    let mut hasher = std::hash::SipHasher::new();
    authority.hash(&mut hasher);
    person.hash(&mut hasher);
    hasher.finish()
}

/// See the module's documentation.
#[derive(Default)]
pub(super) struct KeyFilter {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Whether the file's keys at opening have been merged in.
    ready: bool,
    people: Fingerprints,
}

impl KeyFilter {
    /// Notes that a key for the person may be stored from now on: called before the insert.
    pub(super) fn add(&self, authority: &str, person: &str) {
        let print = fingerprint(authority, person);
        self.state
            .lock()
            .expect("key filter lock")
            .people
            .insert(print);
    }

    /// Merges the fingerprints of the keys the file held when it was opened; from now on
    /// the filter answers.
    pub(super) fn fill(&self, scanned: Vec<u64>) {
        let mut state = self.state.lock().expect("key filter lock");
        state.people.extend(scanned);
        state.ready = true;
    }

    /// `false` only when the person certainly has no stored key.
    pub(super) fn may_have(&self, authority: &str, person: &str) -> bool {
        let print = fingerprint(authority, person);
        let state = self.state.lock().expect("key filter lock");
        !state.ready || state.people.contains(&print)
    }

    pub(super) fn ready(&self) -> bool {
        self.state.lock().expect("key filter lock").ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_filled_every_person_may_have_a_key() {
        let filter = KeyFilter::default();
        assert!(filter.may_have("city", "aa"));
        filter.add("city", "bb");
        assert!(filter.may_have("city", "aa"), "not ready: ask the database");
        filter.fill(vec![fingerprint("city", "cc")]);
        assert!(filter.ready());
        assert!(!filter.may_have("city", "aa"));
        assert!(filter.may_have("city", "bb"), "added before the fill");
        assert!(filter.may_have("city", "cc"), "found by the scan");
        assert!(!filter.may_have("town", "cc"), "keys are per authority");
    }

    #[test]
    fn fingerprints_are_stable_and_separate_the_fields() {
        assert_eq!(fingerprint("city", "ab"), fingerprint("city", "ab"));
        // `str`'s Hash writes a terminator: "cit"+"yab" is not "city"+"ab".
        assert_ne!(fingerprint("city", "ab"), fingerprint("cit", "yab"));
    }
}
