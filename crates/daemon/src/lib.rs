//! berthd as a library: flag and daemon.json handling, listeners, the pidfile. `main.rs` wires
//! them to the engine and the API server.
//! Must not: implement API routes or engine logic.

pub mod config;
pub mod listen;
pub mod pidfile;
