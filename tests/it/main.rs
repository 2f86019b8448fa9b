//! The root package's one integration-test binary: the server and the CLI end to end.

mod api;
mod cli;
mod helpers;
mod openapi_files;
mod simulator;
mod status_updates;
