//! berthd: parses dockerd-compatible flags and daemon.json, opens the engine, serves the API.
fn main() {}
