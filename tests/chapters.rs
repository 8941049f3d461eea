//! The tutorial in `chapters/` is kept true by these tests: every Rust excerpt is a verbatim
//! region of the source, every config passes `fulcrum -t` (and every `*.bad.yaml` fails it),
//! every runnable shell block runs against the real binary and real backends on 127.0.0.1 with
//! its key output checked, and every link resolves. The conventions are described in
//! `chapters/README.md` and `tests/chapters_support/mod.rs`.

mod chapters_support;

use chapters_support::*;
use std::path::Path;

/// Code block languages a chapter may use.
const LANGS: &[&str] = &["rust", "yaml", "sh", "text"];

/// Folders (relative to the repository root) a Rust excerpt may come from.
const EXCERPT_ROOTS: &[&str] = &["src/", "tests/chapters_support/"];

fn all_markdown() -> Vec<std::path::PathBuf> {
    files_with_suffix(&chapters_dir(), ".md")
}

fn all_blocks() -> Vec<Block> {
    blocks_of(&all_markdown())
}

// ---------------------------------------------------------------------------------------------
// Structure and links
// ---------------------------------------------------------------------------------------------

#[test]
fn the_index_lists_every_chapter_and_the_main_readme_links_to_it() {
    let mut problems = Vec::new();
    let index_path = chapters_dir().join("README.md");
    let index = read(&index_path);
    let linked: Vec<_> = links(&index)
        .iter()
        .filter(|t| is_local_link(t))
        .map(|t| resolve_link(&index_path, t))
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    let dirs = chapter_dirs();
    assert!(!dirs.is_empty(), "no chapter folders under chapters/");
    for dir in &dirs {
        let readme = dir.join("README.md");
        if !readme.is_file() {
            problems.push(format!("{} has no README.md", rel(dir)));
            continue;
        }
        let targets = [dir.canonicalize().unwrap(), readme.canonicalize().unwrap()];
        if !linked.iter().any(|l| targets.contains(l)) {
            problems.push(format!(
                "chapters/README.md does not link to {}",
                rel(&readme)
            ));
        }
    }

    let main = root().join("README.md");
    let index_canon = index_path.canonicalize().unwrap();
    let chapters_canon = chapters_dir().canonicalize().unwrap();
    let to_index = links(&read(&main))
        .iter()
        .filter(|t| is_local_link(t))
        .filter_map(|t| resolve_link(&main, t).canonicalize().ok())
        .any(|p| p == index_canon || p == chapters_canon);
    if !to_index {
        problems.push("README.md does not link to chapters/README.md".into());
    }
    fail_if_any(problems);
}

#[test]
fn every_local_link_resolves() {
    let mut problems = Vec::new();
    let mut files = all_markdown();
    files.push(root().join("README.md"));
    for file in files {
        let is_main = file == root().join("README.md");
        for target in links(&read(&file)) {
            if !is_local_link(&target) {
                continue;
            }
            // From the main README only the links into the tutorial are this test's business.
            if is_main && !target.starts_with("chapters") {
                continue;
            }
            if !resolve_link(&file, &target).exists() {
                problems.push(format!("{}: broken link {target:?}", rel(&file)));
            }
        }
    }
    fail_if_any(problems);
}

#[test]
fn every_chapter_is_a_complete_lesson_that_links_to_the_next() {
    let mut problems = Vec::new();
    let dirs = chapter_dirs();
    for (i, dir) in dirs.iter().enumerate() {
        let readme = dir.join("README.md");
        let text = read(&readme);
        for heading in ["## Learning objectives", "## Exercises", "## Key takeaways"] {
            if !text.lines().any(|l| l.trim_end() == heading) {
                problems.push(format!("{}: no `{heading}` section", rel(&readme)));
            }
        }
        if !text.lines().any(|l| l.starts_with("# ")) {
            problems.push(format!("{}: no title", rel(&readme)));
        }
        let next = match dirs.get(i + 1) {
            Some(next) => next.join("README.md"),
            None => chapters_dir().join("README.md"),
        };
        let next = next.canonicalize().unwrap();
        let links_next = links(&text)
            .iter()
            .filter(|t| is_local_link(t))
            .filter_map(|t| resolve_link(&readme, t).canonicalize().ok())
            .any(|p| p == next || Some(p.as_path()) == next.parent());
        if !links_next {
            problems.push(format!(
                "{}: does not link to the next chapter ({})",
                rel(&readme),
                rel(&next)
            ));
        }
    }
    fail_if_any(problems);
}

// ---------------------------------------------------------------------------------------------
// Code blocks
// ---------------------------------------------------------------------------------------------

#[test]
fn code_blocks_say_what_they_are() {
    let mut problems = Vec::new();
    for b in all_blocks() {
        if !LANGS.contains(&b.lang.as_str()) {
            problems.push(format!(
                "{}: code block language {:?}; use one of {LANGS:?} so the tests know what to check",
                b.at(),
                b.lang
            ));
        }
        if b.lang == "text" && b.args.iter().any(|a| a != "expect") {
            problems.push(format!(
                "{}: unknown text block option {:?}",
                b.at(),
                b.args
            ));
        }
        if b.lang == "sh" && b.args.iter().any(|a| a != "run") {
            problems.push(format!("{}: unknown sh block option {:?}", b.at(), b.args));
        }
    }
    fail_if_any(problems);
}

