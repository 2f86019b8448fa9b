//! The core's tests in one binary (linked once): the rules of each service as
//! given/when/then cases, invariants under arbitrary command sequences, the allocation, the
//! order-statistics set, the purity and layout of the core, and the rule book
//! (docs/RULES.md) kept in step with the code.

mod allocation;
mod layout;
mod ostree;
mod properties;
mod purity;
mod rules;
mod rules_doc;
