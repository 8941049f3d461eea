//! The machinery behind `tests/chapters.rs`: reading the tutorial's markdown, matching its
//! excerpts against the source, and running its shell blocks.
//!
//! The conventions a chapter follows (see `chapters/README.md`, "How the chapters are kept
//! true"):
//!
//! * ```` ```rust src/PATH.rs ```` : a verbatim region of that file (compared after removing
//!   the common indentation of both); `tests/chapters_support/...` may be named for exercise
//!   solutions, which the test suite compiles and runs.
//! * ```` ```yaml file=chapters/NN-name/FILE.yaml ```` : that file, or a contiguous part of it.
//!   A `yaml` block without `file=` must be a complete config that passes `fulcrum -t`.
//! * ```` ```sh run ```` : executed, in order, by one `bash -euo pipefail` per chapter, from the
//!   repository root, with the `fulcrum` under test first on `PATH`.
//! * ```` ```text expect ```` right after a run block: every non-empty line must occur in what
//!   that block printed on stdout, in order.

#![allow(dead_code)]

pub mod solutions;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const FULCRUM_BIN: &str = env!("CARGO_BIN_EXE_fulcrum");

/// How long one chapter's runnable blocks may take together.
pub const CHAPTER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one `fulcrum -t` may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `chapters/` in the repository.
pub fn chapters_dir() -> PathBuf {
    root().join("chapters")
}

/// A path relative to the repository root, with `/` separators, for messages.
pub fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Chapter folders (`NN-name` holding a `README.md`), sorted.
pub fn chapter_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(chapters_dir())
        .expect("read chapters/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && is_chapter_name(&file_name(p)))
        .collect();
    dirs.sort();
    dirs
}

/// `NN-name`: two digits, a dash, a name.
pub fn is_chapter_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 3 && b[0].is_ascii_digit() && b[1].is_ascii_digit() && b[2] == b'-'
}

/// The last path component as a string.
pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every file under `dir` (recursively) whose name ends with `suffix`, sorted.
pub fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if file_name(&p).ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Reads a file, panicking with its name.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", rel(path)))
}

// ---------------------------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------------------------

/// Fail with every problem found, one paragraph each.
pub fn fail_if_any(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

/// The fenced code blocks of these markdown files.
pub fn blocks_of(files: &[PathBuf]) -> Vec<Block> {
    files.iter().flat_map(|p| blocks(p, &read(p))).collect()
}

/// A fenced code block.
#[derive(Debug, Clone)]
pub struct Block {
    /// The markdown file it is in.
    pub file: PathBuf,
    /// 1-based line of the opening fence.
    pub line: usize,
    /// The info string's first word (`rust`, `yaml`, `sh`, `text`, ...).
    pub lang: String,
    /// The other words of the info string.
    pub args: Vec<String>,
    /// The content, without the fences, de-indented by the fence's indentation.
    pub body: String,
}

impl Block {
    /// Whether the info string has this bare word.
    pub fn has(&self, word: &str) -> bool {
        self.args.iter().any(|a| a == word)
    }

    /// The value of `key=value` in the info string.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.args
            .iter()
            .find_map(|a| a.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }

    /// `file:line` for messages.
    pub fn at(&self) -> String {
        format!("{}:{}", rel(&self.file), self.line)
    }

    /// A runnable shell block.
    pub fn is_run(&self) -> bool {
        matches!(self.lang.as_str(), "sh" | "bash" | "shell") && self.has("run")
    }

    /// Expected output of the preceding run block.
    pub fn is_expect(&self) -> bool {
        self.lang == "text" && self.has("expect")
    }
}

/// The fenced code blocks of a markdown document (``` or ~~~ fences, possibly indented).
pub fn blocks(file: &Path, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(usize, usize, String, String, Vec<String>)> = None; // line, indent, fence, info, body
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut open {
            None => {
                let fence: String = trimmed
                    .chars()
                    .take_while(|c| *c == '`' || *c == '~')
                    .collect();
                let info = trimmed[fence.len()..].trim().to_string();
                // As in CommonMark: one fence character repeated, at least three times, and a
                // backtick fence's info string has no backtick (else it is inline code).
                let same = fence.chars().all(|c| fence.starts_with(c));
                if fence.len() >= 3 && same && !(fence.starts_with('`') && info.contains('`')) {
                    open = Some((i + 1, indent, fence, info, Vec::new()));
                }
            }
            Some((start, fence_indent, fence, info, body)) => {
                if trimmed.starts_with(fence.as_str()) && trimmed.trim_end() == fence.as_str() {
                    let mut words = info.split_whitespace().map(str::to_string);
                    let lang = words.next().unwrap_or_default();
                    out.push(Block {
                        file: file.to_path_buf(),
                        line: *start,
                        lang,
                        args: words.collect(),
                        body: body.join("\n"),
                    });
                    open = None;
                } else {
                    let cut = (*fence_indent).min(line.len() - line.trim_start().len());
                    body.push(line[cut..].to_string());
                }
            }
        }
    }
    if let Some((start, ..)) = open {
        panic!("{}:{start}: code fence never closed", rel(file));
    }
    out
}