#[test]
fn rust_excerpts_are_verbatim_regions_of_the_source() {
    let mut problems = Vec::new();
    let mut count = 0;
    for b in all_blocks().into_iter().filter(|b| b.lang == "rust") {
        count += 1;
        let Some(path) = b.args.first() else {
            problems.push(format!(
                "{}: a rust block must name the file it is taken from: ```rust src/FILE.rs",
                b.at()
            ));
            continue;
        };
        if !EXCERPT_ROOTS.iter().any(|r| path.starts_with(r)) || path.contains("..") {
            problems.push(format!(
                "{}: {path} is not under one of {EXCERPT_ROOTS:?}",
                b.at()
            ));
            continue;
        }
        let file = root().join(path);
        let Ok(source) = std::fs::read_to_string(&file) else {
            problems.push(format!("{}: {path} does not exist", b.at()));
            continue;
        };
        let lines = b.body.lines().filter(|l| !l.trim().is_empty()).count();
        if lines == 0 {
            problems.push(format!("{}: empty excerpt", b.at()));
            continue;
        }
        if find_excerpt(&source, &b.body).is_none() {
            problems.push(format!(
                "{}: this excerpt is not a verbatim region of {path}: {}",
                b.at(),
                excerpt_mismatch_hint(&source, &b.body)
            ));
        }
    }
    assert!(count > 0, "the chapters show no Rust excerpts");
    fail_if_any(problems);
}

