//! Attention policies from the papers Glassbox grew from: what a session's KV cache keeps when
//! it fills, and which cached tokens each new token may attend to. [`super::session::Session`]
//! applies them; this file only decides (which slots stay, how far their keys move, the mask).
//!
//! - [`AttentionPolicy::Lambda`]: LM-Infinite (Han et al., 2023), a Λ-shaped mask: every token
//!   sees the first `n_global` tokens and the `n_local` most recent ones (itself included).
//!   When the cache is full the tokens between are evicted and the recent ones move back to
//!   follow the start tokens (their keys turned by RoPE through the shift), so positions never
//!   pass the cache's length: the chat goes on past the model's context, and no query–key
//!   distance exceeds what the model was trained on. `n_global = 0` is a plain sliding window;
//!   start tokens kept as attention sinks are StreamingLLM's observation (Xiao et al., 2023).
//! - [`AttentionPolicy::Budget`]: a KV budget in the spirit of H2O (Zhang et al., 2023) and
//!   Keyformer (Adnan et al., 2024): the cache holds at most `budget` tokens, the first
//!   `n_first`, the `n_recent` most recent, and the rest by the attention they have received
//!   (summed over layers, heads and queries; H2O keeps one set per head, we keep one set for
//!   the whole model so every layer's cache has the same rows). Kept tokens keep their
//!   positions.

use crate::backend::Mask;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// What the cache keeps and what each token sees (see the module's notes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttentionPolicy {
    /// Every token sees every earlier one; a full cache is an error.
    #[default]
    Full,
    Lambda {
        n_global: usize,
        n_local: usize,
    },
    Budget {
        budget: usize,
        n_first: usize,
        n_recent: usize,
    },
}

/// Tokens fed per forward pass under a budget: each pass's attention is read back to score the
/// cached tokens, `(heads · tokens, cached + tokens)` per layer.
const BUDGET_CHUNK: usize = 64;

/// An eviction: the slots that stay (ascending) and how many positions each key moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub keep: Vec<usize>,
    pub shifts: Vec<i32>,
}

