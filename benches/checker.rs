//! Checker throughput in unique states per second (criterion's elements/s), on presets small
//! enough to explore many times. Run with `cargo bench --bench checker`; BENCHMARKS.md records the
//! numbers.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use watermark_checks::preset;
use watermark_checks::runner::{run, RunOptions, Strategy};

fn checker_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("checker");
    group.sample_size(10);
    for name in ["idempotent", "slow-follower"] {
        let knobs = preset(name).expect("a preset").knobs;
        for (strategy, threads) in [(Strategy::Dfs, 1), (Strategy::Bfs, 2)] {
            let options = RunOptions {
                strategy,
                threads,
                ..RunOptions::default()
            };
            let unique = run(&knobs, &options).unique_states;
            group.throughput(Throughput::Elements(unique as u64));
            let id = format!("{name}/{strategy:?}/{threads}-thread").to_lowercase();
            group.bench_function(id, |b| b.iter(|| run(&knobs, &options).unique_states));
        }
    }
    group.finish();
}

criterion_group!(benches, checker_throughput);
criterion_main!(benches);
