//! The runtime API's changes to a group: add, re-weight, drain, disable and delete backends
//! (`/upstreams/NAME/backends`), each checked against the group as it is, then published like
//! any other change.

use super::{ChangeError, Changes, Control, UpstreamGroup};
use crate::balancer::stats::State;
use crate::config::model::Backend;
use std::net::SocketAddr;
use std::time::Instant;

impl UpstreamGroup {
    /// Runtime API: add a backend.
    pub fn add(&self, addr: SocketAddr, weight: u32) -> Result<Changes, ChangeError> {
        let mut control = self.lock();
        if control.current.contains_key(&addr) {
            return Err(ChangeError::Exists(addr));
        }
        if control.slots.available(Instant::now()) == 0 {
            return Err(ChangeError::Full(self.stats.capacity()));
        }
        if let Some(o) = control.overrides.get_mut(&addr) {
            o.deleted = false;
            o.weight = None;
            o.state = None;
        }
        control.api.retain(|b| b.addr != addr);
        control.api.push(Backend {
            addr,
            host: None,
            weight,
        });
        Ok(self.publish(&mut control))
    }

    /// Runtime API: change a backend's state and/or weight.
    pub fn patch(
        &self,
        addr: SocketAddr,
        state: Option<State>,
        weight: Option<u32>,
        force: bool,
    ) -> Result<Changes, ChangeError> {
        let mut control = self.lock();
        if !control.current.contains_key(&addr) {
            return Err(ChangeError::UnknownBackend(addr));
        }
        let mut next = control.overrides.get(&addr).copied().unwrap_or_default();
        if let Some(state) = state {
            next.state = (state != State::Enabled).then_some(state);
        }
        if let Some(weight) = weight {
            next.weight = Some(weight);
        }
        if !force && self.enabled_without(&control, addr, next.state.is_some()) == 0 {
            return Err(ChangeError::WouldEmpty);
        }
        control.overrides.insert(addr, next);
        Ok(self.publish(&mut control))
    }

    /// Runtime API: delete a backend (it drains: requests on it finish).
    pub fn delete(&self, addr: SocketAddr, force: bool) -> Result<Changes, ChangeError> {
        let mut control = self.lock();
        if !control.current.contains_key(&addr) {
            return Err(ChangeError::UnknownBackend(addr));
        }
        if !force && self.enabled_without(&control, addr, true) == 0 {
            return Err(ChangeError::WouldEmpty);
        }
        let before = control.api.len();
        control.api.retain(|b| b.addr != addr);
        if control.api.len() == before {
            // Static or discovered: keep it out while its source names it.
            control.overrides.entry(addr).or_default().deleted = true;
        } else {
            control.overrides.remove(&addr);
        }
        Ok(self.publish(&mut control))
    }

    /// Enabled backends once `addr` is taken out (`out`) or left enabled.
    fn enabled_without(&self, control: &Control, addr: SocketAddr, out: bool) -> usize {
        control
            .current
            .values()
            .filter(|m| {
                if m.backend.addr == addr {
                    return !out;
                }
                self.stats
                    .get(m.slot())
                    .is_some_and(|s| s.state() == State::Enabled)
            })
            .count()
    }
}