#[test]
fn yaml_blocks_show_chapter_files_or_valid_configs() {
    let mut problems = Vec::new();
    for b in all_blocks().into_iter().filter(|b| b.lang == "yaml") {
        match b.attr("file") {
            Some(file) => {
                let path = root().join(file);
                if !file.starts_with("chapters/") || !path.is_file() {
                    problems.push(format!("{}: {file} is not a file under chapters/", b.at()));
                    continue;
                }
                if !yaml_part_of(&read(&path), &b.body) {
                    problems.push(format!(
                        "{}: this block is not {file}, nor a contiguous part of it",
                        b.at()
                    ));
                }
            }
            None => {
                // A config shown inline must be complete and valid.
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("inline.yaml");
                std::fs::write(&path, &b.body).unwrap();
                let out = fulcrum_check(path.to_str().unwrap());
                if !out.status.success() {
                    problems.push(format!(
                        "{}: this config does not pass fulcrum -t (give it `file=` if it is part \
                         of a chapter file):\n{}",
                        b.at(),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
        }
    }
    fail_if_any(problems);
}

#[test]
fn every_chapter_config_passes_fulcrum_t_and_every_bad_one_fails_it() {
    let mut problems = Vec::new();
    let run_files = files_run_by_chapters();
    let files = files_with_suffix(&chapters_dir(), ".yaml");
    assert!(!files.is_empty(), "no configs under chapters/");
    for path in files {
        let file = rel(&path);
        let out = fulcrum_check(&file);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if file.ends_with(".bad.yaml") {
            // Must fail with one line that names the file, and a chapter must show that line.
            if out.status.success() {
                problems.push(format!(
                    "{file}: passes fulcrum -t, but *.bad.yaml must fail"
                ));
            } else if !stderr.starts_with(&format!("fulcrum: {file}: ")) {
                problems.push(format!("{file}: unexpected error output:\n{stderr}"));
            }
            if !run_files.contains(&file) {
                problems.push(format!(
                    "{file}: no chapter runs it (a `sh run` block with `fulcrum -t -c {file}` and \
                     a `text expect` block showing the error)"
                ));
            }
        } else if !out.status.success() {
            problems.push(format!("{file}: fails fulcrum -t:\n{stderr}"));
        } else if !stdout.contains(&format!("fulcrum: {file} is valid")) {
            problems.push(format!(
                "{file}: unexpected output of fulcrum -t:\n{stdout}"
            ));
        }
    }
    fail_if_any(problems);
}

// ---------------------------------------------------------------------------------------------
// Runnable blocks, one test per chapter (each chapter has its own ports)
// ---------------------------------------------------------------------------------------------

/// Chapters with a test below; a chapter folder missing here fails
/// `every_chapter_runs_in_a_test`.
const RUN_TESTS: &[&str] = &[
    "01-first-proxy",
    "02-configuration",
    "03-routing-and-headers",
    "04-load-balancing",
    "05-health-checks",
    "06-failover-and-circuit-breaking",
    "07-sticky-sessions-and-hashing",
    "08-observability",
    "09-zero-downtime",
    "10-production",
    "11-hardening",
    "12-service-discovery",
    "13-http2-and-grpc",
    "14-canary-releases",
    "15-caching-and-compression",
];

fn run(name: &str) {
    let dir = chapters_dir().join(name);
    assert!(dir.is_dir(), "no chapter folder {}", rel(&dir));
    fail_if_any(run_chapter(&dir));
}

#[test]
fn every_chapter_runs_in_a_test() {
    let missing: Vec<String> = chapter_dirs()
        .iter()
        .map(|d| file_name(d))
        .filter(|n| !RUN_TESTS.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "add a test that runs {missing:?} to tests/chapters.rs"
    );
    for dir in chapter_dirs() {
        let readme = dir.join("README.md");
        let steps = steps(&blocks(&readme, &read(&readme)));
        assert!(
            steps.iter().any(|s| s.expect.is_some()),
            "{}: no runnable block with checked output",
            rel(&readme)
        );
    }
}

#[test]
fn chapter_01_first_proxy_runs() {
    run("01-first-proxy");
}

#[test]
fn chapter_02_configuration_runs() {
    run("02-configuration");
}

#[test]
fn chapter_03_routing_and_headers_runs() {
    run("03-routing-and-headers");
}

#[test]
fn chapter_04_load_balancing_runs() {
    run("04-load-balancing");
}

#[test]
fn chapter_05_health_checks_runs() {
    run("05-health-checks");
}

#[test]
fn chapter_06_failover_and_circuit_breaking_runs() {
    run("06-failover-and-circuit-breaking");
}

#[test]
fn chapter_07_sticky_sessions_and_hashing_runs() {
    run("07-sticky-sessions-and-hashing");
}

#[test]
fn chapter_08_observability_runs() {
    run("08-observability");
}

#[test]
fn chapter_09_zero_downtime_runs() {
    run("09-zero-downtime");
}

#[test]
fn chapter_10_production_runs() {
    run("10-production");
}

#[test]
fn chapter_11_hardening_runs() {
    run("11-hardening");
}

#[test]
fn chapter_12_service_discovery_runs() {
    run("12-service-discovery");
}

#[test]
fn chapter_13_http2_and_grpc_runs() {
    run("13-http2-and-grpc");
}

#[test]
fn chapter_14_canary_releases_runs() {
    run("14-canary-releases");
}

#[test]
fn chapter_15_caching_and_compression_runs() {
    run("15-caching-and-compression");
}

// ---------------------------------------------------------------------------------------------
// The checks themselves catch drift
// ---------------------------------------------------------------------------------------------

#[test]
fn an_edited_excerpt_no_longer_matches() {
    let source = read(Path::new(&root().join("src/routing/mod.rs")));
    let excerpt = "    pub fn find(&self, host: Option<&str>, path: &str, req: &RequestHeader) -> Option<usize> {\n        if let Some(host) = host {";
    assert!(find_excerpt(&source, excerpt).is_some());
    // Indentation of the whole excerpt does not matter...
    let dedented = "pub fn find(&self, host: Option<&str>, path: &str, req: &RequestHeader) -> Option<usize> {\n    if let Some(host) = host {";
    assert!(find_excerpt(&source, dedented).is_some());
    // ...but a changed token, a changed relative indentation or a skipped line does.
    let changed = excerpt.replace("Option<usize>", "Option<u32>");
    assert!(find_excerpt(&source, &changed).is_none());
    let reindented = "pub fn find(&self, host: Option<&str>, path: &str, req: &RequestHeader) -> Option<usize> {\nif let Some(host) = host {";
    assert!(find_excerpt(&source, reindented).is_none());
    let skipped = "    pub fn find(&self, host: Option<&str>, path: &str, req: &RequestHeader) -> Option<usize> {\n            if let Some(i) = self.first_match(table, path, req) {";
    assert!(find_excerpt(&source, skipped).is_none());
}

#[test]
fn expectations_must_appear_in_order() {
    let out = "backend-1\nbackend-2\nbackend-3\n";
    assert!(check_expect(out, "backend-1\nbackend-3\n").is_ok());
    assert!(check_expect(out, "backend-3\nbackend-1\n").is_err());
    assert!(check_expect(out, "backend-4\n").is_err());
    // A line expected twice must occur twice; two expectations may share a line.
    assert!(check_expect(out, "backend-1\nbackend-1\n").is_err());
    assert!(check_expect("GET / 200 tries=1\n", "GET /\ntries=1\n").is_ok());
    assert!(check_expect("GET / 200 tries=1\n", "tries=1\nGET /\n").is_err());
}

#[test]
fn a_failing_block_and_a_wrong_expectation_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let readme = dir.path().join("README.md");
    std::fs::write(
        &readme,
        "```sh run\necho hello\n```\n\n```text expect\nhello\n```\n\n```sh run\necho bye\n```\n\n```text expect\nhello\n```\n",
    )
    .unwrap();
    let problems = run_chapter(dir.path());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("\"hello\" does not appear"),
        "{problems:?}"
    );

    std::fs::write(&readme, "```sh run\nfalse\necho never\n```\n").unwrap();
    let problems = run_chapter(dir.path());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("failed"), "{problems:?}");
}
