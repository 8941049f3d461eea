//! The plan as text: one line per change, `+` added, `-` removed, `~` changed.

use super::movement::Shift;
use super::routes::RouteChange;
use super::upstreams::UpstreamChange;
use super::Plan;
use std::fmt::Write;

/// `moved: 25.31% of 100000 sample keys go to another backend` (and the reason, if any).
fn shift_lines(out: &mut String, shift: &Shift, elsewhere: &str) {
    match shift {
        Shift::Measured {
            samples,
            unit,
            note,
            ..
        } => {
            let p = shift.percent().unwrap_or(0.0);
            let _ = writeln!(
                out,
                "      moved: {p:.2}% of {samples} {unit} go to another {elsewhere}"
            );
            if let Some(note) = note {
                let _ = writeln!(out, "        ({note})");
            }
        }
        Shift::Rekeyed(why) => {
            let _ = writeln!(out, "      moved: not comparable: {why}");
        }
    }
}

fn route_lines(out: &mut String, change: &RouteChange) {
    match change {
        RouteChange::Added { id, destination } => {
            let _ = writeln!(out, "  + route {id} -> {destination}");
        }
        RouteChange::Removed { id, destination } => {
            let _ = writeln!(out, "  - route {id} (was -> {destination})");
        }
        RouteChange::Changed {
            id,
            repointed,
            shift,
            other,
        } => {
            let _ = writeln!(out, "  ~ route {id}");
            if let Some((from, to)) = repointed {
                let _ = writeln!(out, "      re-pointed: {from} -> {to}");
            }
            if let Some(shift) = shift {
                shift_lines(out, shift, "side");
            }
            if !other.is_empty() {
                let _ = writeln!(out, "      changed: {}", other.join(", "));
            }
        }
    }
}

fn upstream_lines(out: &mut String, change: &UpstreamChange) {
    match change {
        UpstreamChange::Added { name, summary } => {
            let _ = writeln!(out, "  + upstream {name} ({summary})");
        }
        UpstreamChange::Removed { name, summary } => {
            let _ = writeln!(out, "  - upstream {name} (was {summary})");
        }
        UpstreamChange::Changed(g) => {
            let _ = writeln!(out, "  ~ upstream {}", g.name);
            if let Some((from, to)) = g.algorithm {
                let _ = writeln!(out, "      algorithm: {} -> {}", from.name(), to.name());
            }
            for (addr, w) in &g.removed {
                let _ = writeln!(out, "      - backend {addr} (weight {w})");
            }
            for (addr, w) in &g.added {
                let _ = writeln!(out, "      + backend {addr} (weight {w})");
            }
            for (addr, from, to) in &g.reweighted {
                let _ = writeln!(out, "      ~ backend {addr}: weight {from} -> {to}");
            }
            if !g.other.is_empty() {
                let _ = writeln!(out, "      changed: {}", g.other.join(", "));
            }
            if let Some(shift) = &g.shift {
                shift_lines(out, shift, "backend");
            }
        }
    }
}

/// `1 added, 2 changed`, or `no changes`.
fn counts<T>(items: &[T], kind: impl Fn(&T) -> usize) -> String {
    let mut n = [0usize; 3];
    for item in items {
        n[kind(item)] += 1;
    }
    let parts: Vec<String> = ["added", "removed", "changed"]
        .iter()
        .zip(n)
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
    if parts.is_empty() {
        "no changes".into()
    } else {
        parts.join(", ")
    }
}

/// The whole plan, ending with a summary line.
pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    if !plan.routes.is_empty() {
        out.push_str("routes:\n");
        for change in &plan.routes {
            route_lines(&mut out, change);
        }
    }
    if !plan.upstreams.is_empty() {
        out.push_str("upstreams:\n");
        for change in &plan.upstreams {
            upstream_lines(&mut out, change);
        }
    }
    if !plan.settings.is_empty() {
        out.push_str("settings:\n");
        for change in &plan.settings {
            let _ = writeln!(out, "  ~ {change}");
        }
    }
    if !plan.notes.is_empty() {
        out.push_str("notes:\n");
        for note in &plan.notes {
            let _ = writeln!(out, "  {note}");
        }
    }
    let routes = counts(&plan.routes, |c| match c {
        RouteChange::Added { .. } => 0,
        RouteChange::Removed { .. } => 1,
        RouteChange::Changed { .. } => 2,
    });
    let upstreams = counts(&plan.upstreams, |c| match c {
        UpstreamChange::Added { .. } => 0,
        UpstreamChange::Removed { .. } => 1,
        UpstreamChange::Changed(_) => 2,
    });
    if plan.has_changes() {
        let settings = match plan.settings.len() {
            0 => String::new(),
            n => format!("; settings: {n} changed"),
        };
        let _ = writeln!(
            out,
            "plan: routes: {routes}; upstreams: {upstreams}{settings}"
        );
    } else {
        out.push_str("plan: no changes\n");
    }
    out
}
