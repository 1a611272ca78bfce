//! The Chat view's state: the conversation, the reply under way and its statistics, and the
//! sampling settings. The conversation and the settings survive a reload (localStorage, under
//! [`STORAGE_KEY`]).
//!
//! A conversation that outgrows the context is not sent as it is: the worker says how many of
//! the oldest messages would have to go, and the page offers to drop them ([`ChatState::
//! too_long`]); a message too long on its own is taken out again and handed back to the
//! message box; a reply that reached the end of the context is marked as cut.

use super::engine::EngineState;
use crate::deep_link::{Link, View};
use crate::protocol::{ChatReply, ChatRequest, ReplyStats, SteeringChoice, ToWorker, CUSTOM_PAIR};
use ::engine::runtime::sampling::SamplingParams;
use ::engine::runtime::AttentionPolicy;
use ::engine::text::chat::ChatMessage;
use leptos::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub id: u64,
    pub role: Role,
    pub text: String,
    /// A reply cut where the context ends.
    #[serde(default)]
    pub cut: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Empty: the model's own default.
    pub system_prompt: String,
    pub params: SamplingParams,
    pub max_tokens: usize,
    /// Off by default (α = 0): replies as the model gives them.
    #[serde(default)]
    pub steering: SteeringSettings,
    /// None by default: the conversation is fitted to the context.
    #[serde(default)]
    pub policy: PolicySettings,
}

/// The attention policies the chat offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PolicyKind {
    #[default]
    None,
    /// LM-Infinite's Λ: start tokens and a window of recent ones.
    Lambda,
    /// A KV budget kept by the attention received (H2O-like).
    Budget,
}

impl PolicyKind {
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::None => "none",
            PolicyKind::Lambda => "lambda",
            PolicyKind::Budget => "budget",
        }
    }

    pub fn parse(name: &str) -> Self {
        match name {
            "lambda" => PolicyKind::Lambda,
            "budget" => PolicyKind::Budget,
            _ => PolicyKind::None,
        }
    }
}

/// The chat's attention policy control: the kind, and each kind's numbers (kept while another
/// kind is chosen, so switching back finds them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicySettings {
    pub kind: PolicyKind,
    pub start_tokens: usize,
    pub window: usize,
    pub budget: usize,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            kind: PolicyKind::None,
            start_tokens: 4,
            window: 256,
            budget: 256,
        }
    }
}

impl PolicySettings {
    /// The engine's policy.
    pub fn policy(&self) -> AttentionPolicy {
        match self.kind {
            PolicyKind::None => AttentionPolicy::Full,
            PolicyKind::Lambda => AttentionPolicy::Lambda {
                n_global: self.start_tokens,
                n_local: self.window,
            },
            PolicyKind::Budget => AttentionPolicy::budget(self.budget),
        }
    }

    /// The control set to `policy` (a budget's own first and recent tokens become the
    /// default ones).
    fn set(&mut self, policy: AttentionPolicy) {
        match policy {
            AttentionPolicy::Full => self.kind = PolicyKind::None,
            AttentionPolicy::Lambda { n_global, n_local } => {
                self.kind = PolicyKind::Lambda;
                self.start_tokens = n_global;
                self.window = n_local;
            }
            AttentionPolicy::Budget { budget, .. } => {
                self.kind = PolicyKind::Budget;
                self.budget = budget;
            }
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            system_prompt: String::new(),
            params: SamplingParams::default(),
            max_tokens: 256,
            steering: SteeringSettings::default(),
            policy: PolicySettings::default(),
        }
    }
}

/// The chat's steering control: a ready pair (empty: none), its scale and the block after
/// which it is added (`None`: a fifth of the way in, as `glassbox generate --steer` does).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SteeringSettings {
    pub pair: String,
    pub alpha: f32,
    pub layer: Option<usize>,
    /// The user's own pair: one prompt per line, towards and away from.
    #[serde(default)]
    pub positive: String,
    #[serde(default)]
    pub negative: String,
}

impl SteeringSettings {
    /// What the worker is asked to do, for a model of `n_layers` layers (`None`: off).
    pub fn choice(&self, n_layers: usize) -> Option<SteeringChoice> {
        if self.pair.is_empty() || self.alpha == 0.0 || n_layers == 0 {
            return None;
        }
        let lines = |text: &str| -> Vec<String> {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        };
        let custom = self.pair == CUSTOM_PAIR;
        Some(SteeringChoice {
            pair: self.pair.clone(),
            layer: self.layer.unwrap_or(n_layers / 5).min(n_layers - 1),
            alpha: self.alpha,
            positive: if custom {
                lines(&self.positive)
            } else {
                Vec::new()
            },
            negative: if custom {
                lines(&self.negative)
            } else {
                Vec::new()
            },
        })
    }
}

