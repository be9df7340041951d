//! Subnets and address allocation (Docker's default IPAM driver): IPv4, and IPv6 for networks
//! made with `--ipv6` and a subnet (there are no default IPv6 pools, as in dockerd 20.10).

use std::collections::BTreeSet;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One prefix type per address family, written once: `$name` over `$addr` whose bits are the
/// unsigned `$bits`.
macro_rules! cidr_type {
    ($(#[$doc:meta])* $name:ident, $addr:ty, $bits:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name {
            pub addr: $addr,
            pub prefix: u8,
        }

        impl $name {
            const BITS: u32 = <$bits>::BITS;

            pub fn new(addr: $addr, prefix: u8) -> $name {
                $name {
                    addr,
                    prefix: prefix.min(Self::BITS as u8),
                }
            }
            pub fn mask(&self) -> $bits {
                <$bits>::MAX
                    .checked_shl(Self::BITS - u32::from(self.prefix.min(Self::BITS as u8)))
                    .unwrap_or(0)
            }
            pub fn network(&self) -> $name {
                $name::new(<$addr>::from(self.first()), self.prefix)
            }
            pub fn first(&self) -> $bits {
                <$bits>::from(self.addr) & self.mask()
            }
            pub fn last(&self) -> $bits {
                self.first() | !self.mask()
            }
            pub fn contains(&self, ip: $addr) -> bool {
                <$bits>::from(ip) & self.mask() == self.first()
            }
            pub fn overlaps(&self, other: &$name) -> bool {
                self.first() <= other.last() && other.first() <= self.last()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}/{}", self.addr, self.prefix)
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<$name, String> {
                let bad = || format!("invalid CIDR address: {s}");
                let (a, p) = s.split_once('/').ok_or_else(bad)?;
                let addr: $addr = a.parse().map_err(|_| bad())?;
                let prefix: u8 = p.parse().map_err(|_| bad())?;
                if u32::from(prefix) > Self::BITS {
                    return Err(bad());
                }
                Ok($name { addr, prefix })
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

cidr_type!(
    /// An IPv4 prefix, `10.1.2.0/24`. The address is kept as given (`--bip 10.1.2.1/24` keeps
    /// `.1`); `network()` gives the masked one.
    Cidr,
    Ipv4Addr,
    u32
);

cidr_type!(
    /// An IPv6 prefix, `fd12:3456::/64`, kept as given like [`Cidr`].
    Cidr6,
    Ipv6Addr,
    u128
);

impl Cidr {
    /// The number of host addresses, capped (big pools are never walked whole).
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix as u32)
    }
}

/// The lowest free address of an IPv6 subnet after its first (the subnet-router anycast
/// address), as dockerd's sequential allocator. Only the first 65536 are walked: more
/// containers than that on one network is not a case.
pub fn allocate6(subnet: &Cidr6, used: &BTreeSet<Ipv6Addr>) -> Option<Ipv6Addr> {
    let (lo, hi) = (subnet.first().checked_add(1)?, subnet.last());
    (lo..=hi)
        .take(1 << 16)
        .map(Ipv6Addr::from)
        .find(|ip| !used.contains(ip))
}

/// IPv4 routes of the host's main table (from /proc/net/route): what a new subnet must not
/// overlap. The default route (0.0.0.0/0) is left out.
pub fn host_routes() -> Vec<Cidr> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dest = hex(f.get(1)?)?;
            let mask = hex(f.get(7)?)?;
            (mask != 0).then(|| Cidr::new(Ipv4Addr::from(dest), mask.count_ones() as u8))
        })
        .collect()
}

/// Docker's default local pools: 172.17-31.0.0/16, then 192.168.0-240.0/20.
pub fn default_pools() -> impl Iterator<Item = Cidr> {
    (17..=31)
        .map(|b| Cidr::new(Ipv4Addr::new(172, b, 0, 0), 16))
        .chain((0..16).map(|i| Cidr::new(Ipv4Addr::new(192, 168, i * 16, 0), 20)))
}

/// The first pool that overlaps none of `taken`.
pub fn pick_subnet(taken: &[Cidr]) -> Option<Cidr> {
    default_pools().find(|p| taken.iter().all(|t| !t.overlaps(p)))
}

/// Pick a free address in `range` (inside `subnet`), skipping the network and broadcast
/// addresses and everything in `used`. Lowest first, like Docker's sequential allocator.
pub fn allocate(
    subnet: &Cidr,
    range: Option<&Cidr>,
    used: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let r = range.unwrap_or(subnet);
    let (lo, hi) = (
        r.first().max(subnet.first() + 1),
        r.last().min(subnet.last().saturating_sub(1)),
    );
    (lo..=hi).map(Ipv4Addr::from).find(|ip| !used.contains(ip))
}

/// Docker's MAC for an address: 02:42 then the four address bytes.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn mac_string(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        m[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_math() {
        let c: Cidr = "10.1.2.1/24".parse().unwrap();
        assert_eq!(c.network().to_string(), "10.1.2.0/24");
        assert!(c.contains("10.1.2.200".parse().unwrap()));
        assert!(!c.contains("10.1.3.1".parse().unwrap()));
        let d: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.overlaps(&d) && d.overlaps(&c));
        assert!("10.1.2.1".parse::<Cidr>().is_err());
        assert!("10.1.2.1/33".parse::<Cidr>().is_err());
    }

    #[test]
    fn allocation_skips_used_and_edges() {
        let c: Cidr = "10.9.0.0/30".parse().unwrap();
        let mut used = BTreeSet::new();
        used.insert("10.9.0.1".parse().unwrap());
        assert_eq!(allocate(&c, None, &used), Some("10.9.0.2".parse().unwrap()));
        used.insert("10.9.0.2".parse().unwrap());
        assert_eq!(allocate(&c, None, &used), None);
        let r: Cidr = "10.9.0.0/31".parse().unwrap();
        let c2: Cidr = "10.9.0.0/24".parse().unwrap();
        assert_eq!(
            allocate(&c2, Some(&r), &BTreeSet::new()),
            Some("10.9.0.1".parse().unwrap())
        );
    }

    #[test]
    fn ipv6_prefixes_and_allocation() {
        let c: Cidr6 = "fd12:3456::7/64".parse().unwrap();
        assert_eq!(c.network().to_string(), "fd12:3456::/64");
        assert!(c.contains("fd12:3456::ffff".parse().unwrap()));
        assert!(!c.contains("fd12:3457::1".parse().unwrap()));
        assert!("fd12::/129".parse::<Cidr6>().is_err());
        assert!("10.0.0.0/8".parse::<Cidr6>().is_err());
        let mut used = BTreeSet::new();
        used.insert("fd12:3456::1".parse().unwrap());
        assert_eq!(
            allocate6(&c.network(), &used),
            Some("fd12:3456::2".parse().unwrap())
        );
        let d: Cidr6 = "fd12::/16".parse().unwrap();
        assert!(c.overlaps(&d) && d.overlaps(&c));
    }

    #[test]
    fn pools_avoid_taken() {
        let taken = vec![
            "172.17.0.0/16".parse().unwrap(),
            "172.16.0.0/12".parse().unwrap(),
        ];
        assert_eq!(pick_subnet(&taken).unwrap().to_string(), "192.168.0.0/20");
        assert_eq!(
            mac_string(&mac_for("172.17.0.2".parse().unwrap())),
            "02:42:ac:11:00:02"
        );
        assert_eq!(
            parse_mac("02:42:ac:11:00:02"),
            Some(mac_for("172.17.0.2".parse().unwrap()))
        );
    }
}
