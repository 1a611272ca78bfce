//! Set-Based Prompting (McIlroy-Young et al., 2024): a prompt whose answer cannot depend on the
//! order of the members of a set.
//!
//! A prompt is a list of parts: text, or a set of members. Each part is tokenized on its own.
//! Two edits make the members interchangeable:
//! - **positions**: every member of a set starts at the set's first position, and what follows
//!   the set starts after its longest member;
//! - **mask**: a member never sees another member of its own set; everything else is causal, so
//!   what follows a set sees all of its members.
//!
//! Attention is then a function of the *set* of (position, key, value) triples of the other
//! members, not of their order in the KV cache, so permuting members permutes cache rows and
//! nothing else. (The CPU backend sums attention in f64, so even the rounding does not depend on
//! the row order; see `cpu/attention.rs`.)

use crate::backend::Mask;
use crate::error::{Error, Result};
use crate::runtime::session::Layout;
use crate::text::tokenizer::Tokenizer;

/// One part of a prompt, as text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptPart {
    Text(String),
    /// Members whose order must not matter.
    Set(Vec<String>),
}

/// One part of a prompt, as token ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartIds {
    Text(Vec<u32>),
    Set(Vec<Vec<u32>>),
}

/// Where a token of a [`SetPrompt`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TokenOrigin {
    /// Index of the part in the prompt.
    pub part: usize,
    /// Index of the member, for tokens of a set.
    pub member: Option<usize>,
}

/// A prompt laid out for Set-Based Prompting: ids in feed order, with positions relative to
/// the prompt's start and each token's origin (which fixes the mask).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetPrompt {
    pub ids: Vec<u32>,
    /// Position ids relative to the first token of the prompt.
    pub positions: Vec<u32>,
    pub origins: Vec<TokenOrigin>,
}

impl SetPrompt {
    /// Tokenizes each part on its own (special tokens parsed, nothing added).
    pub fn encode(tokenizer: &Tokenizer, parts: &[PromptPart]) -> Result<Self> {
        Self::from_ids(&Self::part_ids(tokenizer, parts)?)
    }

    /// [`SetPrompt::encode`] for a prompt fed from its start: BOS first when the model wants it
    /// (`tokenizer.ggml.add_bos_token`), as llama.cpp does.
    pub fn encode_from_start(tokenizer: &Tokenizer, parts: &[PromptPart]) -> Result<Self> {
        let mut ids = Self::part_ids(tokenizer, parts)?;
        if let (true, Some(bos)) = (tokenizer.add_bos, tokenizer.bos_id) {
            ids.insert(0, PartIds::Text(vec![bos]));
        }
        Self::from_ids(&ids)
    }

    fn part_ids(tokenizer: &Tokenizer, parts: &[PromptPart]) -> Result<Vec<PartIds>> {
        parts
            .iter()
            .map(|part| match part {
                PromptPart::Text(text) => Ok(PartIds::Text(tokenizer.encode(text)?)),
                PromptPart::Set(members) => Ok(PartIds::Set(
                    members
                        .iter()
                        .map(|m| tokenizer.encode(m))
                        .collect::<Result<_>>()?,
                )),
            })
            .collect()
    }

    /// Lays out parts given as ids.
    pub fn from_ids(parts: &[PartIds]) -> Result<Self> {
        let mut prompt = SetPrompt {
            ids: Vec::new(),
            positions: Vec::new(),
            origins: Vec::new(),
        };
        let mut next = 0u32;
        for (part, ids) in parts.iter().enumerate() {
            match ids {
                PartIds::Text(ids) => {
                    prompt.push_run(ids, next, part, None);
                    next += ids.len() as u32;
                }
                PartIds::Set(members) => {
                    if members.iter().any(Vec::is_empty) {
                        return Err(Error::InvalidRequest(format!(
                            "part {part}: a member of the set is empty"
                        )));
                    }
                    for (member, ids) in members.iter().enumerate() {
                        prompt.push_run(ids, next, part, Some(member));
                    }
                    next += members.iter().map(Vec::len).max().unwrap_or(0) as u32;
                }
            }
        }
        if prompt.ids.is_empty() {
            return Err(Error::InvalidRequest("the prompt is empty".into()));
        }
        Ok(prompt)
    }

    fn push_run(&mut self, ids: &[u32], start: u32, part: usize, member: Option<usize>) {
        self.ids.extend_from_slice(ids);
        self.positions
            .extend((0..ids.len() as u32).map(|i| start + i));
        self.origins
            .extend(ids.iter().map(|_| TokenOrigin { part, member }));
    }

