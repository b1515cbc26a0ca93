//! Breadth-first search for the first state matching a predicate; prints the trace.
use stateright::Model;
use watermark_checks::{Knobs, WatermarkModel};
fn main() {
    let mut k = Knobs::canonical();
    k.brokers = 2;
    k.replication_factor = 2;
    k.min_insync_replicas = 1;
    k.records = 2;
    k.network = "ordered,lossy".parse().unwrap();
    let mut m = WatermarkModel::new(k.clone());
    let _ = &mut m;
    // Reuse the checker with a custom property via a tiny wrapper is overkill: walk BFS by hand.
    use std::collections::{HashMap, VecDeque};
    use std::hash::{Hash, Hasher};
    let fp = |s: &watermark_checks::model::State| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        s.hash(&mut h);
        h.finish()
    };
    let mut parent: HashMap<u64, Option<(u64, String)>> = HashMap::new();
    let mut q = VecDeque::new();
    for s in m.init_states() {
        parent.insert(fp(&s), None);
        q.push_back(s);
    }
    let goal = |s: &watermark_checks::model::State| {
        s.actor_states[0]
            .as_controller()
            .unwrap()
            .partitions
            .values()
            .any(|p| p.partition_epoch > 12)
    };
    let mut actions = Vec::new();
    while let Some(s) = q.pop_front() {
        if goal(&s) {
            let mut steps = Vec::new();
            let mut f = fp(&s);
            while let Some(Some((p, a))) = parent.get(&f) {
                steps.push(a.clone());
                f = *p;
            }
            steps.reverse();
            for (i, a) in steps.iter().enumerate() {
                println!("{i}: {a}");
            }
            return;
        }
        actions.clear();
        m.actions(&s, &mut actions);
        for a in actions.drain(..) {
            let label = m.format_action(&a);
            if let Some(n) = m.next_state(&s, a) {
                if m.within_boundary(&n) {
                    let f = fp(&n);
                    if !parent.contains_key(&f) {
                        parent.insert(f, Some((fp(&s), label)));
                        q.push_back(n);
                    }
                }
            }
        }
    }
    println!("unreachable; {} states", parent.len());
}
