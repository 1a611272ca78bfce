//! Glassbox's page. The UI thread (this crate's `app` binary) only draws; the engine runs in a
//! Web Worker (the `worker` binary). They talk through the message enums in [`protocol`].

pub mod components;
pub mod deep_link;
pub mod engine_client;
pub mod protocol;
mod query_string;
pub mod state;
pub mod worker;
