//! Planning a config change, like `terraform plan`: `fulcrum diff OLD NEW` and
//! `fulcrum --reload --dry-run -c NEW`.
//!
//! Both configs are validated as the proxy would load them; the plan then lists routes and
//! upstream groups added, removed and changed ([`routes`], [`upstreams`]) and, where clients
//! are kept on a backend or a split side by a key, the share of them that would move
//! ([`movement`], evaluated with the proxy's own selection code). [`render`] prints it.
//!
//! Exit status (as `diff` and `terraform plan -detailed-exitcode`): 0 no changes, 2 changes,
//! 1 an error (an invalid config, no running fulcrum to compare with).

pub mod movement;
pub mod render;
pub mod routes;
pub mod saved;
pub mod sections;
pub mod upstreams;

use crate::config::{self, Config, ConfigError, FileConfig};
use std::path::{Path, PathBuf};

/// Exit status of a plan with changes.
pub const EXIT_CHANGES: u8 = 2;

/// `fulcrum diff OLD NEW`.
#[derive(clap::Args, Debug, Clone)]
pub struct DiffArgs {
    /// The config in use now.
    #[arg(value_name = "OLD")]
    pub old: PathBuf,
    /// The config to change to.
    #[arg(value_name = "NEW")]
    pub new: PathBuf,
}

/// A validated config and the file form it came from (which tells what was left unset).
pub struct Loaded {
    /// As written.
    pub spec: FileConfig,
    /// As validated.
    pub config: Config,
}

impl Loaded {
    /// Load and validate the file at `path`.
    pub fn file(path: &Path) -> Result<Loaded, ConfigError> {
        let (spec, config) = config::load_file(path)?;
        Ok(Loaded { spec, config })
    }
}

/// What changing from one config to another does.
#[derive(Debug, Default)]
pub struct Plan {
    /// Route changes.
    pub routes: Vec<routes::RouteChange>,
    /// Upstream group changes.
    pub upstreams: Vec<upstreams::UpstreamChange>,
    /// Changed top-level settings that are neither routes nor upstreams: `cache.*` itemized,
    /// the other sections (`limits`, `access_log`, ...) by name.
    pub settings: Vec<String>,
    /// Remarks that are not changes (e.g. sessions a reload ends anyway).
    pub notes: Vec<String>,
}

impl Plan {
    /// The plan from `old` to `new`.
    pub fn between(old: &Loaded, new: &Loaded) -> Plan {
        let routes = routes::diff(&old.config, &new.config);
        let (upstreams, mut notes) =
            upstreams::diff((&old.spec, &old.config), (&new.spec, &new.config));
        let (mut settings, cache_notes) = cache_changes(&old.config, &new.config);
        settings.extend(sections::changed(old, new));
        notes.extend(cache_notes);
        Plan {
            routes,
            upstreams,
            settings,
            notes,
        }
    }

    /// Whether anything changes.
    pub fn has_changes(&self) -> bool {
        !self.routes.is_empty() || !self.upstreams.is_empty() || !self.settings.is_empty()
    }

    /// The exit status: 0 without changes, [`EXIT_CHANGES`] with.
    pub fn exit_status(&self) -> u8 {
        if self.has_changes() {
            EXIT_CHANGES
        } else {
            0
        }
    }
}

/// The response cache's changed settings, and what a reload does to the cache: the new
/// process starts with an empty one.
fn cache_changes(old: &Config, new: &Config) -> (Vec<String>, Vec<String>) {
    let caches = |c: &Config| c.routes.iter().any(|r| r.cache.is_some());
    let mut settings = Vec::new();
    let (o, n) = (&old.cache, &new.cache);
    if caches(new) {
        let mut change = |key: &str, from: String, to: String| {
            if from != to {
                settings.push(format!("cache.{key}: {from} -> {to}"));
            }
        };
        change("max_size", o.max_size.to_string(), n.max_size.to_string());
        change(
            "max_object_size",
            o.max_object_size.to_string(),
            n.max_object_size.to_string(),
        );
        change(
            "lock_timeout",
            format!("{:?}", o.lock_timeout),
            format!("{:?}", n.lock_timeout),
        );
    }
    let mut notes = Vec::new();
    if caches(old) {
        notes.push(
            "cache: the new process starts with an empty cache (the old one's objects are \
             not handed over): expect misses while it fills"
                .to_string(),
        );
    }
    (settings, notes)
}

