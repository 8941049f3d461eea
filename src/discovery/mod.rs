//! Discovery sources of dynamic upstreams (`upstreams.NAME.discovery`): where a group's
//! backends come from when they are not listed in the config.
//!
//! * [`dns`]: a small stub resolver (A, AAAA, SRV over UDP with TCP fallback).
//! * [`wire`]: DNS messages on the wire, as that resolver writes and reads them.
//! * [`source`]: one look at a `dns`, `dns_srv` or `file` source: the backends it names now.
//! * [`refresh`]: looking again, and putting what was found in the group.
//!
//! Only [`refresh`] keeps state between looks: when to look again, and the last good set
//! (kept by the group) when a look fails.

pub mod dns;
pub mod refresh;
pub mod source;
pub mod wire;

pub use dns::{Answer, DnsError, Resolver, Srv};
pub use source::{discover, file_stamp, Discovered, Found, SourceError};
