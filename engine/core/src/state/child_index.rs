//! Each child's current application of a service ([`ChildIndex`]): the index that makes a
//! child registered once.
//!
//! A map from `(service, child)` to the application number stores the 32-byte child key a
//! second time beside the application, which holds it already: 40 bytes a bucket, and a
//! table of 16.7 million buckets for ten million applications (670 MB, every page of which
//! a start from a snapshot touches). This table stores only the application number (4
//! bytes a bucket); the key of an entry is read from its application when the table needs
//! it, which is rarely: a look-up compares keys only for the entries whose 7-bit tag
//! matches the one looked for (about one in 128 of the probed).
//!
//! Every number in the table must be that of an application in the slice the methods are
//! given (the state's applications); the state keeps that so (an application is indexed
//! once it is in the list, and never leaves it).
//!
//! The table is split into [`shards::COUNT`] tables ([`shards`]), so that it never grows all
//! at once: one table of 458,752 children took the writer 28 ms to grow, in the middle of a
//! surge; a table of 1/256 of them about 0.1 ms (2 ms at ten million children).

use std::hash::BuildHasher;

use crate::domain::{PersonKey, PersonKeyHash};

use super::{shards, Application, ApplicationNumber, Applications, ServiceKind};

/// `(service, child)` → the child's current application of that service.
#[derive(Debug, Clone)]
pub(super) struct ChildIndex {
    /// [`shards::COUNT`] tables; an entry is in the one [`shards::of`] names.
    shards: Box<[hashbrown::HashTable<ApplicationNumber>]>,
}

impl Default for ChildIndex {
    fn default() -> Self {
        ChildIndex {
            shards: (0..shards::COUNT)
                .map(|_| hashbrown::HashTable::new())
                .collect(),
        }
    }
}

/// The hash of a key: the one the state's other child maps use ([`PersonKeyHash`]: 8 bytes
/// of the child's key, a SHA-256 output, and the service, folded by a multiplication).
fn hash(service: ServiceKind, child: &PersonKey) -> u64 {
    PersonKeyHash::default().hash_one((service, child))
}

fn application(applications: &Applications, number: ApplicationNumber) -> &Application {
    &applications[number.0 as usize - 1]
}

fn hash_of(applications: &Applications) -> impl Fn(&ApplicationNumber) -> u64 + '_ {
    move |&number| {
        let app = application(applications, number);
        hash(app.service, &app.child)
    }
}

fn is<'a>(
    applications: &'a Applications,
    service: ServiceKind,
    child: &'a PersonKey,
) -> impl Fn(&ApplicationNumber) -> bool + 'a {
    move |&number| {
        let app = application(applications, number);
        app.service == service && app.child == *child
    }
}

impl ChildIndex {
    /// The current application of `child` for `service`.
    pub(super) fn get(
        &self,
        applications: &Applications,
        service: ServiceKind,
        child: &PersonKey,
    ) -> Option<ApplicationNumber> {
        let h = hash(service, child);
        self.shards[shards::of(h)]
            .find(h, is(applications, service, child))
            .copied()
    }

    /// Makes `number` the current application of `child` for `service` (in place of any
    /// other). `number` need not be in `applications` yet; every other number must be.
    pub(super) fn insert(
        &mut self,
        applications: &Applications,
        service: ServiceKind,
        child: &PersonKey,
        number: ApplicationNumber,
    ) {
        let h = hash(service, child);
        let table = &mut self.shards[shards::of(h)];
        match table.find_mut(h, is(applications, service, child)) {
            Some(current) => *current = number,
            None => {
                table.insert_unique(h, number, hash_of(applications));
            }
        }
    }

    /// `child` has no current application for `service` any more.
    pub(super) fn remove(
        &mut self,
        applications: &Applications,
        service: ServiceKind,
        child: &PersonKey,
    ) {
        let h = hash(service, child);
        if let Ok(entry) =
            self.shards[shards::of(h)].find_entry(h, is(applications, service, child))
        {
            entry.remove();
        }
    }

