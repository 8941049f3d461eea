//! `fulcrum route`: explain how fulcrum handles one request, and the routing plan that
//! `fulcrum -t` prints.
//!
//! The request goes through the proxy's own admission (`proxy::admission::admit`, with a
//! `ProxyState` built from the config and the listener the URL's scheme names), so the answer
//! is the proxy's: path normalization, the Host check, the route, its redirect, its limits, the
//! path sent upstream and the split side. Each route the router tried is then given its
//! verdict with the same matching functions the router uses (`routing::prefix_matches`,
//! `routing::conditions`).
//!
//! Exit codes: 0 when the request would be proxied, 1 for an invalid config, 2 for a bad
//! command line, 3 when fulcrum would answer the request itself (an error status such as 400,
//! 404, 413, 429, or a 308 redirect to HTTPS).

pub mod describe;
pub mod plan;
mod policies;
pub mod render;
pub mod report;
pub mod request;

use crate::config;
use crate::proxy::ProxyState;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for an invalid config.
pub const EXIT_CONFIG: u8 = 1;
/// Exit code for a command line that does not describe a request (as for every usage error:
/// 2 means "changes" to `fulcrum diff`).
pub const EXIT_USAGE: u8 = 1;

/// `fulcrum route`: explain how fulcrum routes one request.
#[derive(clap::Args, Debug, Clone)]
pub struct RouteArgs {
    /// The YAML config file.
    #[arg(short = 'c', long = "conf", value_name = "FILE")]
    pub conf: PathBuf,
    /// The request: 'METHOD URL' (or METHOD and URL as two words). The URL is absolute
    /// (`https://api.example.com/x?q=1`: its scheme picks an HTTPS or plain listener, its port
    /// the listener on that port) or a path (`/x`, with `-H 'host: ...'`, on a plain listener).
    #[arg(value_name = "METHOD URL", num_args = 1..=2, required = true)]
    pub request: Vec<String>,
    /// A request header, `name: value`; repeatable.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// The TCP peer's address (the client, or the proxy in front of fulcrum).
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    pub client_ip: IpAddr,
    /// Print the explanation as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run `fulcrum route`: print the explanation and return the exit code (see the module docs).
pub fn run(args: &RouteArgs) -> ExitCode {
    let (_, config) = match config::load_file(&args.conf) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("fulcrum: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let built = request::parse(&args.request, &args.headers).and_then(|spec| {
        let head = spec.head()?;
        Ok((spec, head))
    });
    let (spec, head) = match built {
        Ok(b) => b,
        Err(e) => {
            eprintln!("fulcrum route: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let state = ProxyState::new(&config);
    let listener = report::choose_listener(&config, spec.https == Some(true), spec.port);
    let e = report::explain(&config, &state, spec.line(), listener, head, args.client_ip);
    let text = if args.json {
        match serde_json::to_string_pretty(&e) {
            Ok(text) => text + "\n",
            Err(err) => {
                eprintln!("fulcrum route: {err}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        render::render(&e)
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    ExitCode::from(e.exit_code())
}

#[cfg(test)]
mod tests;
