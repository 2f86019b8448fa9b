//! The deterministic core of ochered: commands, events, state and the rules between them.
//! No I/O, no clock, no unseeded randomness: time, ids and seeds are inputs.
//!
//! The shell loads the state, calls [`decide`], appends the events to the log and then
//! folds them with [`State::apply`].

pub mod allocation;
pub mod command;
pub mod decide;
pub mod domain;
pub mod event;
#[cfg(feature = "openapi")]
mod openapi;
pub mod ordering;
pub mod ostree;
pub mod queues;
pub mod rejection;
pub mod rounds;
pub mod state;
pub mod upcast;

pub use command::Command;
pub use decide::decide;
pub use event::{Event, StreamId, SCHEMA_VERSION};
pub use rejection::{Rejection, RejectionKind};
pub use state::State;

/// Decides a command and, when accepted, folds its events into the state.
pub fn handle(
    state: &mut State,
    command: &Command,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Event>, Rejection> {
    let events = decide(state, command, now)?;
    for event in &events {
        state.apply(event);
    }
    Ok(events)
}
