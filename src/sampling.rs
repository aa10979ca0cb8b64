//! Sampling correction policy: which rate multiplies a flow's bytes and packets.
//!
//! Owns the rule "an override for the sampler's network wins, else the rate the flow carries,
//! else the configured default" and the parsing of `--sampling-rate-override CIDR=N`. It does not
//! learn rates from the wire (the native decoder does) and does not count anything.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// One `--sampling-rate-override` entry: samplers inside `net` use `rate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateOverride {
    pub net: IpNet,
    pub rate: u64,
}

impl FromStr for RateOverride {
    type Err = String;

    /// Parses `CIDR=N` or `ADDRESS=N` (a bare address is a host route).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (net, rate) = s
            .split_once('=')
            .ok_or_else(|| format!("expected CIDR=RATE (e.g. 192.0.2.0/24=512), got {s:?}"))?;
        let net = net.trim();
        let net = match net.parse::<IpNet>() {
            Ok(n) => n.trunc(),
            Err(_) => net
                .parse::<IpAddr>()
                .map(IpNet::from)
                .map_err(|_| format!("{net:?} is not an IP network or address"))?,
        };
        let rate = rate
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|&r| r >= 1)
            .ok_or_else(|| format!("sampling rate {rate:?} must be a whole number >= 1"))?;
        Ok(RateOverride { net, rate })
    }
}

impl fmt::Display for RateOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.net, self.rate)
    }
}

/// The rate rule applied to every flow, from both inputs.
#[derive(Debug, Clone)]
pub struct SamplingPolicy {
    default: u64,
    /// Most specific network first, so the longest matching prefix wins.
    overrides: Vec<RateOverride>,
}

impl SamplingPolicy {
    /// `default` replaces a rate of 0 (unknown); it is clamped to at least 1.
    pub fn new(default: u64, mut overrides: Vec<RateOverride>) -> Self {
        overrides.sort_by_key(|o| std::cmp::Reverse(o.net.prefix_len()));
        SamplingPolicy {
            default: default.max(1),
            overrides,
        }
    }

    /// The multiplier for a flow from `sampler` that carries `carried` (0 = unknown).
    #[inline]
    pub fn rate(&self, sampler: Option<IpAddr>, carried: u64) -> u64 {
        self.resolve(sampler, carried).0
    }

    /// The multiplier, and whether the rate was known (an override, or carried by the flow)
    /// rather than the default standing in for an unknown one.
    ///
    /// The override list is short (one entry per router group), so a linear scan beats any index.
    #[inline]
    pub fn resolve(&self, sampler: Option<IpAddr>, carried: u64) -> (u64, bool) {
        if let Some(addr) = sampler
            && let Some(o) = self.overrides.iter().find(|o| o.net.contains(&addr))
        {
            return (o.rate, true);
        }
        if carried == 0 {
            (self.default, false)
        } else {
            (carried, true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn parses_overrides() {
        let o: RateOverride = "192.0.2.0/24=512".parse().unwrap();
        assert_eq!(o.net, "192.0.2.0/24".parse::<IpNet>().unwrap());
        assert_eq!(o.rate, 512);
        let host: RateOverride = "2001:db8::1=4".parse().unwrap();
        assert_eq!(host.net, "2001:db8::1/128".parse::<IpNet>().unwrap());
        // Host bits are dropped: 192.0.2.7/24 means the /24.
        let t: RateOverride = "192.0.2.7/24=2".parse().unwrap();
        assert_eq!(t.net.to_string(), "192.0.2.0/24");
        for bad in [
            "192.0.2.0/24",
            "192.0.2.0/24=0",
            "192.0.2.0/24=-3",
            "x=5",
            "192.0.2.0/33=5",
        ] {
            assert!(
                bad.parse::<RateOverride>().is_err(),
                "{bad} must be rejected"
            );
        }
    }

    #[test]
    fn override_wins_then_carried_then_default() {
        let p = SamplingPolicy::new(
            10,
            vec![
                "192.0.2.0/24=512".parse().unwrap(),
                "192.0.2.128/25=64".parse().unwrap(),
            ],
        );
        assert_eq!(p.rate(ip("192.0.2.1"), 100), 512);
        assert_eq!(p.rate(ip("192.0.2.200"), 100), 64, "longest prefix wins");
        assert_eq!(p.rate(ip("198.51.100.1"), 100), 100);
        assert_eq!(p.rate(ip("198.51.100.1"), 0), 10);
        assert_eq!(p.rate(None, 0), 10);
        assert_eq!(SamplingPolicy::new(0, vec![]).rate(None, 0), 1);
    }
}
