//! # watermark-checks: what is true of the protocol, and how to check it
//!
//! - [`knobs`]: the knobs of a configuration and the named presets;
//! - [`model`]: the actors in a stateright `ActorModel`, wrapped with the bounds and the ghost
//!   history;
//! - [`ghost`]: the history that properties about the past need;
//! - [`hashed`]: a value that caches its hash, for the parts of a state its parent shares;
//! - [`properties`]: the invariants (I1…) and their twins (S1…), named as in spec.md;
//! - [`quorum`]: the KRaft quorum of controllers as a model of its own (spec section 4a);
//! - [`recovery`]: what "recovered" means (L1–L7), for the simulator and L0;
//! - [`runner`]: runs the checker and collects verdicts;
//! - [`sim`]: the same actors on a virtual clock with the runtime's transport, faults and
//!   recovery (`watermark simulate`);
//! - [`validate`]: a real run's trace files replayed through the same actors and checked
//!   (`watermark validate`);
//! - [`report`] and [`trace`]: verdict tables, readable counterexamples, JSON;
//! - [`explorer`]: the model as stateright's Explorer shows it, and Explorer paths of
//!   counterexamples.

pub mod bfs;
pub mod explorer;
pub mod ghost;
pub mod hashed;
pub mod knobs;
pub mod matrix;
pub mod model;
pub mod properties;
pub mod quorum;
pub mod quorum_sim;
pub mod recovery;
pub mod report;
pub mod runner;
#[cfg(feature = "runtime")]
pub mod sim;
pub mod trace;
#[cfg(feature = "runtime")]
pub mod validate;

pub use knobs::{preset, presets, Knobs, Network, Preset};
pub use model::WatermarkModel;
pub use runner::{run, Outcome, RunOptions, Strategy, Verdict};
