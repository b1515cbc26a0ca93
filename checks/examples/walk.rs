use stateright::Model;
use watermark_checks::{Knobs, WatermarkModel};
fn main() {
    let mut k = Knobs::canonical();
    k.brokers = 2;
    k.replication_factor = 2;
    k.min_insync_replicas = 1;
    k.records = 1;
    k.broker_crashes = 0;
    k.idempotence = true;
    k.leader_epoch_max = 0;
    k.preferred_leader_election = false;
    k.network = "duplicating,lossy".parse().unwrap();
    let m = WatermarkModel::new(k);
    let mut s = m.init_states().pop().unwrap();
    let mut seed: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(1);
    for step in 0..20000 {
        let mut actions = Vec::new();
        m.actions(&s, &mut actions);
        let nexts: Vec<_> = actions
            .into_iter()
            .filter_map(|a| {
                m.next_state(&s, a.clone())
                    .filter(|n| m.within_boundary(n))
                    .map(|n| (a, n))
            })
            .collect();
        if nexts.is_empty() {
            println!("terminal at {step}");
            break;
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let (a, n) = nexts[(seed >> 33) as usize % nexts.len()].clone();
        if step > 19990 {
            println!("{step}: {}", m.format_action(&a));
        }
        s = n;
    }
    for (i, st) in s.actor_states.iter().enumerate() {
        println!("actor {i}: {:?}", st);
    }
    println!("network: {} messages", s.network.len());
    for e in s.network.iter_all() {
        println!("   {:?} -> {:?}: {:?}", e.src, e.dst, e.msg);
    }
    println!("ghost: {:?}", s.history);
}
