//! What to do with one query: answer it from the resolver, forward it, or drop it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::Resolve;

/// Docker's TTL for the names of the embedded server.
const TTL: u32 = 600;

pub(crate) enum Decision {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not ours: ask upstream.
    Forward(Box<Message>),
    /// Not a query (a response, or too short to carry an id): say nothing, so two servers
    /// can never bounce packets at each other.
    Drop,
}

/// `udp`: the answer must fit the client's UDP limit; what does not fit is cut, TC set (the
/// client asks again over TCP; one that cannot still gets the records that fit).
pub(crate) fn decide(
    packet: &[u8],
    resolver: &dyn Resolve,
    turn: &AtomicUsize,
    udp: bool,
) -> Decision {
    let query = match Message::from_vec(packet) {
        Ok(m) => m,
        Err(_) => return header_error(packet, ResponseCode::FormErr),
    };
    if query.metadata.message_type != MessageType::Query {
        return Decision::Drop;
    }
    if query.metadata.op_code != OpCode::Query {
        return reply(error(&query, ResponseCode::NotImp));
    }
    let [q] = query.queries.as_slice() else {
        return reply(error(&query, ResponseCode::FormErr));
    };
    if q.query_class() != DNSClass::IN {
        return Decision::Forward(Box::new(query));
    }
    let qtype = q.query_type();
    let qname = q.name().clone();

    if qtype == RecordType::PTR {
        let target = qname
            .parse_arpa_name()
            .ok()
            .filter(|net| net.prefix_len() == net.max_prefix_len())
            .and_then(|net| resolver.reverse(net.addr()));
        let Some(target) = target else {
            return Decision::Forward(Box::new(query));
        };
        let mut resp = response(&query);
        if let Ok(mut name) = Name::from_ascii(&target) {
            name.set_fqdn(true);
            resp.add_answer(Record::from_rdata(qname, TTL, RData::PTR(PTR(name))));
        }
        return reply(resp);
    }

    let ascii = qname.to_ascii();
    let name = ascii.strip_suffix('.').unwrap_or(&ascii);
    let addrs = if name.is_empty() {
        Vec::new()
    } else {
        resolver.lookup(name)
    };
    if addrs.is_empty() {
        return Decision::Forward(Box::new(query));
    }

    // Ours: answered here whatever the type (an MX or TXT question about a container name gets
    // an empty NOERROR, as an AAAA one does when it has no IPv6), so the name never goes out.
    let n = turn.fetch_add(1, Ordering::Relaxed);
    let mut resp = response(&query);
    if matches!(qtype, RecordType::A | RecordType::ANY) {
        let v4: Vec<_> = addrs
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .collect();
        for a in rotated(&v4, n) {
            resp.add_answer(Record::from_rdata(qname.clone(), TTL, RData::A(A(a))));
        }
    }
    if matches!(qtype, RecordType::AAAA | RecordType::ANY) {
        let v6: Vec<_> = addrs
            .iter()
            .filter_map(|a| match a {
                IpAddr::V6(v6) => Some(*v6),
                IpAddr::V4(_) => None,
            })
            .collect();
        for a in rotated(&v6, n) {
            resp.add_answer(Record::from_rdata(qname.clone(), TTL, RData::AAAA(AAAA(a))));
        }
    }
    if udp {
        fit(&mut resp, udp_limit(&query));
    }
    reply(resp)
}

/// Drops answers from the end until the message fits `limit` bytes, setting TC if it had to.
fn fit(resp: &mut Message, limit: usize) {
    let Ok(full) = resp.to_vec() else { return };
    if full.len() <= limit || resp.answers.is_empty() {
        return;
    }
    resp.metadata.truncation = true;
    // Start from an estimate (records of one name compress to the same size), then trim.
    let per = full.len().div_ceil(resp.answers.len()).max(1);
    let keep = resp
        .answers
        .len()
        .saturating_sub((full.len() - limit).div_ceil(per));
    resp.answers.truncate(keep);
    while !resp.answers.is_empty() && resp.to_vec().map_or(true, |b| b.len() > limit) {
        resp.answers.pop();
    }
}

/// Round-robin: each query starts the list one further.
fn rotated<T: Copy>(v: &[T], n: usize) -> impl Iterator<Item = T> + '_ {
    let start = if v.is_empty() { 0 } else { n % v.len() };
    v[start..].iter().chain(&v[..start]).copied()
}

fn response(query: &Message) -> Message {
    let mut resp = Message::response(query.metadata.id, query.metadata.op_code);
    resp.metadata = Metadata::response_from_request(&query.metadata);
    resp.metadata.recursion_available = true;
    resp.add_queries(query.queries.iter().cloned());
    if query.edns.is_some() {
        // RFC 6891: a query with OPT gets an OPT back.
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        resp.set_edns(edns);
    }
    resp
}

/// An error response to a parsed query.
pub(crate) fn error(query: &Message, code: ResponseCode) -> Message {
    let mut resp = response(query);
    resp.metadata.response_code = code;
    resp
}

/// The largest answer a UDP client takes (512, or what its EDNS says, capped at 4096).
pub(crate) fn udp_limit(query: &Message) -> usize {
    usize::from(query.max_payload()).min(4096)
}

/// The answer cut down to its header and question, TC set: the client asks again over TCP.
pub(crate) fn truncated(query: &Message) -> Option<Vec<u8>> {
    let mut resp = response(query);
    resp.metadata.truncation = true;
    resp.to_vec().ok()
}

pub(crate) fn encode(msg: &Message) -> Option<Vec<u8>> {
    msg.to_vec().ok()
}

fn reply(msg: Message) -> Decision {
    match msg.to_vec() {
        Ok(bytes) => Decision::Reply(bytes),
        Err(_) => Decision::Drop,
    }
}

/// For a packet we cannot parse: an error carrying only its id, if it looks like a query.
fn header_error(packet: &[u8], code: ResponseCode) -> Decision {
    if packet.len() < 12 || packet[2] & 0x80 != 0 {
        return Decision::Drop;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    reply(Message::error_msg(id, OpCode::Query, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_covers_every_start() {
        let v = [1, 2, 3];
        let firsts: Vec<_> = (0..3).map(|n| rotated(&v, n).next().unwrap()).collect();
        assert_eq!(firsts, vec![1, 2, 3]);
        assert_eq!(rotated(&v, 4).collect::<Vec<_>>(), vec![2, 3, 1]);
        assert_eq!(rotated::<u8>(&[], 7).count(), 0);
    }
}
