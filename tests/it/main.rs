//! The root package's one integration-test binary: the server and the CLI end to end.

mod api;
mod backup;
mod cli;
mod clinic_desk;
mod cluster;
mod crash;
mod dashboard;
mod defects;
mod demand;
mod fuzz;
mod helpers;
mod history;
mod openapi_files;
mod outage;
mod overload;
mod packaging;
mod patient;
mod privacy;
mod receipts;
mod security;
mod simulator;
mod slow_body;
mod status_updates;
mod tamper;
mod traces;
mod transparency;
