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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    if let Some(fulcrum::cli::Command::Route(args)) = &cli.command {
        return fulcrum::explain::run(args);
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
    let (spec, config) = match cli.load() {
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
    let server = match fulcrum::server::build(config, cli.pingora_opt()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("fulcrum: {e}");
            return ExitCode::FAILURE;
        }
    };
    server.run_forever()
}
