//! Orders a step's commands: persist first, then send. Spec: rule R0.
//!
//! Handlers never call `Out::send` directly. They queue messages here and mark whether durable
//! state changed; `flush` then emits the `Save` before any `Send`, so no acknowledgement can leave
//! before the data it acknowledges is durable, in the model and in the real cluster alike.

use crate::msg::Msg;
use crate::node::{Node, Storage};
use stateright::actor::{Id, Out};

#[derive(Default)]
pub(crate) struct Outbox {
    sends: Vec<(Id, Msg)>,
    persist: bool,
}

impl Outbox {
    pub(crate) fn new() -> Self {
        Outbox::default()
    }

    pub(crate) fn send(&mut self, to: Id, msg: Msg) {
        self.sends.push((to, msg));
    }

    /// Whether any queued message matches.
    pub(crate) fn sends_any(&self, pred: impl Fn(&Msg) -> bool) -> bool {
        self.sends.iter().any(|(_, m)| pred(m))
    }

    /// Messages queued for `from` go to `to` instead (a broker's messages for the controller go
    /// to the one it follows, R74).
    pub(crate) fn redirect(&mut self, from: Id, to: Id) {
        if from != to {
            for (dst, _) in self.sends.iter_mut().filter(|(dst, _)| *dst == from) {
                *dst = to;
            }
        }
    }

    /// Durable state changed in this step.
    pub(crate) fn persist(&mut self) {
        self.persist = true;
    }

    /// R0: the `Save` (if any) goes out before every `Send`.
    pub(crate) fn flush(self, o: &mut Out<Node>, storage: impl FnOnce() -> Storage) {
        if self.persist && !self.sends.is_empty() {
            // R0 at work: this step's messages wait for its save.
            crate::rules::fired(crate::rules::R0);
        }
        if self.persist {
            o.save(storage());
        }
        for (to, msg) in self.sends {
            o.send(to, msg);
        }
    }
}
