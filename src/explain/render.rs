//! An explanation as aligned text: the request, the routes tried (a table), the matched
//! route's details, the head sent upstream and the result.

use super::report::{Candidate, Explanation, Outcome};
use std::fmt::Write;

/// The explanation as aligned text.
pub fn render(e: &Explanation) -> String {
    let mut out = String::new();
    let kv = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "{k:<19}{v}");
    };
    kv(&mut out, "request", &e.request);
    kv(&mut out, "listener", &e.listener);
    kv(&mut out, "client", &e.peer);
    kv(&mut out, "host", e.host.as_deref().unwrap_or("(none)"));
    match (&e.path, &e.path_as_sent) {
        (Some(p), Some(sent)) => kv(&mut out, "path", &format!("{p} (normalized from {sent})")),
        (Some(p), None) => kv(&mut out, "path", p),
        (None, sent) => {
            let sent = sent.as_deref().unwrap_or("");
            kv(
                &mut out,
                "path",
                &format!("{sent} (refused, see the result)"),
            )
        }
    }
    if let Some(why) = &e.not_routed {
        let _ = writeln!(out, "\nno route looked up: {why}");
    }
    if !e.candidates.is_empty() || e.not_routed.is_none() {
        let host = e.host.as_deref().unwrap_or("(no host)");
        let _ = writeln!(out, "\nroutes tried for {host}, in order:");
        table(&mut out, &e.candidates, true);
    }
    if !e.other_hosts.is_empty() {
        let _ = writeln!(out, "\nroutes for other hosts (host does not apply):");
        table(&mut out, &e.other_hosts, false);
    }
    if let Some(r) = &e.route {
        let _ = writeln!(out, "\nmatched route: {}", r.name);
        for d in &r.details {
            let _ = writeln!(out, "  {:<19}{}", d.key, d.value);
        }
    }
    if !e.upstream_request.is_empty() {
        let _ = writeln!(out, "\nrequest sent upstream:");
        for l in &e.upstream_request {
            let _ = writeln!(out, "  {l}");
        }
    }
    let _ = writeln!(out);
    let result = match &e.outcome {
        Outcome::Proxied { upstream, path } => format!("proxied to {upstream} as {path}"),
        Outcome::Answered { status, body } => format!("fulcrum answers {status} itself: {body}"),
        Outcome::Redirected { location } => {
            format!("fulcrum answers 308 Permanent Redirect, Location: {location}")
        }
    };
    kv(
        &mut out,
        "result",
        &format!("{result} (exit {})", e.exit_code()),
    );
    out
}

/// Candidates as columns: number, route, host, path, conditions, verdict.
fn table(out: &mut String, rows: &[Candidate], numbered: bool) {
    if rows.is_empty() {
        let _ = writeln!(out, "  (no route applies to this host)");
        return;
    }
    let width = |f: fn(&Candidate) -> &str, title: &str| {
        rows.iter()
            .map(|c| f(c).chars().count())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let w_route = width(|c| &c.route, "route");
    let w_host = width(|c| &c.host, "host");
    let w_path = width(|c| &c.path, "path");
    let conditions = |c: &Candidate| {
        if c.conditions.is_empty() {
            "-".to_string()
        } else {
            c.conditions.clone()
        }
    };
    let w_cond = rows
        .iter()
        .map(|c| conditions(c).chars().count())
        .chain(["conditions".len()])
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "  {:>3}  {:<w_route$}  {:<w_host$}  {:<w_path$}  {:<w_cond$}  verdict",
        "#", "route", "host", "path", "conditions"
    );
    for (n, c) in rows.iter().enumerate() {
        let number = if numbered && !c.route.is_empty() {
            format!("{}.", n + 1)
        } else {
            String::new()
        };
        let cond = if c.route.is_empty() {
            String::new()
        } else {
            conditions(c)
        };
        let line = format!(
            "  {number:>3}  {:<w_route$}  {:<w_host$}  {:<w_path$}  {cond:<w_cond$}  {}",
            c.route, c.host, c.path, c.verdict
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
}
