//! berth-api: the Docker Engine API over HTTP: listeners, routing, version negotiation,
//! streaming, connection hijacking, and mapping engine errors to Docker status codes/messages.
//! Must not: hold state or do the work itself; every route translates HTTP <-> one engine call.
