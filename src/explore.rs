//! `watermark explore`: serves stateright's Explorer for a configuration.

use crate::KnobArgs;
use clap::Args;
use stateright::Model;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;
use watermark_checks::explorer::{ExplorerModel, DEFAULT_ADDR};
use watermark_checks::preset;

#[derive(Args)]
pub struct ExploreArgs {
    /// Start from this preset; knob flags override it.
    #[arg(long, default_value = "canonical")]
    preset: String,
    #[command(flatten)]
    knobs: KnobArgs,
    /// Address to serve on; port 0 picks a free port (the URL printed says which).
    #[arg(long, default_value = DEFAULT_ADDR)]
    addr: String,
}

/// Binds `addr` once to check that it is free and to learn the port when it is 0. stateright's
/// `serve` binds the address itself and panics if it cannot; probing first turns that into an
/// error message (the address could still be taken between the probe and `serve`, a window of
/// microseconds).
fn probe(addr: &str) -> Result<SocketAddr, String> {
    let resolved: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("--addr {addr}: {e}"))?
        .collect();
    let mut last_error = None;
    for candidate in resolved {
        match TcpListener::bind(candidate) {
            Ok(listener) => {
                return listener
                    .local_addr()
                    .map_err(|e| format!("--addr {addr}: {e}"))
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(match last_error {
        Some(e) if e.kind() == std::io::ErrorKind::AddrInUse => format!(
            "cannot serve the Explorer on {addr}: the address is already in use \
             (another `watermark explore`?); choose another with --addr, e.g. --addr 127.0.0.1:0"
        ),
        Some(e) => format!("cannot serve the Explorer on {addr}: {e}"),
        None => format!("--addr {addr} resolves to no address"),
    })
}

pub fn explore(args: ExploreArgs) -> Result<ExitCode, String> {
    let preset = preset(&args.preset)?;
    let mut knobs = preset.knobs.clone();
    args.knobs.apply(&mut knobs);
    knobs.validate()?;
    if knobs.is_quorum() {
        return Err(
            "The Explorer runs the data plane with one controller; the KRaft quorum (--controllers above 1, --preset quorum) is checked by `watermark check --preset quorum` (spec section 4a)"
            .to_string(),
        );
    }
    let addr = probe(&args.addr)?;
    let model = ExplorerModel::new(knobs);
    println!(
        "Explorer for preset {}: {}",
        preset.name,
        model.model.knobs.summary()
    );
    println!(
        "It explores on demand: each page computes the next steps of the state you open, and \
         nothing is checked in the background until you press \"Run to completion\". To open a \
         counterexample that `watermark check` printed with these knobs, append its Explorer \
         path: http://{addr}/#/steps/0/..."
    );
    // `serve` binds and then blocks; the URL is printed once it accepts connections, last, so
    // that a script can wait for this line.
    std::thread::spawn(move || announce_when_serving(addr));
    // The web server runs until the process is stopped: `serve` returns only if it dies.
    let _checker = model.checker().serve(addr);
    Err("the Explorer's web server stopped".into())
}

/// Prints `serving on http://ADDR/` once `addr` accepts connections (polling for at most 10 s).
fn announce_when_serving(addr: SocketAddr) {
    for _ in 0..1000 {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            println!("serving on http://{addr}/");
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("error: the Explorer does not accept connections on {addr}");
}