/// The targets of inline markdown links `[text](target)` outside code blocks and code spans.
pub fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_fence = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Drop code spans, whose brackets are not links.
        let mut plain = String::new();
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                plain.push(c);
            }
        }
        let mut rest = plain.as_str();
        while let Some(pos) = rest.find("](") {
            let after = &rest[pos + 2..];
            let Some(end) = after.find(')') else { break };
            let target = after[..end].trim();
            let target = target.split_whitespace().next().unwrap_or("");
            out.push(target.trim_matches(|c| c == '<' || c == '>').to_string());
            rest = &after[end..];
        }
    }
    out
}

/// Whether a link target is local (a path in the repository).
pub fn is_local_link(target: &str) -> bool {
    !(target.is_empty()
        || target.starts_with('#')
        || target.contains("://")
        || target.starts_with("mailto:"))
}

/// The local file or folder a link in `from` points to (anchor dropped).
pub fn resolve_link(from: &Path, target: &str) -> PathBuf {
    let path = target.split('#').next().unwrap_or("");
    from.parent().unwrap_or(Path::new(".")).join(path)
}

// ---------------------------------------------------------------------------------------------
// Excerpts
// ---------------------------------------------------------------------------------------------

/// Lines with trailing whitespace removed and the common leading indentation of the non-empty
/// ones removed.
pub fn dedent(lines: &[&str]) -> Vec<String> {
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| {
            let l = l.trim_end();
            if l.len() >= indent {
                l[indent..].to_string()
            } else {
                String::new()
            }
        })
        .collect()
}

/// The 1-based line where `excerpt` occurs in `source` as a contiguous run of lines (both
/// de-indented), if it does.
pub fn find_excerpt(source: &str, excerpt: &str) -> Option<usize> {
    let want_raw: Vec<&str> = excerpt.lines().collect();
    let want = dedent(&want_raw);
    if want.iter().all(|l| l.is_empty()) {
        return None;
    }
    let src: Vec<&str> = source.lines().collect();
    let n = want.len();
    if n > src.len() {
        return None;
    }
    (0..=src.len() - n)
        .find(|&i| src[i].trim() == want[0].trim() && dedent(&src[i..i + n]) == want)
        .map(|i| i + 1)
}

/// For a failed excerpt: the source line that best matches the excerpt's first line, and the
/// first line that differs from there, to point at what changed.
pub fn excerpt_mismatch_hint(source: &str, excerpt: &str) -> String {
    let want_raw: Vec<&str> = excerpt.lines().collect();
    let want = dedent(&want_raw);
    let src: Vec<&str> = source.lines().collect();
    let mut best: Option<(usize, usize)> = None; // (start, matching lines)
    for start in 0..src.len() {
        let mut k = 0;
        while k < want.len() && start + k < src.len() && src[start + k].trim() == want[k].trim() {
            k += 1;
        }
        if k > 0 && best.is_none_or(|(_, b)| k > b) {
            best = Some((start, k));
        }
    }
    match best {
        Some((start, k)) if k < want.len() => format!(
            "the excerpt follows the source from line {} for {k} line(s), then differs:\n  chapter: {:?}\n  source:  {:?}",
            start + 1,
            want[k].trim(),
            src.get(start + k).map(|s| s.trim()).unwrap_or("(end of file)")
        ),
        Some((start, _)) => format!(
            "every line matches from line {} but the indentation differs",
            start + 1
        ),
        None => format!("no line of the source equals the excerpt's first line {:?}", want[0]),
    }
}