/// What localStorage keeps.
#[derive(Default, Serialize, Deserialize)]
struct Saved {
    turns: Vec<Turn>,
    settings: Settings,
}

const STORAGE_KEY: &str = "glassbox.chat.v1";
/// How often a streaming reply is saved (see [`ChatState::new`]).
const SAVE_WHILE_STREAMING_MS: f64 = 1000.0;

#[derive(Clone, Copy)]
pub struct ChatState {
    pub turns: RwSignal<Vec<Turn>>,
    /// The request being answered.
    pub generating: RwSignal<Option<u32>>,
    pub stats: RwSignal<Option<ReplyStats>>,
    pub settings: RwSignal<Settings>,
    /// The message being written.
    pub draft: RwSignal<String>,
    /// The conversation does not fit the context: (the oldest messages to drop so that it
    /// does, the context), offered to the user.
    pub too_long: RwSignal<Option<(usize, usize)>>,
    /// The id of the next turn (after those a reload brought back).
    next_turn: StoredValue<u64>,
    engine: EngineState,
}

impl ChatState {
    /// The saved conversation and settings, kept saved from now on.
    pub(super) fn new(engine: EngineState) -> Self {
        let saved: Saved = local_storage()
            .and_then(|s| s.get_item(STORAGE_KEY).ok().flatten())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let next_turn = saved.turns.iter().map(|t| t.id + 1).max().unwrap_or(0);
        let chat = ChatState {
            turns: RwSignal::new(saved.turns),
            generating: RwSignal::new(None),
            stats: RwSignal::new(None),
            settings: RwSignal::new(saved.settings),
            draft: RwSignal::new(String::new()),
            too_long: RwSignal::new(None),
            next_turn: StoredValue::new(next_turn),
            engine,
        };
        // Every piece of a streaming reply changes `turns`. Serializing the whole conversation
        // into localStorage for each piece took the page's thread from the engine's: while a
        // reply streams, it is saved at most every SAVE_WHILE_STREAMING_MS (a reload then loses
        // at most that much of it), and at once otherwise, which includes the reply's end.
        let last_saved = StoredValue::new(f64::NEG_INFINITY);
        Effect::new(move |_| {
            chat.turns.track();
            chat.settings.track();
            let streaming = chat.generating.get().is_some();
            let now = js_sys::Date::now();
            if streaming && now - last_saved.get_value() < SAVE_WHILE_STREAMING_MS {
                return;
            }
            last_saved.set_value(now);
            let saved = Saved {
                turns: chat.turns.get_untracked(),
                settings: chat.settings.get_untracked(),
            };
            if let (Some(storage), Ok(text)) = (local_storage(), serde_json::to_string(&saved)) {
                let _ = storage.set_item(STORAGE_KEY, &text);
            }
        });
        chat
    }

    /// The text of turn `id` (empty once the turn is gone), tracked.
    pub fn text_of(self, id: u64) -> String {
        self.turns.with(|turns| {
            turns
                .iter()
                .rev()
                .find(|t| t.id == id)
                .map(|t| t.text.clone())
                .unwrap_or_default()
        })
    }

    fn new_turn_id(self) -> u64 {
        let id = self.next_turn.get_value();
        self.next_turn.set_value(id + 1);
        id
    }

    /// The conversation up to and including the reply `turn_id`, as chat messages.
    pub fn messages_through(self, turn_id: u64) -> Vec<ChatMessage> {
        let settings = self.settings.get_untracked();
        let mut messages = Vec::new();
        if !settings.system_prompt.trim().is_empty() {
            messages.push(ChatMessage::new("system", &settings.system_prompt));
        }
        for turn in self.turns.get_untracked() {
            let role = match turn.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            messages.push(ChatMessage::new(role, &turn.text));
            if turn.id == turn_id {
                break;
            }
        }
        messages
    }

