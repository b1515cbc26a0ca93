//! Progress on a terminal, drawn by indicatif on stderr: a spinner while `check` explores, a bar
//! over `matrix`'s rows and over `produce`'s records. Nothing is drawn when stderr is not a
//! terminal or with `--json`, so that piped and scripted runs stay quiet and parseable.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// Whether progress is drawn: stderr is a terminal and the output is not JSON.
pub fn drawn(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

fn target(json: bool) -> ProgressBar {
    if drawn(json) {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    }
}

/// A spinner with the elapsed time and a message, for work of unknown size.
pub fn spinner(json: bool) -> ProgressBar {
    let pb = target(json);
    pb.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}")
            .expect("a valid template"),
    );
    if drawn(json) {
        pb.enable_steady_tick(Duration::from_millis(120));
    }
    pb
}

/// A bar over `len` items of `unit`, with the rate and the time left.
pub fn bar(len: u64, unit: &str, json: bool) -> ProgressBar {
    let pb = target(json);
    pb.set_length(len);
    let template = format!(
        "{{elapsed_precise}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, {{eta}} left) {{wide_msg}}"
    );
    pb.set_style(
        ProgressStyle::with_template(&template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    pb
}
