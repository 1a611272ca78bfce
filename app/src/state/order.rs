//! The Order view's state: the question and its options, the mode (set-based or plain), and
//! the last run's layout and answers, one per ordering of the options.

use super::engine::EngineState;
use crate::deep_link::{Link, View};
use crate::protocol::{OrderLayout, OrderReply, OrderRequest, ToWorker};
use leptos::prelude::*;

const DEFAULT_QUESTION: &str = "Which of these animals is the largest?";
const DEFAULT_OPTIONS: [&str; 3] = ["A mouse", "An elephant", "A cat"];
/// Greedy answers in the Order view are short: the option, maybe a sentence.
const ORDER_ANSWER_TOKENS: usize = 16;
/// Orderings for "Try all orders": all of them up to 4 options (24), a sample beyond.
const MAX_ORDERS: usize = 24;

#[derive(Clone, Copy)]
pub struct OrderState {
    /// The run under way.
    pub running: RwSignal<Option<u32>>,
    /// How many orderings the last run asked for.
    pub asked: RwSignal<usize>,
    pub set_based: RwSignal<bool>,
    pub layout: RwSignal<Option<OrderLayout>>,
    /// (ordering, answer) in the order they arrived.
    pub answers: RwSignal<Vec<(Vec<usize>, String)>>,
    pub error: RwSignal<Option<String>>,
    pub question: RwSignal<String>,
    pub options: RwSignal<Vec<String>>,
    engine: EngineState,
}

impl OrderState {
    pub(super) fn new(engine: EngineState) -> Self {
        OrderState {
            question: RwSignal::new(DEFAULT_QUESTION.to_string()),
            options: RwSignal::new(DEFAULT_OPTIONS.iter().map(|s| s.to_string()).collect()),
            running: RwSignal::new(None),
            asked: RwSignal::new(0),
            set_based: RwSignal::new(true),
            layout: RwSignal::new(None),
            answers: RwSignal::new(Vec::new()),
            error: RwSignal::new(None),
            engine,
        }
    }

    /// Answers the question under its options' orderings: all of them (`all_orders`), or
    /// only the order given. The caller checked that the engine is free.
    pub(super) fn run(self, question: &str, options: Vec<String>, all_orders: bool) {
        let orders = if all_orders {
            ::engine::analysis::set_prompt::sample_orders(options.len(), MAX_ORDERS, 1)
        } else {
            vec![(0..options.len()).collect()]
        };
        let request = self.engine.next_request();
        self.running.set(Some(request));
        self.asked.set(orders.len());
        self.layout.set(None);
        self.answers.set(Vec::new());
        self.error.set(None);
        self.engine.send(OrderRequest::Run {
            request,
            question: question.to_string(),
            options,
            set_based: self.set_based.get_untracked(),
            orders,
            max_tokens: ORDER_ANSWER_TOKENS,
        });
    }

    pub fn stop(self) {
        if self.running.get_untracked().is_some() {
            self.engine.send(ToWorker::Stop);
        }
    }

    /// A run's progress; replies to another run than the one under way are dropped.
    pub(super) fn on_reply(self, reply: OrderReply) {
        match reply {
            OrderReply::Layout { request, layout } => {
                if self.running.get_untracked() == Some(request) {
                    self.layout.set(Some(layout));
                }
            }
            OrderReply::Answer {
                request,
                order,
                answer,
            } => {
                if self.running.get_untracked() == Some(request) {
                    self.answers.update(|a| a.push((order, answer)));
                }
            }
            OrderReply::Done { request, error, .. } => {
                if self.running.get_untracked() == Some(request) {
                    self.running.set(None);
                    self.error.set(error);
                }
            }
        }
    }

    /// Takes a deep link's question, options and mode (whichever view it opens: the explorer's
    /// links to the Order view's prompt carry them too).
    pub(super) fn apply_link(self, link: &Link) {
        if let Some((question, options, set_based)) = link.order.clone() {
            self.question.set(question);
            if !options.is_empty() {
                self.options.set(options);
            }
            self.set_based.set(set_based);
        }
    }

    /// Writes the question, options and mode into the link to the Order view.
    pub(super) fn write_link(self, link: &mut Link) {
        if link.view == View::Order {
            link.order = Some((
                self.question.get(),
                self.options.get(),
                self.set_based.get(),
            ));
        }
    }
}