    /// How many children have a current application (of either service).
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(hashbrown::HashTable::len).sum()
    }

    /// Room for about `additional` more entries without growing: each table gets its share
    /// and a margin (the shares are equal only on average).
    pub(super) fn reserve(&mut self, applications: &Applications, additional: usize) {
        if additional == 0 {
            return;
        }
        let each = shards::room_each(additional);
        for table in self.shards.iter_mut() {
            table.reserve(each, hash_of(applications));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(number: u32, service: ServiceKind, child: u8) -> Application {
        use chrono::{NaiveDate, TimeZone, Utc};
        let mut key = [0u8; 32];
        key[0] = child;
        let day = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
        Application {
            number: ApplicationNumber(number),
            service,
            campaign: None,
            child: PersonKey(key),
            birth_date: crate::domain::BirthDate::parse(day, day).unwrap(),
            registered_at: Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap(),
            preferences: Box::new([]),
            desired_start: day,
            any_other: false,
            privileges: Vec::new(),
            status: super::super::ApplicationStatus::Active,
            channel: crate::domain::Channel::Portal,
            from_draft: false,
            submitted_by: "parent".into(),
            placement: None,
            version: 1,
            sealed: None,
            erased: false,
        }
    }

    #[test]
    fn it_answers_as_a_map_of_service_and_child_would() {
        use std::collections::HashMap;
        let mut apps = Applications::new();
        let mut index = ChildIndex::default();
        let mut map = HashMap::new();
        // Children 0..40, both services, some replaced and some removed, past every growth
        // of the table.
        for step in 0..400u32 {
            let service = if step % 3 == 0 {
                ServiceKind::School
            } else {
                ServiceKind::Kindergarten
            };
            let child = (step * 7 % 40) as u8;
            let number = ApplicationNumber(step + 1);
            let a = app(number.0, service, child);
            if step % 5 == 4 {
                index.remove(&apps, service, &a.child);
                map.remove(&(service, child));
            } else {
                index.insert(&apps, service, &a.child, number);
                map.insert((service, child), number);
            }
            apps.push(a);
            assert_eq!(index.len(), map.len(), "step {step}");
            for c in 0..40u8 {
                for s in [ServiceKind::Kindergarten, ServiceKind::School] {
                    let mut key = [0u8; 32];
                    key[0] = c;
                    assert_eq!(
                        index.get(&apps, s, &PersonKey(key)),
                        map.get(&(s, c)).copied(),
                        "step {step}, child {c}, {s:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn many_children_spread_over_the_tables_and_are_all_found() {
        let mut apps = Applications::new();
        let mut index = ChildIndex::default();
        let child = |i: u32| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_le_bytes());
            key[31] = 1;
            PersonKey(key)
        };
        index.reserve(&apps, 10_000);
        for i in 0..50_000u32 {
            let mut a = app(i + 1, ServiceKind::Kindergarten, 0);
            a.child = child(i);
            index.insert(&apps, ServiceKind::Kindergarten, &a.child, a.number);
            apps.push(a);
        }
        assert_eq!(index.len(), 50_000);
        // Every table holds some: the shard bits vary.
        assert!(index
            .shards
            .iter()
            .all(|t| t.len() > 50_000 / shards::COUNT / 2));
        for i in (0..50_000u32).step_by(2) {
            index.remove(&apps, ServiceKind::Kindergarten, &child(i));
        }
        assert_eq!(index.len(), 25_000);
        for i in 0..50_000u32 {
            let found = index.get(&apps, ServiceKind::Kindergarten, &child(i));
            assert_eq!(
                found,
                (i % 2 == 1).then_some(ApplicationNumber(i + 1)),
                "{i}"
            );
            assert_eq!(index.get(&apps, ServiceKind::School, &child(i)), None);
        }
    }
}
