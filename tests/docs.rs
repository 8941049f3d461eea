//! The README and `docs/` are kept true by these tests, as the chapters are by
//! `tests/chapters.rs`: every YAML example is a complete config that passes `fulcrum -t` (or a
//! verbatim part of a file in the repository that does), every code block says what it is,
//! every link and anchor resolves, the README stays short, and its test command is the one CI
//! runs.

mod chapters_support;

use chapters_support::*;
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Code block languages the documentation may use.
const LANGS: &[&str] = &["yaml", "sh", "text", "json", "ini", "rust"];

/// The README's size limit: its first screen sells, the reference lives in `docs/`.
const README_MAX_BYTES: usize = 10 * 1024;

fn readme() -> PathBuf {
    root().join("README.md")
}

/// The README and every markdown file under `docs/`.
fn documents() -> Vec<PathBuf> {
    let mut files = files_with_suffix(&root().join("docs"), ".md");
    files.push(readme());
    files
}

fn all_blocks() -> Vec<Block> {
    blocks_of(&documents())
}

/// GitHub's anchor for a heading: lower case, punctuation other than `-` and `_` dropped,
/// spaces to dashes.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a markdown file's headings (outside code blocks).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_fence = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || !t.starts_with('#') {
            continue;
        }
        let title = t.trim_start_matches('#');
        if title.starts_with(' ') {
            out.insert(anchor(title));
        }
    }
    out
}

#[test]
fn the_readme_is_short_and_links_the_reference() {
    let text = read(&readme());
    assert!(
        text.len() <= README_MAX_BYTES,
        "README.md is {} bytes; keep it under {README_MAX_BYTES} and move reference text to docs/",
        text.len()
    );
    let linked: BTreeSet<PathBuf> = links(&text)
        .iter()
        .filter(|t| is_local_link(t))
        .filter_map(|t| resolve_link(&readme(), t).canonicalize().ok())
        .collect();
    let mut problems = Vec::new();
    for doc in files_with_suffix(&root().join("docs"), ".md") {
        if !linked.contains(&doc.canonicalize().unwrap()) {
            problems.push(format!("README.md does not link to {}", rel(&doc)));
        }
    }
    fail_if_any(problems);
}

#[test]
fn the_quick_start_is_two_commands_and_the_second_is_what_ci_runs() {
    let first_sh = all_blocks()
        .into_iter()
        .find(|b| b.file == readme() && b.lang == "sh")
        .expect("README.md has a sh block for the quick start");
    let commands: Vec<&str> = first_sh
        .body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands.len(), 2, "the quick start: {commands:?}");
    assert!(
        commands[0].contains("-c conf/demo.yaml"),
        "the first command runs the demo: {}",
        commands[0]
    );
    let ci = read(&root().join(".ci/run"));
    let ci_test = ci
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with('#'))
        .expect(".ci/run has commands");
    assert_eq!(
        commands[1], ci_test,
        "CI must run the README's test command"
    );
}

#[test]
fn every_code_block_says_what_it_is() {
    let mut problems = Vec::new();
    for b in all_blocks() {
        if !LANGS.contains(&b.lang.as_str()) {
            problems.push(format!(
                "{}: code block language {:?}; use one of {LANGS:?}",
                b.at(),
                b.lang
            ));
        }
    }
    fail_if_any(problems);
}

