//! The interface families' labels: which interface indices of a router get a label of their own
//! (at most [`MAX_INTERFACES_PER_ROUTER`], then `other`), and the names they are shown by.
//!
//! Owned by the publisher. Names come from options data the router sends (IE 82 interfaceName
//! with the interface as scope, learned by the decoder), then from `--interface-name
//! INDEX@ROUTER=NAME` (one router) and `--interface-name INDEX=NAME` (every router), in that
//! order of precedence; a label without a name is the index in decimal. A name applies to the
//! series created after it is known (a router announces its names at start, before or with its
//! first flows).

use std::net::IpAddr;
use std::str::FromStr;

use hashbrown::HashMap;

use super::routers::Router;

/// Interfaces per router with a label of their own; the rest are `other`.
pub const MAX_INTERFACES_PER_ROUTER: usize = 1024;

/// Longest interface name kept (bytes); longer names are cut at a character boundary.
pub const MAX_NAME_BYTES: usize = 64;

/// Names learned from options data, all routers together; beyond, new ones are ignored.
pub const MAX_LEARNED_NAMES: usize = 65_536;

/// One `--interface-name` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceName {
    pub index: u32,
    /// `None`: every router.
    pub router: Option<IpAddr>,
    pub name: String,
}

impl FromStr for InterfaceName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage =
            || format!("{s:?}: expected INDEX=NAME or INDEX@ROUTER=NAME (e.g. 1=ether1-wan)");
        let (key, name) = s.split_once('=').ok_or_else(usage)?;
        let (index, router) = match key.split_once('@') {
            Some((i, r)) => (i, Some(r.parse::<IpAddr>().map_err(|_| usage())?)),
            None => (key, None),
        };
        let index = index.trim().parse::<u32>().map_err(|_| usage())?;
        let name = name.trim();
        if name.is_empty() {
            return Err(usage());
        }
        Ok(InterfaceName {
            index,
            router,
            name: truncate(name).to_string(),
        })
    }
}

fn truncate(name: &str) -> &str {
    let mut end = name.len().min(MAX_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// An `interface` label key: an index with a label of its own, or `other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interface {
    Index(u32),
    Other,
}

/// See the module doc.
#[derive(Debug, Default)]
pub struct Interfaces {
    /// Router → interface index → last seen (monotonic seconds).
    admitted: HashMap<Router, HashMap<u32, u64>>,
    /// (router or `None` for every router, index) → name, from flags.
    names: HashMap<(Option<IpAddr>, u32), String>,
    /// (router, index) → name, from options data (at most [`MAX_LEARNED_NAMES`]).
    learned: HashMap<(IpAddr, u32), String>,
}

impl Interfaces {
    pub fn new(names: &[InterfaceName]) -> Self {
        Interfaces {
            admitted: HashMap::new(),
            learned: HashMap::new(),
            names: names
                .iter()
                .map(|n| ((n.router, n.index), n.name.clone()))
                .collect(),
        }
    }

    /// The label key of `index` on `router` at second `now`: its own while the router has fewer
    /// than [`MAX_INTERFACES_PER_ROUTER`] (or already has it), else `other`.
    pub fn admit(&mut self, router: Router, index: u32, now: u64) -> Interface {
        let seen = self.admitted.entry(router).or_default();
        if let Some(t) = seen.get_mut(&index) {
            *t = now;
            return Interface::Index(index);
        }
        if seen.len() >= MAX_INTERFACES_PER_ROUTER {
            return Interface::Other;
        }
        seen.insert(index, now);
        Interface::Index(index)
    }

    /// Notes a name `router` announced for `index` in options data.
    pub fn learn(&mut self, router: IpAddr, index: u32, name: &str) {
        if self.learned.len() >= MAX_LEARNED_NAMES && !self.learned.contains_key(&(router, index)) {
            return;
        }
        self.learned
            .insert((router, index), truncate(name).to_string());
    }

    /// The `interface` label: the name the router announced, else its `--interface-name`, else
    /// the name for every router, else the index in decimal.
    pub fn label(&self, router: Router, interface: Interface) -> String {
        let Interface::Index(index) = interface else {
            return "other".into();
        };
        let ip = match router {
            Router::Addr(ip) => ip,
            Router::Other => None,
        };
        ip.and_then(|ip| self.learned.get(&(ip, index)))
            .or_else(|| ip.and_then(|ip| self.names.get(&(Some(ip), index))))
            .or_else(|| self.names.get(&(None, index)))
            .cloned()
            .unwrap_or_else(|| index.to_string())
    }

    /// Forgets interfaces not seen for `idle_secs` (their series have expired too), and routers
    /// left with none.
    pub fn expire(&mut self, now: u64, idle_secs: u64) {
        self.admitted.retain(|_, seen| {
            seen.retain(|_, t| now.saturating_sub(*t) <= idle_secs);
            !seen.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_for_every_router_and_for_one() {
        let n: InterfaceName = "1=ether1-wan".parse().unwrap();
        assert_eq!(
            (n.index, n.router, n.name.as_str()),
            (1, None, "ether1-wan")
        );
        let n: InterfaceName = "7@192.0.2.1=bridge-lan".parse().unwrap();
        assert_eq!(n.router, Some("192.0.2.1".parse().unwrap()));
        for bad in ["ether1", "x=wan", "1@router=wan", "1=", "=wan"] {
            assert!(bad.parse::<InterfaceName>().is_err(), "{bad}");
        }
        let long: InterfaceName = format!("2={}", "é".repeat(40)).parse().unwrap();
        assert_eq!(long.name.len(), 64);
    }

    #[test]
    fn a_router_gets_a_bounded_number_of_interfaces_and_names_resolve() {
        let r = Router::Addr(Some("192.0.2.1".parse().unwrap()));
        let names = [
            "1=wan".parse().unwrap(),
            "1@192.0.2.1=ether1".parse().unwrap(),
            "2=lan".parse().unwrap(),
        ];
        let mut t = Interfaces::new(&names);
        for i in 0..MAX_INTERFACES_PER_ROUTER as u32 {
            assert_eq!(t.admit(r, i, 0), Interface::Index(i));
        }
        assert_eq!(t.admit(r, 5000, 0), Interface::Other);
        assert_eq!(t.admit(r, 3, 1), Interface::Index(3));
        let other = Router::Addr(Some("192.0.2.2".parse().unwrap()));
        assert_eq!(t.admit(other, 5000, 0), Interface::Index(5000));
        assert_eq!(t.label(r, Interface::Index(1)), "ether1");
        assert_eq!(t.label(other, Interface::Index(1)), "wan");
        assert_eq!(t.label(r, Interface::Index(2)), "lan");
        assert_eq!(t.label(r, Interface::Index(9)), "9");
        assert_eq!(t.label(r, Interface::Other), "other");
        // Idle interfaces free their places.
        t.expire(100, 50);
        assert_eq!(t.admit(r, 5000, 100), Interface::Index(5000));
    }
}
