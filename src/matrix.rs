//! `watermark matrix`: the seeds' claims about each configuration, checked by the model.

use std::io::Write;
use std::process::ExitCode;
use watermark_checks::matrix::{self, Row};

#[derive(clap::Args)]
pub struct MatrixArgs {
    /// Run only this scenario (see the table for names).
    #[arg(long, value_name = "SCENARIO")]
    only: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the first counterexample's sequence diagram (stateright's SVG) to this file.
    #[arg(long, value_name = "FILE")]
    svg: Option<std::path::PathBuf>,
    /// Checker threads per scenario.
    #[arg(long, default_value_t = crate::default_threads())]
    threads: usize,
}

pub fn run(args: MatrixArgs) -> Result<ExitCode, String> {
    let scenarios = matrix::scenarios();
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let selected: Vec<_> = match &args.only {
        Some(name) => {
            let s: Vec<_> = scenarios.iter().filter(|s| s.name == name).collect();
            if s.is_empty() {
                let names: Vec<_> = scenarios.iter().map(|s| s.name).collect();
                return Err(format!(
                    "unknown scenario '{name}'; the scenarios are: {}",
                    names.join(", ")
                ));
            }
            s
        }
        None => scenarios.iter().collect(),
    };
    let mut rows: Vec<Row> = Vec::new();
    let bar = crate::progress::bar(selected.len() as u64, "rows", args.json);
    for s in selected {
        let line = format!("checking {} ({})", s.name, matrix::short_config(&s.knobs));
        if crate::progress::drawn(args.json) {
            bar.set_message(line);
        } else if !args.json {
            eprintln!("{line}");
        }
        rows.push(matrix::check(s, args.threads));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(file) = &args.svg {
        let svg = rows
            .iter()
            .find(|r| r.verdict == matrix::Expected::Violated)
            .and_then(|r| r.svg());
        match svg {
            Some(svg) => std::fs::write(file, svg)
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?,
            None => eprintln!("no counterexample: {} not written", file.display()),
        }
    }
    let mut stdout = std::io::stdout().lock();
    let written = if args.json {
        writeln!(stdout, "{}", matrix::json(&rows))
    } else {
        write!(stdout, "{}", matrix::text(&rows))
    };
    written.map_err(|e| format!("cannot write the report: {e}"))?;
    Ok(if rows.iter().all(|r| r.matches()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