    /// Adds the user's message and starts the reply (the caller checked that the engine is
    /// free: [`super::AppState::send_message`]).
    pub(super) fn send_message(self, text: &str) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let id = self.new_turn_id();
        self.turns.update(|turns| {
            turns.push(Turn {
                id,
                role: Role::User,
                text: text.to_string(),
                cut: false,
            })
        });
        self.reply();
    }

    /// Whether the conversation ends with a reply (that Regenerate would replace).
    pub fn ends_with_reply(self) -> bool {
        self.turns
            .with(|t| t.last().is_some_and(|t| t.role == Role::Assistant))
    }

    /// Replaces the last reply with a new one, drawn with the next seed (the same seed would
    /// give the same text). The caller checked that the engine is free.
    pub(super) fn regenerate(self) {
        if !self.ends_with_reply() {
            return;
        }
        self.turns.update(|turns| {
            turns.pop();
        });
        self.settings
            .update(|s| s.params.seed = s.params.seed.wrapping_add(1));
        self.reply();
    }

    /// Leaves out the oldest `count` turns (the system prompt stays) and answers the rest. The
    /// caller checked that the engine is free.
    pub(super) fn drop_oldest_and_answer(self, count: usize) {
        self.too_long.set(None);
        self.turns.update(|turns| {
            turns.drain(..count.min(turns.len()));
        });
        if self
            .turns
            .with_untracked(|t| t.last().is_some_and(|t| t.role == Role::User))
        {
            self.reply();
        }
    }

    /// Asks the worker to answer the conversation as it stands.
    fn reply(self) {
        let id = self.new_turn_id();
        let request = self.engine.next_request();
        let settings = self.settings.get_untracked();
        let messages = self.messages_through(u64::MAX);
        self.turns.update(|turns| {
            turns.push(Turn {
                id,
                role: Role::Assistant,
                text: String::new(),
                cut: false,
            })
        });
        self.engine.notice.set(None);
        self.too_long.set(None);
        self.generating.set(Some(request));
        self.engine.send(ChatRequest::Generate {
            request,
            messages,
            steering: settings.steering.choice(self.engine.n_layers()),
            params: settings.params,
            max_tokens: settings.max_tokens,
            policy: settings.policy.policy(),
        });
    }

    /// A link's attention policy, if it names one.
    pub(super) fn apply_link(self, link: &Link) {
        if let Some(policy) = link.policy {
            self.settings.update(|s| s.policy.set(policy));
        }
    }

    pub(super) fn write_link(self, link: &mut Link) {
        if link.view == View::Chat {
            link.policy =
                Some(self.settings.with(|s| s.policy.policy())).filter(AttentionPolicy::evicts);
        }
    }

    pub fn stop(self) {
        if self.generating.get_untracked().is_some() {
            self.engine.send(ToWorker::Stop);
        }
    }

    pub fn new_chat(self) {
        self.stop();
        self.generating.set(None);
        self.turns.set(Vec::new());
        self.stats.set(None);
        self.too_long.set(None);
        self.engine.notice.set(None);
    }

    /// A reply's progress; replies to another request than the one under way are dropped.
    pub(super) fn on_reply(self, reply: ChatReply) {
        match reply {
            ChatReply::Token { request, text } => {
                if self.generating.get_untracked() == Some(request) {
                    self.turns.update(|turns| {
                        if let Some(last) = turns.last_mut().filter(|t| t.role == Role::Assistant) {
                            last.text.push_str(&text);
                        }
                    });
                }
            }
            ChatReply::Restarted { request } => {
                if self.generating.get_untracked() == Some(request) {
                    self.turns.update(|turns| {
                        if let Some(last) = turns.last_mut().filter(|t| t.role == Role::Assistant) {
                            last.text.clear();
                        }
                    });
                }
            }
            ChatReply::Done { request, stats } => {
                if self.generating.get_untracked() == Some(request) {
                    self.generating.set(None);
                    if stats.cut {
                        self.turns.update(|turns| {
                            if let Some(last) =
                                turns.last_mut().filter(|t| t.role == Role::Assistant)
                            {
                                last.cut = true;
                            }
                        });
                    }
                    self.stats.set(Some(stats));
                }
            }
            ChatReply::TooLong {
                request,
                dropped,
                context,
            } => {
                if self.generating.get_untracked() == Some(request) {
                    self.generating.set(None);
                    self.pop_empty_reply();
                    self.too_long.set(Some((dropped, context)));
                }
            }
            ChatReply::Refused { request, message } => {
                if self.generating.get_untracked() == Some(request) {
                    self.generating.set(None);
                    self.pop_empty_reply();
                    // The message leaves the conversation and goes back to the message box.
                    let text = self.turns.try_update(|turns| {
                        match turns.last().filter(|t| t.role == Role::User) {
                            Some(_) => turns.pop().map(|t| t.text),
                            None => None,
                        }
                    });
                    if let Some(Some(text)) = text {
                        if self.draft.get_untracked().trim().is_empty() {
                            self.draft.set(text);
                        }
                    }
                    self.engine.notice.set(Some(message));
                }
            }
            ChatReply::Failed { request, message } => {
                if self.generating.get_untracked() == Some(request) {
                    self.generating.set(None);
                    self.pop_empty_reply();
                    self.engine.notice.set(Some(message));
                }
            }
        }
    }

    /// Takes out the reply that was opened for a request that generated nothing.
    fn pop_empty_reply(self) {
        self.turns.update(|turns| {
            if turns
                .last()
                .is_some_and(|t| t.role == Role::Assistant && t.text.is_empty())
            {
                turns.pop();
            }
        });
    }
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}
