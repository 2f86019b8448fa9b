//! The deterministic core of ochered: commands, events, state and the rules between them.
//! No I/O, no clock, no unseeded randomness: time, ids and seeds are inputs.

pub mod allocation;
pub mod ostree;