/// Lines of a yaml block must be a contiguous run of the file's lines (trailing whitespace
/// ignored, indentation significant).
pub fn yaml_part_of(file_text: &str, block: &str) -> bool {
    let want: Vec<&str> = block.lines().map(str::trim_end).collect();
    let have: Vec<&str> = file_text.lines().map(str::trim_end).collect();
    if want.is_empty() || want.len() > have.len() {
        return false;
    }
    (0..=have.len() - want.len()).any(|i| have[i..i + want.len()] == want[..])
}

// ---------------------------------------------------------------------------------------------
// Expected output
// ---------------------------------------------------------------------------------------------

/// Checks that every non-empty line of `expect` (trimmed) occurs in `output`, in order: each
/// one after the end of the previous one's match, so two expected lines may match one output
/// line, and a line expected twice must occur twice. Returns the first line that is missing.
pub fn check_expect(output: &str, expect: &str) -> Result<(), String> {
    let mut pos = 0;
    for want in expect.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match output[pos..].find(want) {
            Some(k) => pos += k + want.len(),
            None if output[..pos].contains(want) => {
                return Err(format!(
                    "{want:?} appears, but not after the previous expected line"
                ))
            }
            None => return Err(format!("{want:?} does not appear")),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Running chapters
// ---------------------------------------------------------------------------------------------

/// A run block and the expectations that follow it.
#[derive(Debug, Clone)]
pub struct Step {
    /// The `sh run` block.
    pub run: Block,
    /// The `text expect` block right after it, if any.
    pub expect: Option<Block>,
}

/// The runnable steps of a chapter, in order. Panics on an `expect` block that follows no run
/// block.
pub fn steps(blocks: &[Block]) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    let mut last_was_run = false;
    for b in blocks {
        if b.is_run() {
            out.push(Step {
                run: b.clone(),
                expect: None,
            });
            last_was_run = true;
        } else if b.is_expect() {
            assert!(
                last_was_run,
                "{}: a `text expect` block must come right after a `sh run` block",
                b.at()
            );
            out.last_mut().expect("a run block").expect = Some(b.clone());
            last_was_run = false;
        } else {
            last_was_run = false;
        }
    }
    out
}

/// The line printed before step `i`'s output.
fn marker(i: usize) -> String {
    format!("@@fulcrum-chapter-step-{i}@@")
}

/// One bash script running every step, separated by marker lines on stdout.
pub fn script(steps: &[Step]) -> String {
    let mut s = String::new();
    s.push_str("set -euo pipefail\n");
    s.push_str("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n");
    for (i, step) in steps.iter().enumerate() {
        let _ = writeln!(s, "echo '{}'", marker(i));
        let _ = writeln!(s, "# {}", step.run.at());
        s.push_str(&step.run.body);
        s.push('\n');
    }
    let _ = writeln!(s, "echo '{}'", marker(steps.len()));
    s
}

/// What running a chapter's script produced.
#[derive(Debug)]
pub struct Run {
    /// Exit status; `None` when it was killed for taking too long.
    pub status: Option<std::process::ExitStatus>,
    /// Stdout.
    pub stdout: String,
    /// Stderr.
    pub stderr: String,
    /// How long it ran.
    pub took: Duration,
}

impl Run {
    /// The stdout of step `i` (between its marker and the next one).
    pub fn step_output(&self, i: usize) -> Option<&str> {
        let start = self.stdout.find(&marker(i))? + marker(i).len();
        let rest = &self.stdout[start..];
        let end = rest.find(&marker(i + 1)).unwrap_or(rest.len());
        Some(&rest[..end])
    }

    /// The last step that started.
    pub fn last_started(&self, n: usize) -> Option<usize> {
        (0..n).rev().find(|i| self.stdout.contains(&marker(*i)))
    }
}

/// Runs `script` with bash from the repository root, `fulcrum` on the PATH, in its own process
/// group, which is killed (SIGKILL) afterwards so no background process outlives the test.
pub fn run_script(script: &str, timeout: Duration) -> Run {
    use std::os::unix::process::CommandExt;
    let bin_dir = Path::new(FULCRUM_BIN).parent().expect("binary dir");
    let path = match std::env::var_os("PATH") {
        Some(p) => {
            let mut dirs = vec![bin_dir.to_path_buf()];
            dirs.extend(std::env::split_paths(&p));
            std::env::join_paths(dirs).expect("PATH")
        }
        None => bin_dir.as_os_str().to_owned(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let script_path = dir.path().join("chapter.sh");
    std::fs::write(&script_path, script).expect("write script");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut cmd = Command::new("bash");
    cmd.arg(&script_path)
        .current_dir(root())
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .process_group(0);
    for var in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "CURL_HOME",
    ] {
        cmd.env_remove(var);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn bash");
    let pgid = child.id();
    let mut status = None;
    let max_polls = (timeout.as_millis() / 20 + 2) as usize;
    for _ in 0..max_polls {
        if let Some(s) = child.try_wait().expect("try_wait") {
            status = Some(s);
            break;
        }
        if started.elapsed() >= timeout {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Kill whatever is left of the group (background fulcrums and backends), then reap bash.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let took = started.elapsed();
    let slurp = |p: &Path| {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(p) {
            let _ = f.read_to_string(&mut s);
        }
        s
    };
    Run {
        status,
        stdout: slurp(&out_path),
        stderr: slurp(&err_path),
        took,
    }
}

/// Runs a chapter's runnable blocks and checks their expectations; returns a description of
/// every problem (empty when all is well).
pub fn run_chapter(dir: &Path) -> Vec<String> {
    let readme = dir.join("README.md");
    let text = read(&readme);
    let steps = steps(&blocks(&readme, &text));
    if steps.is_empty() {
        return Vec::new();
    }
    let run = run_script(&script(&steps), CHAPTER_TIMEOUT);
    let mut problems = Vec::new();
    let context = |run: &Run, i: Option<usize>| {
        let out = i.and_then(|i| run.step_output(i)).unwrap_or("");
        format!(
            "--- output of that block ---\n{}\n--- stderr of the chapter ---\n{}",
            out.trim_end(),
            tail(&run.stderr, 6000)
        )
    };
    match run.status {
        None => {
            let i = run.last_started(steps.len());
            problems.push(format!(
                "{}: timed out after {:?} in the block at {}\n{}",
                rel(dir),
                run.took,
                i.map(|i| steps[i].run.at()).unwrap_or_default(),
                context(&run, i)
            ));
            return problems;
        }
        Some(s) if !s.success() => {
            let i = run.last_started(steps.len());
            problems.push(format!(
                "{}: the block at {} failed ({s})\n{}",
                rel(dir),
                i.map(|i| steps[i].run.at()).unwrap_or_default(),
                context(&run, i)
            ));
            return problems;
        }
        Some(_) => {}
    }
    for (i, step) in steps.iter().enumerate() {
        let Some(expect) = &step.expect else { continue };
        let out = run.step_output(i).unwrap_or("");
        if let Err(why) = check_expect(out, &expect.body) {
            problems.push(format!(
                "{}: output of the block at {} does not match: {why}\n{}",
                expect.at(),
                step.run.at(),
                context(&run, Some(i))
            ));
        }
    }
    problems
}

fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

// ---------------------------------------------------------------------------------------------
// fulcrum -t
// ---------------------------------------------------------------------------------------------

/// Runs `fulcrum -t -c FILE` from the repository root (FILE relative to it), bounded by
/// [`CHECK_TIMEOUT`].
pub fn fulcrum_check(file: &str) -> Output {
    let mut child = Command::new(FULCRUM_BIN)
        .args(["-t", "-c", file])
        .current_dir(root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn fulcrum");
    let started = Instant::now();
    let max_polls = (CHECK_TIMEOUT.as_millis() / 10 + 2) as usize;
    for _ in 0..max_polls {
        if child.try_wait().expect("try_wait").is_some() || started.elapsed() >= CHECK_TIMEOUT {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if child.try_wait().expect("try_wait").is_none() {
        let _ = child.kill();
        panic!("`fulcrum -t -c {file}` did not finish within {CHECK_TIMEOUT:?}");
    }
    child.wait_with_output().expect("fulcrum output")
}

/// Every config file name mentioned by a `sh run` block of any chapter.
pub fn files_run_by_chapters() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dir in chapter_dirs() {
        let readme = dir.join("README.md");
        for b in blocks(&readme, &read(&readme)) {
            if b.is_run() {
                for word in b
                    .body
                    .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                {
                    if word.starts_with("chapters/") {
                        out.insert(word.to_string());
                    }
                }
            }
        }
    }
    out
}