    /// The same tokens as one plain sequence, for comparison: consecutive positions, causal.
    pub fn plain(&self) -> SetPrompt {
        SetPrompt {
            ids: self.ids.clone(),
            positions: (0..self.ids.len() as u32).collect(),
            origins: self
                .origins
                .iter()
                .map(|o| TokenOrigin {
                    part: o.part,
                    member: None,
                })
                .collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether token `query` may attend to token `key` (both indices into this prompt).
    pub fn visible(&self, query: usize, key: usize) -> bool {
        if key > query {
            return false;
        }
        let (q, k) = (self.origins[query], self.origins[key]);
        match (q.member, k.member) {
            (Some(qm), Some(km)) if q.part == k.part => qm == km,
            _ => true,
        }
    }

    /// Which token of the prompt may attend to which, `(t, t)` row-major; `None` when the
    /// prompt has no set, so plain prompts take the usual causal path.
    pub fn visibility(&self) -> Option<Vec<bool>> {
        if self.origins.iter().all(|o| o.member.is_none()) {
            return None;
        }
        let t = self.len();
        Some(
            (0..t)
                .flat_map(|query| (0..t).map(move |key| (query, key)))
                .map(|(query, key)| self.visible(query, key))
                .collect(),
        )
    }

    /// The prompt as a session feeds it: its ids, positions and block mask.
    pub fn layout(&self) -> Layout<'_> {
        Layout {
            ids: &self.ids,
            positions: &self.positions,
            visible: self.visibility(),
        }
    }

    /// The attention mask to feed this prompt after `cached` tokens (all of them visible);
    /// [`Mask::Causal`] when the prompt has no set.
    pub fn mask(&self, cached: usize) -> Mask {
        let Some(visible) = self.visibility() else {
            return Mask::Causal;
        };
        let t = self.len();
        let mut rows = Vec::with_capacity(t * (cached + t));
        for row in visible.chunks_exact(t) {
            rows.extend(std::iter::repeat_n(true, cached));
            rows.extend_from_slice(row);
        }
        Mask::Explicit(rows)
    }

    /// Absolute positions when the prompt starts at position `start`.
    pub fn positions_from(&self, start: u32) -> Vec<u32> {
        self.positions.iter().map(|p| start + p).collect()
    }

    /// The position that follows the prompt (after the longest member of a final set).
    pub fn end_position(&self) -> u32 {
        self.positions.iter().max().map_or(0, |p| p + 1)
    }
}

/// The parts with the members of every set reordered: `orders[s]` lists, for the `s`-th set,
/// which original member goes first, second, ….
pub fn reorder_members(parts: &[PartIds], orders: &[Vec<usize>]) -> Result<Vec<PartIds>> {
    let mut sets = 0;
    let reordered = parts
        .iter()
        .map(|part| match part {
            PartIds::Text(_) => Ok(part.clone()),
            PartIds::Set(members) => {
                let order = orders.get(sets).ok_or_else(|| {
                    Error::InvalidRequest(format!("no order given for set {sets}"))
                })?;
                sets += 1;
                let mut sorted = order.clone();
                sorted.sort_unstable();
                if sorted != (0..members.len()).collect::<Vec<_>>() {
                    return Err(Error::InvalidRequest(format!(
                        "{order:?} is not an order of {} members",
                        members.len()
                    )));
                }
                Ok(PartIds::Set(
                    order.iter().map(|&i| members[i].clone()).collect(),
                ))
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(reordered)
}

/// Every ordering of `n` members (n! of them), the identity first.
pub fn permutations(n: usize) -> Vec<Vec<usize>> {
    fn extend(prefix: &mut Vec<usize>, used: &mut [bool], out: &mut Vec<Vec<usize>>) {
        if prefix.len() == used.len() {
            out.push(prefix.clone());
            return;
        }
        for i in 0..used.len() {
            if !used[i] {
                used[i] = true;
                prefix.push(i);
                extend(prefix, used, out);
                prefix.pop();
                used[i] = false;
            }
        }
    }
    let mut out = Vec::new();
    extend(&mut Vec::new(), &mut vec![false; n], &mut out);
    out
}

/// Up to `count` orderings of `n` members: all of them when there are no more than `count`,
/// else the identity and distinct seeded shuffles.
pub fn sample_orders(n: usize, count: usize, seed: u64) -> Vec<Vec<usize>> {
    let all_fit = (1..=n)
        .try_fold(1usize, |f, k| f.checked_mul(k))
        .is_some_and(|f| f <= count);
    if all_fit {
        return permutations(n);
    }
    let mut rng = crate::rng::SeededRng::new(seed);
    let mut orders: Vec<Vec<usize>> = vec![(0..n).collect()];
    while orders.len() < count {
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        if !orders.contains(&order) {
            orders.push(order);
        }
    }
    orders
}
