//! The records [`TestDns`] serves, and what it answers for a name and type.
//!
//! [`TestDns`]: super::TestDns

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::dns::{Failure, DNS_A, DNS_AAAA, DNS_SRV};
use super::dns_wire::{check_name, Answer, RData, NOERROR, NXDOMAIN, SERVFAIL};

/// One SRV record's fields (RFC 2782), target normalized.
#[derive(Clone)]
struct Srv {
    priority: u16,
    weight: u16,
    port: u16,
    target: String,
}

/// Everything known about one name. A name with an entry exists (NOERROR); one without
/// does not (NXDOMAIN).
#[derive(Default)]
struct Entry {
    a: Vec<Ipv4Addr>,
    aaaa: Vec<Ipv6Addr>,
    srv: Vec<Srv>,
    failure: Option<Failure>,
}

/// What the server does with a query.
pub(super) enum Outcome {
    /// Sends no reply at all ([`Failure::Timeout`]).
    NoReply,
    /// Sends this answer.
    Reply(Answer),
}

/// The zone: names (normalized) to records, and the TTL of every record.
pub(super) struct Zone {
    ttl: u32,
    names: HashMap<String, Entry>,
}

/// Lowercase, without a trailing dot: the form names are stored and looked up in.
pub(super) fn normalize(name: &str) -> String {
    check_name(name);
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

impl Zone {
    /// An empty zone whose records will have a TTL of `ttl` seconds.
    pub(super) fn new(ttl: u32) -> Zone {
        Zone {
            ttl,
            names: HashMap::new(),
        }
    }

    /// The TTL of every record.
    pub(super) fn ttl(&self) -> u32 {
        self.ttl
    }

    /// Sets the TTL of every record.
    pub(super) fn set_ttl(&mut self, ttl: u32) {
        self.ttl = ttl;
    }

    fn entry(&mut self, name: &str) -> &mut Entry {
        self.names.entry(normalize(name)).or_default()
    }

    /// Replaces the A records of `name` (creating the name).
    pub(super) fn set_a(&mut self, name: &str, ips: &[Ipv4Addr]) {
        self.entry(name).a = ips.to_vec();
    }

    /// Replaces the AAAA records of `name` (creating the name).
    pub(super) fn set_aaaa(&mut self, name: &str, ips: &[Ipv6Addr]) {
        self.entry(name).aaaa = ips.to_vec();
    }

    /// Replaces the SRV records of `name` (creating the name).
    pub(super) fn set_srv(&mut self, name: &str, records: &[(u16, u16, u16, &str)]) {
        let srv = records
            .iter()
            .map(|&(priority, weight, port, target)| Srv {
                priority,
                weight,
                port,
                target: normalize(target),
            })
            .collect();
        self.entry(name).srv = srv;
    }

    /// Sets or lifts the failure of `name` (creating the name).
    pub(super) fn set_failure(&mut self, name: &str, failure: Option<Failure>) {
        self.entry(name).failure = failure;
    }

    /// Drops every record and failure of `name`, keeping the name: NOERROR, no answers.
    pub(super) fn clear(&mut self, name: &str) {
        *self.entry(name) = Entry::default();
    }

    /// Forgets `name`: NXDOMAIN.
    pub(super) fn remove(&mut self, name: &str) {
        self.names.remove(&normalize(name));
    }

    /// The outcome of a query for `name` (normalized) of type `qtype`.
    pub(super) fn answer(&self, name: &str, qtype: u16) -> Outcome {
        let Some(entry) = self.names.get(name) else {
            return Outcome::Reply(Answer::empty(NXDOMAIN));
        };
        match entry.failure {
            Some(Failure::Timeout) => return Outcome::NoReply,
            Some(Failure::ServFail) => return Outcome::Reply(Answer::empty(SERVFAIL)),
            Some(Failure::NxDomain) => return Outcome::Reply(Answer::empty(NXDOMAIN)),
            None => {}
        }
        let mut answer = Answer::empty(NOERROR);
        match qtype {
            DNS_A => answer.answers = entry.a.iter().map(|ip| RData::A(*ip)).collect(),
            DNS_AAAA => answer.answers = entry.aaaa.iter().map(|ip| RData::Aaaa(*ip)).collect(),
            DNS_SRV => {
                answer.answers = entry.srv.iter().map(srv_data).collect();
                answer.additional = self.target_addresses(&entry.srv);
            }
            _ => {}
        }
        Outcome::Reply(answer)
    }

    /// A and AAAA records of the SRV targets this zone knows (and that do not fail), each
    /// target once.
    fn target_addresses(&self, srv: &[Srv]) -> Vec<(String, RData)> {
        let mut seen: Vec<&str> = Vec::new();
        let mut additional = Vec::new();
        for record in srv {
            if seen.contains(&record.target.as_str()) {
                continue;
            }
            seen.push(&record.target);
            let Some(entry) = self.names.get(&record.target) else {
                continue;
            };
            if entry.failure.is_some() {
                continue;
            }
            let owner = || record.target.clone();
            additional.extend(entry.a.iter().map(|ip| (owner(), RData::A(*ip))));
            additional.extend(entry.aaaa.iter().map(|ip| (owner(), RData::Aaaa(*ip))));
        }
        additional
    }
}

fn srv_data(srv: &Srv) -> RData {
    RData::Srv {
        priority: srv.priority,
        weight: srv.weight,
        port: srv.port,
        target: srv.target.clone(),
    }
}
