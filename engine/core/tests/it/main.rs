//! The core's tests in one binary (linked once): the rules of each service as
//! given/when/then cases, invariants under arbitrary command sequences, the allocation, the
//! order-statistics set, and the purity of the core.

mod allocation;
mod ostree;
mod properties;
mod purity;
mod rules;
