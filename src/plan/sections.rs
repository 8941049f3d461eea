//! The config's other top-level sections: listeners, limits, forwarding, the admin listener,
//! the access log and so on. A change to any of them is a change the reload makes, so the
//! plan names the section even though it does not itemize it.

use super::Loaded;
use crate::config::model::Config;

/// The sections (as config files name them) that differ between `old` and `new`, as
/// `KEY: changed`. Routes, upstreams and the cache are planned in detail elsewhere.
pub fn changed(old: &Loaded, new: &Loaded) -> Vec<String> {
    let mut out = Vec::new();
    // `pingora` as written: its unset paths default to names derived from the config file's
    // own path, which differ between any two files.
    if old.spec.pingora != new.spec.pingora {
        out.push("pingora: changed".to_string());
    }
    // `admin` as written too: its default `state_file` sits next to the pid file.
    if format!("{:?}", old.spec.admin) != format!("{:?}", new.spec.admin) {
        out.push("admin: changed".to_string());
    }
    out.extend(validated(&old.config, &new.config));
    out
}

/// A section's name and how to read its validated form.
type Section = (&'static str, fn(&Config) -> String);

fn validated(old: &Config, new: &Config) -> Vec<String> {
    // Each section's validated model, compared through its `Debug` form: every field counts,
    // defaults included, so `limits: {}` and no `limits:` are the same.
    let sections: [Section; 7] = [
        ("listeners", |c| format!("{:?}", c.listeners)),
        ("demo_backends", |c| format!("{:?}", c.demo_backends)),
        ("forwarding", |c| format!("{:?}", c.forwarding)),
        ("limits", |c| format!("{:?}", c.limits)),
        ("rate_limit", |c| format!("{:?}", c.rate_limit)),
        ("resolver", |c| format!("{:?}", c.resolver)),
        ("access_log", |c| format!("{:?}", c.access_log)),
    ];
    sections
        .iter()
        .filter(|(_, of)| of(old) != of(new))
        .map(|(key, _)| format!("{key}: changed"))
        .collect()
}
