//! berth-engine: the services behind the API routes (images, containers, networks, volumes,
//! builds, events) and their orchestration. Owns engine state and startup reconciliation.
//! Must not: know HTTP (routes live in berth-api) or parse CLI flags.
