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

use std::hash::BuildHasher;

use crate::domain::{PersonKey, PersonKeyHash};

use super::{Application, ApplicationNumber, Applications, ServiceKind};

/// `(service, child)` → the child's current application of that service.
#[derive(Debug, Clone, Default)]
pub(super) struct ChildIndex {
    table: hashbrown::HashTable<ApplicationNumber>,
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
        self.table
            .find(hash(service, child), is(applications, service, child))
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
        match self.table.find_mut(h, is(applications, service, child)) {
            Some(current) => *current = number,
            None => {
                self.table.insert_unique(h, number, hash_of(applications));
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
        if let Ok(entry) = self
            .table
            .find_entry(hash(service, child), is(applications, service, child))
        {
            entry.remove();
        }
    }

    /// How many children have a current application (of either service).
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Room for `additional` more entries without growing.
    pub(super) fn reserve(&mut self, applications: &Applications, additional: usize) {
        self.table.reserve(additional, hash_of(applications));
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
}
