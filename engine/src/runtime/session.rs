//! A conversation's state on a backend, and the one way to run tokens through the model:
//! [`Session::feed`], which takes what to feed ([`Input`]) and what to read back ([`Output`],
//! [`Taps`]), and keeps the KV cache consistent whatever happens.
//!
//! The KV cache is reused here and nowhere else: an [`Input::Sequence`] keeps the longest
//! prefix the cache already holds and feeds only the rest, so a conversation that grew by one
//! turn costs only that turn.

use super::captured::{read_captures, Captured};
use super::language_model::LanguageModel;
use super::policy::AttentionPolicy;
use crate::backend::{Backend, Mask, Selection};
use crate::error::{Error, Result};
use crate::models::interventions::Interventions;
use crate::models::pass::{Activations, Pass};
use crate::models::shape::Step;
use crate::models::taps::{Captures, Taps};

/// What to feed.
#[derive(Debug, Clone)]
pub enum Input<'a> {
    /// New tokens after what the session holds, at the next positions, causal.
    Append(&'a [u32]),
    /// A whole token sequence from its start (a conversation rendered anew): the session keeps
    /// the longest prefix its cache shares with it and feeds the rest, at least the last token
    /// (whose logits are wanted). Consecutive positions, causal.
    Sequence(&'a [u32]),
    /// New tokens with a layout of their own (Set-Based Prompting builds these).
    Layout(Layout<'a>),
}

/// Tokens with explicit positions and visibility.
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    pub ids: &'a [u32],
    /// Relative to [`Session::next_position`].
    pub positions: &'a [u32],
    /// Which of these tokens may attend to which: `(t, t)` row-major; all of them see
    /// everything cached before them. `None`: causal.
    pub visible: Option<Vec<bool>>,
}

/// What to read back of the last fed token's next-token distribution.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Every logit.
    Logits,
    /// Every logit of every fed token, `(tokens, vocab)` (perplexity; feed a few hundred
    /// tokens at a time: that is their size).
    EveryLogits,
    /// Only the candidates a sampler needs (on WebGPU a few bytes are read back).
    TopK(Selection),
}

/// One call of [`Session::feed`]: what to feed and what comes back.
#[derive(Debug, Clone)]
pub struct Feed<'a> {
    pub input: Input<'a>,
    pub output: Output,
    pub taps: Taps,
    /// What to change in the forward pass; `None`: nothing.
    pub interventions: Option<&'a Interventions>,
    /// The precision of the activations in the matrix products (see [`Activations`]).
    pub activations: Activations,
}

impl<'a> Feed<'a> {
    fn new(input: Input<'a>) -> Self {
        Feed {
            input,
            output: Output::Logits,
            taps: Taps::default(),
            interventions: None,
            activations: Activations::Auto,
        }
    }

    /// [`Input::Append`], returning the logits.
    pub fn append(ids: &'a [u32]) -> Self {
        Self::new(Input::Append(ids))
    }

    /// [`Input::Sequence`], returning the logits.
    pub fn sequence(ids: &'a [u32]) -> Self {
        Self::new(Input::Sequence(ids))
    }

    /// [`Input::Layout`], returning the logits.
    pub fn layout(layout: Layout<'a>) -> Self {
        Self::new(Input::Layout(layout))
    }

    /// Returns every fed token's logits.
    pub fn every_logits(mut self) -> Self {
        self.output = Output::EveryLogits;
        self
    }

    /// Returns only the candidates `selection` asks for instead of the logits.
    pub fn top_k(mut self, selection: Selection) -> Self {
        self.output = Output::TopK(selection);
        self
    }

    /// Captures what `taps` ask for on the way.
    pub fn taps(mut self, taps: Taps) -> Self {
        self.taps = taps;
        self
    }

    /// Runs the matrix products with activations in this precision.
    pub fn activations(mut self, activations: Activations) -> Self {
        self.activations = activations;
        self
    }

    /// Runs the forward pass with `interventions`.
    pub fn interventions(mut self, interventions: &'a Interventions) -> Self {
        self.interventions = Some(interventions);
        self
    }
}

/// What one [`Session::feed`] returns.
#[derive(Debug, Clone, Default)]
pub struct Fed {
    /// The last token's logits, for [`Output::Logits`]; every fed token's, row-major, for
    /// [`Output::EveryLogits`]; else empty.
    pub logits: Vec<f32>,
    /// The candidates, best first, for [`Output::TopK`]; else empty.
    pub top: Vec<(u32, f32)>,
    /// What the taps captured, read back.
    pub captured: Captured,
    /// Tokens of an [`Input::Sequence`] that the cache already held and were not fed again.
    pub reused: usize,
}

/// Prompts longer than this are fed in pieces, to bound the attention scores' memory.
const PREFILL_CHUNK: usize = 512;

