//! CIDR prefixes as Talos and Tailscale read them, and the tailnet ranges every node filter must
//! exclude (reference tailscale.md §3.3: `100.64.0.0/10` and `fd7a:115c:a1e0::/48`).

use std::net::IpAddr;

/// Tailscale's IPv4 CGNAT range.
pub const TAILNET_V4: &str = "100.64.0.0/10";
/// Tailscale's IPv6 ULA range.
pub const TAILNET_V6: &str = "fd7a:115c:a1e0::/48";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

/// Why a route string is not a clean prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixError {
    /// No `/len`: containerboot's strict parser refuses bare addresses.
    BareAddress,
    Invalid,
    /// Bits set below the prefix length ("has non-address bits set"); carries the masked form.
    HostBits(String),
}

impl Prefix {
    pub fn is_v4(&self) -> bool {
        self.addr.is_ipv4()
    }

    fn bits(&self) -> (u128, u8) {
        match self.addr {
            IpAddr::V4(a) => (u32::from(a) as u128, 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    /// Whether the two prefixes share any address.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        if self.is_v4() != other.is_v4() {
            return false;
        }
        let n = self.len.min(other.len);
        prefix_bits(self, n) == prefix_bits(other, n)
    }

    /// Whether `self` contains every address of `other`.
    pub fn contains(&self, other: &Prefix) -> bool {
        self.is_v4() == other.is_v4()
            && self.len <= other.len
            && prefix_bits(self, self.len) == prefix_bits(other, self.len)
    }

    pub fn is_default_route(&self) -> bool {
        self.len == 0
    }
}

fn prefix_bits(p: &Prefix, n: u8) -> u128 {
    let (v, width) = p.bits();
    if n == 0 {
        return 0;
    }
    v >> (width - n)
}

/// Parse `addr/len` strictly: no spaces, no bare address, no host bits.
pub fn parse_prefix(s: &str) -> Result<Prefix, PrefixError> {
    let (addr, len) = match s.split_once('/') {
        Some(x) => x,
        None => {
            return Err(if s.parse::<IpAddr>().is_ok() {
                PrefixError::BareAddress
            } else {
                PrefixError::Invalid
            })
        }
    };
    let addr: IpAddr = addr.parse().map_err(|_| PrefixError::Invalid)?;
    let len: u8 = len.parse().map_err(|_| PrefixError::Invalid)?;
    let width = if addr.is_ipv4() { 32 } else { 128 };
    if len > width || len.to_string().len() != s.split_once('/').map(|x| x.1.len()).unwrap_or(0) {
        return Err(PrefixError::Invalid);
    }
    let p = Prefix { addr, len };
    let masked = masked(&p);
    if masked != p.addr {
        return Err(PrefixError::HostBits(format!("{masked}/{len}")));
    }
    Ok(p)
}

/// Parse a prefix, tolerating host bits (Talos's subnet filters accept `10.0.0.5/8`).
pub fn parse_loose(s: &str) -> Option<Prefix> {
    match parse_prefix(s) {
        Ok(p) => Some(p),
        Err(PrefixError::HostBits(m)) => parse_prefix(&m).ok(),
        Err(PrefixError::BareAddress) => {
            let addr: IpAddr = s.parse().ok()?;
            Some(Prefix {
                len: if addr.is_ipv4() { 32 } else { 128 },
                addr,
            })
        }
        Err(PrefixError::Invalid) => None,
    }
}

fn masked(p: &Prefix) -> IpAddr {
    match p.addr {
        IpAddr::V4(a) => {
            let m = if p.len == 0 {
                0
            } else {
                u32::MAX << (32 - p.len)
            };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if p.len == 0 {
                0
            } else {
                u128::MAX << (128 - p.len)
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

pub fn tailnet_v4() -> Prefix {
    parse_prefix(TAILNET_V4).expect("constant")
}

pub fn tailnet_v6() -> Prefix {
    parse_prefix(TAILNET_V6).expect("constant")
}

/// For a Talos subnet filter list (`["10.0.0.0/8", "!100.64.0.0/10", …]`): the tailnet ranges
/// that a positive entry lets through because no `!` entry excludes them.
pub fn tailnet_leaks(filters: &[&str]) -> Vec<&'static str> {
    let mut positive = Vec::new();
    let mut negative = Vec::new();
    for f in filters {
        let f = f.trim();
        match f.strip_prefix('!') {
            Some(n) => negative.extend(parse_loose(n)),
            None => positive.extend(parse_loose(f)),
        }
    }
    let mut leaks = Vec::new();
    for (range, name) in [(tailnet_v4(), TAILNET_V4), (tailnet_v6(), TAILNET_V6)] {
        let admitted = positive.iter().any(|p| p.overlaps(&range));
        let excluded = negative.iter().any(|n| n.contains(&range));
        if admitted && !excluded {
            leaks.push(name);
        }
    }
    leaks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_prefixes() {
        assert!(parse_prefix("10.0.0.0/8").is_ok());
        assert_eq!(parse_prefix("10.0.0.1"), Err(PrefixError::BareAddress));
        assert_eq!(
            parse_prefix("10.0.0.1/8"),
            Err(PrefixError::HostBits("10.0.0.0/8".into()))
        );
        assert_eq!(parse_prefix(" 10.0.0.0/8"), Err(PrefixError::Invalid));
        assert_eq!(parse_prefix("10.0.0.0/33"), Err(PrefixError::Invalid));
        assert!(parse_prefix("fd00::/8").is_ok());
    }

    #[test]
    fn leaks() {
        assert_eq!(tailnet_leaks(&["0.0.0.0/0"]), vec![TAILNET_V4]);
        assert!(tailnet_leaks(&["0.0.0.0/0", "!100.64.0.0/10"]).is_empty());
        assert!(tailnet_leaks(&["192.168.1.0/24"]).is_empty());
        assert_eq!(tailnet_leaks(&["100.64.1.0/24"]), vec![TAILNET_V4]);
        assert_eq!(
            tailnet_leaks(&["::/0", "!fd7a:115c:a1e0::/48", "100.0.0.0/8"]),
            vec![TAILNET_V4]
        );
    }
}
