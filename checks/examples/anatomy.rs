//! Where does the state space come from? Counts distinct projections of reachable states.
use stateright::Model;
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use watermark_checks::{Knobs, WatermarkModel};
fn h<T: Hash + ?Sized>(t: &T) -> u64 {
    let mut s = std::collections::hash_map::DefaultHasher::new();
    t.hash(&mut s);
    s.finish()
}
fn main() {
    let mut k = Knobs::canonical();
    let args: Vec<String> = std::env::args().collect();
    k.records = args[1].parse().unwrap();
    k.leader_epoch_max = args[2].parse().unwrap();
    if args.len() > 3 {
        k.network = args[3].parse().unwrap();
    }
    let m = WatermarkModel::new(k);
    let fp = |t: &watermark_checks::model::State| h(t);
    let mut seen = HashSet::new();
    let mut stack = m.init_states();
    for s in &stack {
        seen.insert(fp(s));
    }
    let (mut actors, mut actors_net, mut ctrl, mut brokers, mut clients, mut nets) = (
        HashSet::new(),
        HashSet::new(),
        HashSet::new(),
        HashSet::new(),
        HashSet::new(),
        HashSet::new(),
    );
    let mut actions = Vec::new();
    let mut live_proj = HashSet::new();
    let mut by_api: std::collections::BTreeMap<(&'static str, bool), usize> = Default::default();
    while let Some(s) = stack.pop() {
        if let stateright::actor::Network::UnorderedNonDuplicating(ms) = &s.network {
            let mut live_msgs = Vec::new();
            for env in ms.keys() {
                let act = stateright::actor::ActorModelAction::Deliver {
                    src: env.src,
                    dst: env.dst,
                    msg: env.msg.clone(),
                };
                let live = s.crashed[usize::from(env.dst)] || m.next_state(&s, act).is_some();
                *by_api.entry((env.msg.api_name(), live)).or_default() += 1;
                if live {
                    live_msgs.push(h(env));
                }
            }
            live_msgs.sort();
            let a: Vec<_> = s.actor_states.iter().map(|x| h(&**x)).collect();
            live_proj.insert(h(&(a, &s.crashed, live_msgs)));
        }
        let a: Vec<_> = s.actor_states.iter().map(|x| h(&**x)).collect();
        actors.insert(h(&(a.clone(), &s.crashed)));
        actors_net.insert(h(&(a.clone(), &s.crashed, &s.network)));
        ctrl.insert(a[0]);
        brokers.insert(h(&a[1..4]));
        clients.insert(h(&a[4..]));
        nets.insert(h(&s.network));
        actions.clear();
        m.actions(&s, &mut actions);
        for act in actions.drain(..) {
            if let Some(n) = m.next_state(&s, act) {
                if m.within_boundary(&n) && seen.insert(fp(&n)) {
                    stack.push(n);
                }
            }
        }
    }
    println!("unique states {}", seen.len());
    for ((api, live), n) in &by_api {
        println!(
            "  {api:<32} {} {n}",
            if *live { "deliverable" } else { "no-op now " }
        );
    }
    println!("distinct actors + deliverable messages {}", live_proj.len());
    println!(
        "distinct actor tuples {}  (+network {})",
        actors.len(),
        actors_net.len()
    );
    println!(
        "distinct controller {}, broker triples {}, clients {}, networks {}",
        ctrl.len(),
        brokers.len(),
        clients.len(),
        nets.len()
    );
}