/// One conversation's state: the KV cache, and the tokens and positions it holds.
pub struct Session<B: Backend> {
    caches: Vec<B::Cache>,
    /// The tokens the cache holds, one per slot (fewer than were fed once a policy evicted).
    tokens: Vec<u32>,
    positions: Vec<u32>,
    capacity: usize,
    /// The interventions the cache was computed under: feeding every held token under them
    /// would give the same cache.
    applied: Interventions,
    policy: AttentionPolicy,
    /// Every token fed since the session was last emptied, evicted ones included.
    history: Vec<u32>,
    /// Per slot, the attention the token has received (what a budget keeps by).
    attention_received: Vec<f32>,
    /// Per slot, the token's index in `history`.
    fed_at: Vec<usize>,
}

impl<B: Backend> Session<B> {
    /// A session holding up to `capacity` tokens (at most the model's context length).
    pub fn new(model: &LanguageModel<B>, backend: &B, capacity: usize) -> Result<Self> {
        let capacity = capacity.min(model.config().context_len).max(1);
        Ok(Session {
            caches: model.decoder.new_caches(backend, capacity)?,
            tokens: Vec::new(),
            positions: Vec::new(),
            capacity,
            applied: Interventions::default(),
            policy: AttentionPolicy::Full,
            history: Vec::new(),
            attention_received: Vec::new(),
            fed_at: Vec::new(),
        })
    }

    /// Feeds the next tokens under `policy`; a change empties the session (its cache was
    /// computed under the other one).
    pub fn set_policy(&mut self, backend: &B, policy: AttentionPolicy) -> Result<()> {
        policy.check(self.capacity)?;
        if policy != self.policy {
            self.truncate(backend, 0);
            self.policy = policy;
        }
        Ok(())
    }

    pub fn policy(&self) -> AttentionPolicy {
        self.policy
    }

    /// How many fed tokens the policy has evicted from the cache.
    pub fn evicted(&self) -> usize {
        self.history.len() - self.tokens.len()
    }

    /// Every token fed since the session was last emptied, evicted ones included.
    pub fn history(&self) -> &[u32] {
        &self.history
    }

