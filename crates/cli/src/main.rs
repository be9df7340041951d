//! berth: the CLI. A client of the Docker Engine API only (bollard); never links daemon crates.
fn main() {}