impl AttentionPolicy {
    /// Reads `lambda:G,L`, `window:L` or `budget:N[,FIRST,RECENT]` (the CLI's and the deep
    /// links' form); `full` or `none` for no policy.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidRequest(format!(
                "attention policy {text:?}: expected full, lambda:GLOBAL,LOCAL, window:LOCAL or \
                 budget:TOKENS[,FIRST,RECENT]"
            ))
        };
        let (name, args) = text.split_once(':').unwrap_or((text, ""));
        let numbers: Vec<usize> = if args.is_empty() {
            Vec::new()
        } else {
            args.split(',')
                .map(|n| n.trim().parse().map_err(|_| bad()))
                .collect::<Result<_>>()?
        };
        match (name, numbers.as_slice()) {
            ("full" | "none", []) => Ok(AttentionPolicy::Full),
            ("lambda", &[n_global, n_local]) => Ok(AttentionPolicy::Lambda { n_global, n_local }),
            ("window", &[n_local]) => Ok(AttentionPolicy::Lambda {
                n_global: 0,
                n_local,
            }),
            ("budget", &[budget]) => Ok(AttentionPolicy::budget(budget)),
            ("budget", &[budget, n_first, n_recent]) => Ok(AttentionPolicy::Budget {
                budget,
                n_first,
                n_recent,
            }),
            _ => Err(bad()),
        }
    }

    /// A budget of `budget` tokens with 4 start tokens and a quarter of it recent.
    pub fn budget(budget: usize) -> Self {
        AttentionPolicy::Budget {
            budget,
            n_first: 4,
            n_recent: budget / 4,
        }
    }

    /// Whether the policy fits a cache of `capacity` tokens with room to feed.
    pub fn check(&self, capacity: usize) -> Result<()> {
        let refuse = |why: String| Err(Error::InvalidRequest(format!("{self:?}: {why}")));
        match *self {
            AttentionPolicy::Full => Ok(()),
            AttentionPolicy::Lambda { n_global, n_local } => {
                if n_local == 0 {
                    refuse("the local window needs at least one token".into())
                } else if n_global + n_local >= capacity {
                    refuse(format!(
                        "the start tokens and the window must leave room in the {capacity}-token \
                         cache"
                    ))
                } else {
                    Ok(())
                }
            }
            AttentionPolicy::Budget {
                budget,
                n_first,
                n_recent,
            } => {
                if budget > capacity {
                    refuse(format!("more than the {capacity}-token cache"))
                } else if n_first + n_recent + 2 > budget {
                    refuse("the first and recent tokens leave no room to feed".into())
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Whether the policy moves tokens to other slots (so token indices stop being slots).
    pub fn evicts(&self) -> bool {
        !matches!(self, AttentionPolicy::Full)
    }

    /// Whether new positions follow the cache's length (they move back on eviction).
    pub fn repositions(&self) -> bool {
        matches!(self, AttentionPolicy::Lambda { .. })
    }

    /// Whether fed tokens' attention must be read back to score the cached ones.
    pub fn scores_attention(&self) -> bool {
        matches!(self, AttentionPolicy::Budget { .. })
    }

    /// The most tokens one forward pass may take, so that an eviction can always make room.
    pub fn chunk(&self, capacity: usize, prefill_chunk: usize) -> usize {
        match *self {
            AttentionPolicy::Full => prefill_chunk,
            AttentionPolicy::Lambda { n_global, n_local } => {
                prefill_chunk.min(capacity - n_global - n_local)
            }
            AttentionPolicy::Budget {
                budget,
                n_first,
                n_recent,
            } => BUDGET_CHUNK.min((budget - n_first - n_recent) / 2).max(1),
        }
    }

    /// The mask of `t` new tokens after `cached` ones: Λ where it hides something, else causal
    /// (so a window longer than the text gives exactly the unpoliced numbers).
    pub fn mask(&self, cached: usize, t: usize) -> Mask {
        let AttentionPolicy::Lambda { n_global, n_local } = *self else {
            return Mask::Causal;
        };
        if cached + t <= n_global + n_local {
            return Mask::Causal;
        }
        let total = cached + t;
        let rows = (0..t)
            .flat_map(|i| (0..total).map(move |k| (cached + i, k)))
            .map(|(slot, k)| k <= slot && (k < n_global || slot - k < n_local))
            .collect();
        Mask::Explicit(rows)
    }

    /// What to evict before `incoming` tokens join `cached` ones in a cache of `capacity`:
    /// `None` while they fit. `attention_received` scores each cached slot (for a budget).
    pub fn evict(
        &self,
        cached: usize,
        incoming: usize,
        capacity: usize,
        attention_received: &[f32],
    ) -> Option<Eviction> {
        match *self {
            AttentionPolicy::Full => None,
            AttentionPolicy::Lambda { n_global, n_local } => {
                if cached + incoming <= capacity || cached <= n_global + n_local {
                    return None;
                }
                // The start tokens stay; the window moves back to follow them.
                let first_recent = cached - n_local;
                let moved_back = (first_recent - n_global) as i32;
                let keep: Vec<usize> = (0..n_global).chain(first_recent..cached).collect();
                let shifts = keep
                    .iter()
                    .map(|&slot| if slot < n_global { 0 } else { -moved_back })
                    .collect();
                Some(Eviction { keep, shifts })
            }
            AttentionPolicy::Budget {
                budget,
                n_first,
                n_recent,
            } => {
                if cached + incoming <= budget {
                    return None;
                }
                let room = budget.saturating_sub(incoming);
                let first_recent = cached.saturating_sub(n_recent).max(n_first);
                let middle_room = room.saturating_sub(n_first + (cached - first_recent));
                // The middle's most attended tokens (ties: the later one).
                let mut middle: Vec<usize> = (n_first.min(cached)..first_recent).collect();
                middle.sort_by(|&a, &b| {
                    let score = |s: usize| attention_received.get(s).copied().unwrap_or(0.0);
                    score(b).total_cmp(&score(a)).then(b.cmp(&a))
                });
                middle.truncate(middle_room);
                let mut keep: Vec<usize> = (0..n_first.min(cached))
                    .chain(middle)
                    .chain(first_recent..cached)
                    .collect();
                keep.sort_unstable();
                let shifts = vec![0; keep.len()];
                Some(Eviction { keep, shifts })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_cli_forms() {
        assert_eq!(
            AttentionPolicy::parse("lambda:4,512").unwrap(),
            AttentionPolicy::Lambda {
                n_global: 4,
                n_local: 512
            }
        );
        assert_eq!(
            AttentionPolicy::parse("window:64").unwrap(),
            AttentionPolicy::Lambda {
                n_global: 0,
                n_local: 64
            }
        );
        assert_eq!(
            AttentionPolicy::parse("budget:100").unwrap(),
            AttentionPolicy::Budget {
                budget: 100,
                n_first: 4,
                n_recent: 25
            }
        );
        assert_eq!(
            AttentionPolicy::parse("full").unwrap(),
            AttentionPolicy::Full
        );
        for bad in ["lambda:4", "lambda:a,b", "budget:", "sliding:3"] {
            assert!(AttentionPolicy::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lambda_mask_sees_the_start_and_the_window() {
        let policy = AttentionPolicy::Lambda {
            n_global: 1,
            n_local: 2,
        };
        assert_eq!(policy.mask(1, 2), Mask::Causal);
        let rows = policy.mask(3, 2).to_rows(2, 3);
        #[rustfmt::skip]
        assert_eq!(rows, [
            true, false, true, true, false, // slot 3 sees 0, 2, 3
            true, false, false, true, true, // slot 4 sees 0, 3, 4
        ]);
    }

    #[test]
    fn lambda_evicts_the_middle_and_moves_the_window_back() {
        let policy = AttentionPolicy::Lambda {
            n_global: 2,
            n_local: 3,
        };
        assert_eq!(policy.evict(9, 1, 10, &[]), None);
        let eviction = policy.evict(10, 1, 10, &[]).unwrap();
        assert_eq!(eviction.keep, [0, 1, 7, 8, 9]);
        assert_eq!(eviction.shifts, [0, 0, -5, -5, -5]);
    }

    #[test]
    fn budget_keeps_start_recent_and_the_most_attended() {
        let policy = AttentionPolicy::Budget {
            budget: 6,
            n_first: 1,
            n_recent: 2,
        };
        let scores = [9.0, 0.1, 5.0, 0.2, 3.0, 0.0, 1.0, 1.0];
        assert_eq!(policy.evict(5, 1, 10, &scores), None);
        // 8 cached + 1 incoming in 6: slot 0, the two best of 1..6 (2 and 4), slots 6 and 7.
        let eviction = policy.evict(8, 1, 10, &scores).unwrap();
        assert_eq!(eviction.keep, [0, 2, 4, 6, 7]);
        assert!(eviction.shifts.iter().all(|&s| s == 0));
    }

    #[test]
    fn checks_against_the_cache() {
        assert!(AttentionPolicy::parse("lambda:4,2044")
            .unwrap()
            .check(2048)
            .is_err());
        assert!(AttentionPolicy::parse("lambda:4,1000")
            .unwrap()
            .check(2048)
            .is_ok());
        assert!(AttentionPolicy::parse("window:0")
            .unwrap()
            .check(2048)
            .is_err());
        assert!(AttentionPolicy::parse("budget:4096")
            .unwrap()
            .check(2048)
            .is_err());
        assert!(AttentionPolicy::parse("budget:5,2,2")
            .unwrap()
            .check(2048)
            .is_err());
    }
}