    /// Per token the cache holds, its index in [`Session::history`] (which tokens a policy
    /// kept).
    pub fn held_at(&self) -> &[usize] {
        &self.fed_at
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The tokens the cache holds, in feed order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Their position ids.
    pub fn positions(&self) -> &[u32] {
        &self.positions
    }

    /// The position after every position used so far (after a set, past its longest member).
    pub fn next_position(&self) -> u32 {
        self.positions.iter().max().map_or(0, |p| p + 1)
    }

    /// Runs `feed.input` through the model and reads back what `feed` asks for. On any error
    /// the session is as it was before (or, for [`Input::Sequence`], holds the reused prefix).
    pub async fn feed(
        &mut self,
        model: &LanguageModel<B>,
        backend: &B,
        feed: Feed<'_>,
    ) -> Result<Fed> {
        let interventions = feed.interventions.cloned().unwrap_or_default();
        if self.policy.evicts() {
            if feed.taps.any() || matches!(feed.input, Input::Layout(_)) {
                return Err(Error::InvalidRequest(
                    "captures and token layouts name tokens by their place in the cache, which \
                     an attention policy changes: use them without a policy"
                        .into(),
                ));
            }
            if !interventions.patches.is_empty() || !interventions.knockouts.is_empty() {
                return Err(Error::InvalidRequest(
                    "patches and knockouts name tokens by their place in the cache, which an \
                     attention policy changes: use them without a policy"
                        .into(),
                ));
            }
        }
        self.switch_interventions(model, backend, interventions, &feed.input)?;
        let (ids, positions, mask, reused) = self.resolve(backend, feed.input)?;
        let before = self.tokens.len();
        let pass = Pass {
            taps: feed.taps,
            interventions: &Interventions::default(), // the session's own, set in `forward`
            activations: feed.activations,
        };
        let every = feed.output == Output::EveryLogits;
        let (logits, captures) = self
            .forward(model, backend, ids, &positions, &mask, pass, every)
            .await?;
        let read = async {
            let mut fed = Fed {
                reused,
                ..Fed::default()
            };
            match &feed.output {
                Output::Logits | Output::EveryLogits => {
                    for chunk in &logits {
                        fed.logits.extend(backend.read(chunk).await?);
                    }
                }
                Output::TopK(selection) => {
                    let last = logits.last().expect("forward returns at least one chunk");
                    fed.top = backend.top_k(last, selection).await?
                }
            }
            fed.captured = read_captures(backend, captures).await?;
            Ok(fed)
        };
        let result = read.await;
        if result.is_err() {
            // The GPU failed after recording: forget this step, keep the conversation.
            self.truncate(backend, before);
        }
        result
    }

    /// Makes `interventions` the ones the next tokens are fed under. The cache stays valid up
    /// to the first token either set changes; past it, only an [`Input::Sequence`] (which
    /// names every token) can feed the rest again, so other inputs are refused there.
    fn switch_interventions(
        &mut self,
        model: &LanguageModel<B>,
        backend: &B,
        interventions: Interventions,
        input: &Input,
    ) -> Result<()> {
        if interventions == self.applied {
            return Ok(());
        }
        interventions.check(model.config())?;
        let valid = self
            .applied
            .first_token_changed()
            .min(interventions.first_token_changed());
        if valid < self.tokens.len() {
            if !matches!(input, Input::Sequence(_)) {
                return Err(Error::InvalidRequest(format!(
                    "the session's cache from token {valid} on was computed under other \
                     interventions: feed the whole sequence"
                )));
            }
            self.truncate(backend, valid);
        }
        self.applied = interventions;
        Ok(())
    }

    /// The ids to run, their absolute positions, the mask and how many tokens were reused.
    fn resolve<'a>(
        &mut self,
        backend: &B,
        input: Input<'a>,
    ) -> Result<(&'a [u32], Vec<u32>, Mask, usize)> {
        match input {
            Input::Append(ids) => Ok((ids, self.next_positions(ids.len()), Mask::Causal, 0)),
            Input::Sequence(ids) if self.evicted() > 0 => {
                // The cache no longer holds every token: go on only from the whole history.
                let common = if ids.len() > self.history.len() && ids.starts_with(&self.history) {
                    self.history.len()
                } else {
                    self.truncate(backend, 0);
                    0
                };
                let rest = &ids[common..];
                Ok((rest, self.next_positions(rest.len()), Mask::Causal, common))
            }
            Input::Sequence(ids) => {
                let common = self.keep_common_prefix(backend, ids);
                let rest = &ids[common..];
                Ok((rest, self.next_positions(rest.len()), Mask::Causal, common))
            }
            Input::Layout(layout) => {
                let t = layout.ids.len();
                if layout.positions.len() != t {
                    return Err(Error::InvalidRequest(format!(
                        "{t} ids but {} positions",
                        layout.positions.len()
                    )));
                }
                let start = self.next_position();
                let positions = layout
                    .positions
                    .iter()
                    .map(|&p| {
                        start.checked_add(p).ok_or_else(|| {
                            Error::InvalidRequest(format!("position {start} + {p} overflows"))
                        })
                    })
                    .collect::<Result<Vec<u32>>>()?;
                let mask = match layout.visible {
                    None => Mask::Causal,
                    Some(visible) => self.mask_after_cache(&visible, t)?,
                };
                Ok((layout.ids, positions, mask, 0))
            }
        }
    }

    /// The mask of `t` new tokens that see everything cached and, among themselves, `visible`.
    fn mask_after_cache(&self, visible: &[bool], t: usize) -> Result<Mask> {
        if visible.len() != t * t {
            return Err(Error::InvalidRequest(format!(
                "a visibility of {} entries for {t} tokens",
                visible.len()
            )));
        }
        let cached = self.tokens.len();
        let mut rows = Vec::with_capacity(t * (cached + t));
        for row in visible.chunks_exact(t.max(1)) {
            rows.extend(std::iter::repeat_n(true, cached));
            rows.extend_from_slice(row);
        }
        Ok(Mask::Explicit(rows))
    }

    fn next_positions(&self, n: usize) -> Vec<u32> {
        let start = self.next_position();
        (0..n as u32).map(|i| start + i).collect()
    }