/// Why no plan could be made.
#[derive(Debug)]
pub enum PlanError {
    /// A config is invalid.
    Config(ConfigError),
    /// No running fulcrum to compare with (`--dry-run`), or it is not the one to reload.
    Running(crate::reload::ReloadError),
    /// The running fulcrum's saved config cannot be read.
    Saved(saved::SavedError),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::Config(e) => write!(f, "{e}"),
            PlanError::Running(e) => write!(f, "{e}"),
            PlanError::Saved(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PlanError {}

/// `fulcrum diff OLD NEW`: the plan's text and exit status.
pub fn diff_files(old: &Path, new: &Path) -> Result<(String, u8), PlanError> {
    let before = Loaded::file(old).map_err(PlanError::Config)?;
    let after = Loaded::file(new).map_err(PlanError::Config)?;
    let plan = Plan::between(&before, &after);
    let text = format!(
        "fulcrum diff: {} -> {}\n{}",
        old.display(),
        new.display(),
        render::render(&plan)
    );
    Ok((text, plan.exit_status()))
}

/// `fulcrum --reload --dry-run -c NEW`: the plan from the config the running fulcrum loaded
/// (found as `--reload` finds it) to `new`, and the exit status. Changes nothing.
pub fn dry_run(new: &Path) -> Result<(String, u8), PlanError> {
    let after = Loaded::file(new).map_err(PlanError::Config)?;
    let pid = crate::reload::find_running(&after.config).map_err(PlanError::Running)?;
    let copy = saved::path_for(&after.config.server.pid_file);
    let text = saved::read(&copy, pid).map_err(PlanError::Saved)?;
    let (spec, config) = config::load_text(&copy, &text).map_err(PlanError::Config)?;
    let before = Loaded { spec, config };
    let plan = Plan::between(&before, &after);
    let text = format!(
        "fulcrum --reload --dry-run: pid {pid} (config {}) -> {}; nothing was changed\n{}",
        copy.display(),
        new.display(),
        render::render(&plan)
    );
    Ok((text, plan.exit_status()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Loaded {
        let spec = config::parse_yaml(yaml).unwrap();
        let files = config::runtime_files::RuntimeFiles::for_listeners(["127.0.0.1:18080"]);
        let config = config::validate::validate_with(&spec, &files).unwrap();
        Loaded { spec, config }
    }

    const OLD: &str = r#"
listeners: [{addr: "127.0.0.1:18080"}]
upstreams:
  api:
    algorithm: consistent
    hash_key: header:x-user
    backends:
      - {addr: "127.0.0.1:4001"}
      - {addr: "127.0.0.1:4002"}
      - {addr: "127.0.0.1:4003"}
      - {addr: "127.0.0.1:4004"}
  web:
    backends: [{addr: "127.0.0.1:4010", weight: 1}, {addr: "127.0.0.1:4011"}]
  v1: {backends: [{addr: "127.0.0.1:4020"}]}
  v2: {backends: [{addr: "127.0.0.1:4021"}]}
routes:
  - {path: /api, upstream: api}
  - {path: /, upstream: web}
  - name: canary
    path: /shop
    split: [{upstream: v1, weight: 90}, {upstream: v2, weight: 10}]
    split_key: header:x-user
"#;

    #[test]
    fn other_sections_are_named_when_they_change() {
        let base = "listeners: [{addr: \"127.0.0.1:18080\"}]\nupstreams: {a: {backends: [{addr: \"127.0.0.1:4001\"}]}}\nroutes: [{path: /, upstream: a}]\n";
        let old = load(base);
        let same = load(&format!("{base}limits: {{}}\n"));
        assert!(!Plan::between(&old, &same).has_changes());
        let new = load(&format!(
            "{base}access_log: {{format: json}}\nlimits: {{max_body_bytes: 1KiB}}\n"
        ));
        let plan = Plan::between(&old, &new);
        assert_eq!(plan.settings, ["limits: changed", "access_log: changed"]);
        assert_eq!(plan.exit_status(), EXIT_CHANGES);
        // Defaults derived from the file's own path (pid file, state file) are no change.
        let admin = format!("{base}admin: {{addr: \"127.0.0.1:19900\"}}\n");
        let a = config::load_text(Path::new("/tmp/a/one.yaml"), &admin).unwrap();
        let b = config::load_text(Path::new("/tmp/b/two.yaml"), &admin).unwrap();
        let (a, b) = (
            Loaded {
                spec: a.0,
                config: a.1,
            },
            Loaded {
                spec: b.0,
                config: b.1,
            },
        );
        assert_ne!(a.config.server.pid_file, b.config.server.pid_file);
        assert!(
            !Plan::between(&a, &b).has_changes(),
            "{:?}",
            Plan::between(&a, &b).settings
        );
    }

    #[test]
    fn the_same_config_plans_nothing() {
        let plan = Plan::between(&load(OLD), &load(OLD));
        assert!(!plan.has_changes(), "{plan:?}");
        assert_eq!(plan.exit_status(), 0);
        assert_eq!(render::render(&plan), "plan: no changes\n");
    }

    #[test]
    fn lists_routes_backends_weights_and_moved_shares() {
        let new = OLD
            .replace("      - {addr: \"127.0.0.1:4004\"}\n", "")
            .replace("weight: 1}", "weight: 3}")
            .replace("weight: 90}", "weight: 70}")
            .replace("weight: 10}", "weight: 30}")
            .replace(
                "  - {path: /, upstream: web}",
                "  - {path: /, upstream: web}\n  - {host: beta.example.com, path: /, upstream: v2}",
            );
        let plan = Plan::between(&load(OLD), &load(&new));
        assert_eq!(plan.exit_status(), EXIT_CHANGES);
        let text = render::render(&plan);
        assert!(
            text.contains("  + route beta.example.com/ -> upstream v2\n"),
            "{text}"
        );
        assert!(
            text.contains("  ~ route \"canary\"\n      re-pointed: split v1 90, v2 10 by header:x-user -> split v1 70, v2 30 by header:x-user\n"),
            "{text}"
        );
        assert!(
            text.contains("      - backend 127.0.0.1:4004 (weight 1)\n"),
            "{text}"
        );
        assert!(
            text.contains("      ~ backend 127.0.0.1:4010: weight 1 -> 3\n"),
            "{text}"
        );
        assert!(
            text.ends_with("plan: routes: 1 added, 1 changed; upstreams: 2 changed\n"),
            "{text}"
        );
        let shares: Vec<f64> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("moved: "))
            .map(|l| l.split('%').next().unwrap().parse().unwrap())
            .collect();
        // The split's 20 % first, then the ketama group's quarter (one of four removed).
        assert_eq!(shares.len(), 2, "{text}");
        assert!((shares[0] - 20.0).abs() < 0.6, "{text}");
        assert!((15.0..35.0).contains(&shares[1]), "{text}");
    }

    #[test]
    fn other_route_settings_are_listed_without_a_repoint() {
        let new = OLD.replace(
            "  - {path: /api, upstream: api}",
            "  - {path: /api, upstream: api, rewrite: {regex: \"^/v1/\", to: /}, \
             mirror: {upstream: web, percent: 5}, strip_prefix: true}",
        );
        let plan = Plan::between(&load(OLD), &load(&new));
        let text = render::render(&plan);
        assert_eq!(
            text,
            "routes:\n  ~ route /api\n      changed: rewrite, mirror, strip_prefix\n\
             plan: routes: 1 changed; upstreams: no changes\n"
        );
    }

    #[test]
    fn a_cookie_group_without_a_secret_is_noted_not_changed() {
        let yaml = OLD.replace(
            "  v1: {backends",
            "  s:\n    algorithm: cookie\n    backends: [{addr: \"127.0.0.1:4040\"}]\n  v1: {backends",
        );
        let plan = Plan::between(&load(&yaml), &load(&yaml));
        assert!(!plan.has_changes(), "{plan:?}");
        assert_eq!(plan.notes.len(), 1, "{:?}", plan.notes);
        assert!(plan.notes[0].starts_with("upstream s: sticky.secret is not set"));
    }

    #[test]
    fn routes_are_known_by_name_or_by_host_path_and_conditions() {
        let new = OLD.replace(
            "  - {path: /api, upstream: api}",
            "  - {path: /api, upstream: api, match: {methods: [GET]}}",
        );
        let plan = Plan::between(&load(OLD), &load(&new));
        let text = render::render(&plan);
        assert!(
            text.contains("  - route /api (was -> upstream api)\n"),
            "{text}"
        );
        assert!(
            text.contains("  + route /api [methods=GET] -> upstream api\n"),
            "{text}"
        );
        // A renamed group used by a route: the route is re-pointed, the groups come and go.
        let renamed = OLD
            .replace("  web:", "  www:")
            .replace("upstream: web", "upstream: www");
        let text = render::render(&Plan::between(&load(OLD), &load(&renamed)));
        assert!(
            text.contains("  ~ route /\n      re-pointed: upstream web -> upstream www\n"),
            "{text}"
        );
        assert!(
            text.contains("  - upstream web (was round_robin, 2 backends)\n"),
            "{text}"
        );
        assert!(
            text.contains("  + upstream www (round_robin, 2 backends)\n"),
            "{text}"
        );
    }
}
