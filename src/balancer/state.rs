//! A backend's administrative state, set by the runtime API or by leaving its group.

/// A backend's administrative state: what the runtime API (or removal from the group) allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Takes traffic (subject to health and the circuit breaker).
    Enabled = 0,
    /// Takes no new requests but those whose sticky cookie names it; in-flight ones finish.
    Drain = 1,
    /// Takes no new requests at all; in-flight ones finish.
    Disabled = 2,
    /// No longer in the group; requests that chose it earlier finish.
    Removed = 3,
}

impl State {
    /// The state stored as `v` (anything unknown reads as removed).
    pub(super) fn from_u8(v: u8) -> State {
        match v {
            0 => State::Enabled,
            1 => State::Drain,
            2 => State::Disabled,
            _ => State::Removed,
        }
    }

    /// The name used by the runtime API and `/status`.
    pub fn name(self) -> &'static str {
        match self {
            State::Enabled => "enabled",
            State::Drain => "drain",
            State::Disabled => "disabled",
            State::Removed => "removed",
        }
    }

    /// The state a runtime API name stands for (`removed` is not settable).
    pub fn parse(name: &str) -> Option<State> {
        match name {
            "enabled" => Some(State::Enabled),
            "drain" => Some(State::Drain),
            "disabled" => Some(State::Disabled),
            _ => None,
        }
    }
}
