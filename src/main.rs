//! The `fulcrum` binary: parse flags, load and validate the config, run Pingora.

use clap::Parser;
use fulcrum::cli::Cli;
use std::process::ExitCode;

/// The allocator (the `mimalloc` feature, on by default): Pingora and the proxy allocate a few
/// small objects per request, which mimalloc serves faster than glibc's malloc.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    fulcrum::logging::levels::init();
    // Usage errors exit 1, not clap's 2: `diff` and `--reload --dry-run` exit 2 for "changes".
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    if cli.prints_and_exits() {
        fulcrum::cli::default_sigpipe();
    }
    if let Some(fulcrum::cli::Command::Route(args)) = &cli.command {
        return fulcrum::explain::run(args);
    }
    if let Some(fulcrum::cli::Command::Diff(args)) = &cli.command {
        return plan_exit(fulcrum::plan::diff_files(&args.old, &args.new), "diff");
    }
    if let Some(fulcrum::cli::Command::Supervise(args)) = &cli.command {
        return fulcrum::supervise::run(args);
    }
    if let Some(fulcrum::cli::Command::Health(args)) = &cli.command {
        return health(args);
    }
    if cli.reload && cli.dry_run {
        let file = cli.conf.clone().unwrap_or_default();
        return plan_exit(fulcrum::plan::dry_run(&file), "reload --dry-run");
    }
    if cli.reload {
        let file = cli.conf.clone().unwrap_or_default();
        let announce = |s: &fulcrum::reload::Serving| {
            let addrs: Vec<String> = s.addrs.iter().map(|a| a.to_string()).collect();
            println!(
                "fulcrum: reload: pid {} is serving on {}",
                s.pid,
                addrs.join(", ")
            );
        };
        return match fulcrum::reload::run(&file, cli.daemon, announce) {
            Ok(r) => {
                println!(
                    "fulcrum: reloaded {}: pid {} now serving; old pid {} exited {:.1} s after SIGQUIT",
                    file.display(),
                    r.new_pid,
                    r.old_pid,
                    r.old_exit_after.as_secs_f64()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fulcrum: reload: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let (spec, config, text) = match cli.load_keeping_text() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("fulcrum: {e}");
            return ExitCode::FAILURE;
        }
    };
    if cli.print_config {
        print!("{}", fulcrum::config::to_yaml(&spec));
        return ExitCode::SUCCESS;
    }
    if cli.test {
        let what = cli
            .conf
            .as_ref()
            .map_or("the command-line config".to_string(), |p| {
                p.display().to_string()
            });
        println!("fulcrum: {what} is valid");
        print!("{}", fulcrum::explain::plan::render(&config));
        return ExitCode::SUCCESS;
    }
    match &text {
        Some(text) => fulcrum::config::source::record(cli.conf.clone(), text),
        None => fulcrum::config::source::record(None, &fulcrum::config::to_yaml(&spec)),
    }
    // Before any port is bound: a file that cannot be opened stops the start.
    if let Err(e) = fulcrum::proxy::access_log::install(&config.access_log) {
        let e = fulcrum::config::ConfigError::invalid("access_log.path", e.to_string());
        match &cli.conf {
            Some(file) => eprintln!("fulcrum: {}", e.in_file(file)),
            None => eprintln!("fulcrum: {e}"),
        }
        return ExitCode::FAILURE;
    }
    // Before daemonizing, so that a refusal reaches the caller; an upgrade (-u) takes over the
    // running process's pid file and addresses.
    if !cli.upgrade {
        if let Err(e) = fulcrum::preflight::check(&config) {
            eprintln!("fulcrum: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Before daemonizing, so that a warning reaches the terminal; the limit is inherited.
    fulcrum::open_files::raise_for(&config);
    let copy = text.map(|text| fulcrum::plan::saved::SaveConfig {
        path: fulcrum::plan::saved::path_for(&config.server.pid_file),
        text,
        source: cli.conf.clone(),
    });
    let server = match fulcrum::server::build_saving(config, cli.pingora_opt(), copy) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("fulcrum: {e}");
            return ExitCode::FAILURE;
        }
    };
    server.run(pingora_core::server::RunArgs::default());
    // Every service has stopped (SIGTERM, SIGQUIT handoff or SIGINT): the last lines out.
    fulcrum::proxy::access_log::flush();
    ExitCode::SUCCESS
}

/// Print a plan and exit as `diff` does: 0 no changes, 2 changes, 1 an error.
fn plan_exit(result: Result<(String, u8), fulcrum::plan::PlanError>, what: &str) -> ExitCode {
    match result {
        Ok((text, status)) => {
            print!("{text}");
            ExitCode::from(status)
        }
        Err(e) => {
            eprintln!("fulcrum: {what}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `fulcrum health`: 0 when the running fulcrum's `/health` answers 200, 1 otherwise.
fn health(args: &fulcrum::probe::HealthArgs) -> ExitCode {
    let config = match fulcrum::config::load_file(&args.conf) {
        Ok((_, config)) => config,
        Err(e) => {
            eprintln!("fulcrum: {e}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = std::time::Duration::from_secs_f64(args.timeout.clamp(0.1, 60.0));
    match fulcrum::probe::probe(config.admin.as_ref(), timeout) {
        Ok(reason) => {
            println!("fulcrum health: {reason}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("fulcrum health: {e}");
            ExitCode::FAILURE
        }
    }
}