#[test]
fn every_yaml_example_passes_fulcrum_t() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for b in all_blocks().into_iter().filter(|b| b.lang == "yaml") {
        checked += 1;
        if let Some(file) = b.attr("file") {
            let path = root().join(file);
            if !path.is_file() {
                problems.push(format!("{}: {file} does not exist", b.at()));
            } else if !yaml_part_of(&read(&path), &b.body) {
                problems.push(format!(
                    "{}: this block is not {file}, nor a contiguous part of it",
                    b.at()
                ));
            }
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let configs = if b.has("kubernetes") {
            match configs_in_manifests(&b.body) {
                Ok(configs) => configs,
                Err(e) => {
                    problems.push(format!("{}: not a Kubernetes manifest: {e}", b.at()));
                    continue;
                }
            }
        } else if b.has("certs") {
            vec![with_certificates(&b.body, dir.path())]
        } else {
            vec![b.body.clone()]
        };
        for config in configs {
            let path = dir.path().join("example.yaml");
            std::fs::write(&path, &config).unwrap();
            let out = fulcrum_check(path.to_str().unwrap());
            if !out.status.success() {
                problems.push(format!(
                    "{}: this example does not pass fulcrum -t:\n{}",
                    b.at(),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
    }
    assert!(checked >= 10, "only {checked} YAML examples in the docs");
    fail_if_any(problems);
}

/// The fulcrum configs in Kubernetes manifests (a `yaml kubernetes` block): every
/// ConfigMap or Secret `data`/`stringData` entry whose key ends in `.yaml`.
fn configs_in_manifests(text: &str) -> Result<Vec<String>, String> {
    use serde::Deserialize;
    let mut configs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = serde_yaml::Value::deserialize(doc).map_err(|e| e.to_string())?;
        for field in ["kind", "apiVersion", "metadata"] {
            if value.get(field).is_none() {
                return Err(format!("no `{field}`"));
            }
        }
        for section in ["data", "stringData"] {
            let Some(map) = value.get(section).and_then(|d| d.as_mapping()) else {
                continue;
            };
            for (key, body) in map {
                if key.as_str().is_some_and(|k| k.ends_with(".yaml")) {
                    configs.push(body.as_str().unwrap_or_default().to_string());
                }
            }
        }
    }
    Ok(configs)
}

/// A config (a `yaml certs` block) whose `/etc/fulcrum/NAME.pem` and `NAME.key` are made
/// here: a self-signed certificate for NAME and `*.NAME`, written under `dir`.
fn with_certificates(config: &str, dir: &std::path::Path) -> String {
    let mut names = BTreeSet::new();
    for word in config.split(|c: char| c.is_whitespace() || matches!(c, ',' | '{' | '}')) {
        if let Some(name) = word
            .strip_prefix("/etc/fulcrum/")
            .and_then(|f| f.strip_suffix(".pem"))
        {
            names.insert(name.to_string());
        }
    }
    for name in &names {
        let made = rcgen::generate_simple_self_signed(vec![name.clone(), format!("*.{name}")])
            .expect("a self-signed certificate");
        std::fs::write(dir.join(format!("{name}.pem")), made.cert.pem()).unwrap();
        std::fs::write(
            dir.join(format!("{name}.key")),
            made.key_pair.serialize_pem(),
        )
        .unwrap();
    }
    assert!(
        !names.is_empty(),
        "a `yaml certs` block names no /etc/fulcrum/NAME.pem"
    );
    config.replace("/etc/fulcrum/", &format!("{}/", dir.display()))
}

#[test]
fn every_shipped_config_passes_fulcrum_t() {
    let mut problems = Vec::new();
    let files = files_with_suffix(&root().join("conf"), ".yaml");
    assert!(files.len() >= 3, "conf/ holds {} configs", files.len());
    for path in files {
        let out = fulcrum_check(&rel(&path));
        if !out.status.success() {
            problems.push(format!(
                "{}: fails fulcrum -t:\n{}",
                rel(&path),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    fail_if_any(problems);
}

#[test]
fn every_link_and_anchor_resolves() {
    let mut problems = Vec::new();
    for file in documents() {
        let text = read(&file);
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                resolve_link(&file, path)
            };
            if !dest.exists() {
                problems.push(format!("{}: broken link {target:?}", rel(&file)));
                continue;
            }
            let Some(fragment) = fragment else { continue };
            if dest.extension().is_some_and(|e| e == "md")
                && !anchors(&read(&dest)).contains(fragment)
            {
                problems.push(format!(
                    "{}: link {target:?}: {} has no heading with that anchor",
                    rel(&file),
                    rel(&dest)
                ));
            }
        }
    }
    fail_if_any(problems);
}

#[test]
fn anchors_follow_github() {
    assert_eq!(
        anchor(" `cache`, and a route's `cache`"),
        "cache-and-a-routes-cache"
    );
    assert_eq!(
        anchor(" HTTP/2 and gRPC to backends"),
        "http2-and-grpc-to-backends"
    );
    assert_eq!(
        anchors("# A\n```sh\n# not a heading\n```\n## B c\n"),
        ["a", "b-c"].into_iter().map(String::from).collect()
    );
}