    /// Runs `ids` through the model in chunks, evicting as the policy says; returns the last
    /// token's logits (with `every`, each chunk's logits of every token), unread.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &mut self,
        model: &LanguageModel<B>,
        backend: &B,
        ids: &[u32],
        positions: &[u32],
        mask: &Mask,
        pass: Pass<'_>,
        every: bool,
    ) -> Result<(Vec<B::Tensor>, Captures<B>)> {
        let taps = pass.taps;
        if ids.is_empty() {
            return Err(Error::InvalidRequest(
                "nothing to feed: the prompt is empty".into(),
            ));
        }
        let needed = self.tokens.len() + ids.len();
        if needed > self.capacity && !self.policy.evicts() {
            return Err(Error::ContextOverflow {
                prompt: needed,
                context: self.capacity,
            });
        }
        let mut captures = Captures::default();
        let mut logits = Vec::new();
        // An explicit mask spans all of `ids`, and captures are one matrix per layer: those
        // are fed in one piece. A policy makes room before each piece.
        let chunk = if self.policy.evicts() {
            self.policy.chunk(self.capacity, PREFILL_CHUNK)
        } else if matches!(mask, Mask::Causal) && !taps.any() {
            PREFILL_CHUNK
        } else {
            ids.len()
        };
        for start in (0..ids.len()).step_by(chunk) {
            let end = (start + chunk).min(ids.len());
            let t = end - start;
            self.make_room(model, backend, t)?;
            let (chunk_positions, chunk_mask) = if self.policy.evicts() {
                let positions = if self.policy.repositions() {
                    self.next_positions(t)
                } else {
                    positions[start..end].to_vec()
                };
                (positions, self.policy.mask(self.tokens.len(), t))
            } else {
                (positions[start..end].to_vec(), mask.clone())
            };
            let step = Step {
                ids: &ids[start..end],
                positions: &chunk_positions,
                cached_positions: &self.positions,
                mask: &chunk_mask,
            };
            let mut pass = Pass {
                interventions: &self.applied,
                ..pass
            };
            if self.policy.scores_attention() {
                // The budget's scores, read back below; they never leave the session.
                if pass.activations == Activations::Auto && !pass.exact() {
                    pass.activations = Activations::Fastest;
                }
                pass.taps.attention = true;
                pass.taps.only_layer = None;
            }
            let cached = self.tokens.len();
            let forward = model.decoder.forward(
                backend,
                &step,
                &mut self.caches,
                if every { t } else { 1 },
                pass,
            );
            let (out, caps) = match forward {
                Ok(result) => result,
                Err(e) => {
                    // Some layers may have cached this chunk: undo, so the session stays usable.
                    self.truncate(backend, cached);
                    return Err(e);
                }
            };
            self.tokens.extend_from_slice(&ids[start..end]);
            self.positions.extend_from_slice(&chunk_positions);
            self.fed_at
                .extend(self.history.len()..self.history.len() + t);
            self.history.extend_from_slice(&ids[start..end]);
            self.attention_received.resize(self.tokens.len(), 0.0);
            if self.policy.scores_attention() {
                if let Err(e) = self.score_attention(backend, &caps.attention).await {
                    self.truncate(backend, cached);
                    return Err(e);
                }
            } else {
                captures.extend(caps);
            }
            if !every {
                logits.clear();
            }
            logits.push(out);
        }
        Ok((logits, captures))
    }

    /// Evicts what the policy says before `incoming` tokens are fed.
    fn make_room(&mut self, model: &LanguageModel<B>, backend: &B, incoming: usize) -> Result<()> {
        let Some(eviction) = self.policy.evict(
            self.tokens.len(),
            incoming,
            self.capacity,
            &self.attention_received,
        ) else {
            return Ok(());
        };
        for (layer, cache) in self.caches.iter_mut().enumerate() {
            let rope = model.decoder.rope_spec(layer);
            backend.cache_keep(cache, &eviction.keep, &eviction.shifts, rope)?;
        }
        self.tokens = eviction.keep.iter().map(|&s| self.tokens[s]).collect();
        self.positions = eviction
            .keep
            .iter()
            .zip(&eviction.shifts)
            .map(|(&slot, &shift)| (i64::from(self.positions[slot]) + i64::from(shift)) as u32)
            .collect();
        self.attention_received = eviction
            .keep
            .iter()
            .map(|&slot| self.attention_received[slot])
            .collect();
        self.fed_at = eviction.keep.iter().map(|&s| self.fed_at[s]).collect();
        Ok(())
    }

    /// Adds the attention each cached token received from the new ones (every layer, head and
    /// query) to its score.
    async fn score_attention(&mut self, backend: &B, attention: &[B::Tensor]) -> Result<()> {
        let total = self.tokens.len();
        for probs in attention {
            let probs = backend.read(probs).await?;
            for row in probs.chunks_exact(total) {
                for (score, p) in self.attention_received.iter_mut().zip(row) {
                    *score += p;
                }
            }
        }
        Ok(())
    }

    /// Keeps the cache's longest common prefix with `ids` and returns its length; at least the
    /// last id is left to feed, for its logits. [`Input::Sequence`] does this before it feeds.
    pub fn keep_common_prefix(&mut self, backend: &B, ids: &[u32]) -> usize {
        let common = self
            .tokens
            .iter()
            .zip(ids)
            .take_while(|(a, b)| a == b)
            .count()
            .min(ids.len().saturating_sub(1));
        self.truncate(backend, common);
        common
    }

    /// Forgets everything from the token in slot `len` on (regenerate, undo).
    pub fn truncate(&mut self, backend: &B, len: usize) {
        for cache in &mut self.caches {
            backend.cache_truncate(cache, len);
        }
        if let Some(&fed_at) = self.fed_at.get(len) {
            // Evicted tokens before the first forgotten one stay part of the history.
            self.history.truncate(if len == 0 { 0 } else { fed_at });
        }
        self.tokens.truncate(len);
        self.positions.truncate(len);
        self.attention_received.truncate(len);
        self.fed_at.truncate(len);
    }
}
