//! Attention over a key/value cache on the CPU, with grouped-query heads and an explicit mask:
//! the CPU backend's attention, and the twin the WebGPU attention kernel is tested against.
//!
//! Plain loops on f32 slices (`attend_group.rs`, compiled for the CPU's widest vectors): at
//! decode time each head attends a single query over a few hundred keys, where a general
//! matmul costs more in setup than in arithmetic; a prompt's queries read the keys transposed.
//! The cache itself is in `kv_cache.rs`.
//!
//! The softmax normaliser and the weighted sum of values accumulate in f64, so the result does
//! not depend on the order of the keys: Set-Based Prompting reorders set members in the cache
//! and must get the very same numbers.

use super::attend_group::{attend_group_kernel, KeyTiles};
pub use super::attend_group::{dot, softmax_in_place};
pub use super::kv_cache::KvCache;
use crate::backend::{AttentionShape, Mask};

/// Query positions per job in a prefill: each block of values is read once for them all.
const POSITIONS_PER_JOB: usize = 8;

/// Attends the `t` newest queries `q` `(t, n_heads·head_dim)` over everything in `cache`
/// (which already holds their own keys) under `mask`. Returns `(t, n_heads·head_dim)` and,
/// when asked, the probabilities `(n_heads·t, cache.len)`, head-major.
pub fn attend(
    q: &[f32],
    t: usize,
    cache: &KvCache,
    mask: &Mask,
    want_probs: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let AttentionShape {
        n_heads,
        n_kv_heads,
        head_dim,
    } = cache.shape;
    let total = cache.len;
    let cached = total - t;
    let group = n_heads / n_kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut out = vec![0.0f32; t * n_heads * head_dim];
    let mut probs = if want_probs {
        vec![0.0f32; n_heads * t * total]
    } else {
        Vec::new()
    };
    let visible = mask.to_rows(t, cached); // (t, total)
    let attend_group = attend_group_kernel();
    // Several queries (a prefill) read the keys transposed, a copy that costs about one
    // query's scores to make.
    let tiles = (t >= 4).then(|| KeyTiles::new(cache));

    // One job per (a few query positions, key group): the group's heads share each key they
    // read, and the heads of all the job's positions each block of values (a prefill's values
    // pass waits on reading them). At decode, where whole groups would leave a thread idle
    // for part of the step (Gemma 3 270M's one group, SmolLM2's three on two threads), each
    // group is split into parts of its heads ([`decode_parts`]), at the cost of each part
    // reading the group's keys and values on its own. A prefill whose groups and positions
    // are fewer than the threads takes one job per head. Each job writes its own positions'
    // and heads' output and probability rows, so the split changes no number.
    let threads = super::pool::global().threads();
    let per_job = if t >= POSITIONS_PER_JOB * threads {
        POSITIONS_PER_JOB
    } else {
        1
    };
    let blocks = t.div_ceil(per_job);
    let parts = if blocks == 1 {
        decode_parts(n_kv_heads, group, threads)
    } else if n_kv_heads * blocks < threads {
        group
    } else {
        1
    };
    // Each group's heads in `parts` runs as even as can be, the larger runs of every group
    // first (the pool hands out jobs in order, so the last jobs to start are short ones).
    let mut head_runs: Vec<std::ops::Range<usize>> = (0..n_kv_heads)
        .flat_map(|g| {
            (0..parts)
                .map(move |p| g * group + p * group / parts..g * group + (p + 1) * group / parts)
        })
        .collect();
    head_runs.sort_by_key(|run| std::cmp::Reverse(run.len()));
    let out_ptr = SharedOut(out.as_mut_ptr());
    let probs_ptr = SharedOut(probs.as_mut_ptr());
    let job = |index: usize| {
        // The last positions first: under a causal mask they see the most keys, and the
        // pool hands out jobs in order, so the run ends on short jobs rather than long ones.
        let (j, b) = (index / blocks, blocks - 1 - index % blocks);
        let heads = head_runs[j].clone();
        let positions = b * per_job..((b + 1) * per_job).min(t);
        let g = heads.start / group;
        let width = heads.len() * head_dim;
        let at = |i: usize| i * n_heads * head_dim + heads.start * head_dim;
        let queries: Vec<f32> = positions // (positions, heads, head_dim)
            .clone()
            .flat_map(|i| &q[at(i)..at(i) + width])
            .copied()
            .collect();
        let rows = &visible[positions.start * total..positions.end * total];
        let mut scores = vec![0.0f32; positions.len() * heads.len() * total];
        let mut acc = vec![0.0f64; positions.len() * width];
        attend_group(
            &queries,
            rows,
            cache,
            tiles.as_ref(),
            g,
            scale,
            &mut scores,
            &mut acc,
        );
        // SAFETY: job (j, b) alone writes out[i, its heads] and the probability rows h·t + i
        // of its heads h, for its positions i; both buffers outlive the parallel run.
        unsafe {
            for (i, acc) in positions.zip(acc.chunks_exact(width)) {
                let dst = std::slice::from_raw_parts_mut(out_ptr.at(at(i)), width);
                for (d, &a) in dst.iter_mut().zip(acc) {
                    *d = a as f32;
                }
            }
            if want_probs {
                let rows = scores.chunks_exact(total);
                let owners = (b * per_job..).flat_map(|i| heads.clone().map(move |h| (i, h)));
                for ((i, h), scores) in owners.zip(rows) {
                    let dst =
                        std::slice::from_raw_parts_mut(probs_ptr.at((h * t + i) * total), total);
                    dst.copy_from_slice(scores);
                }
            }
        }
    };
    super::pool::global().run(head_runs.len() * blocks, &job);
    (out, want_probs.then_some(probs))
}

/// Into how many parts to split each key group's heads for one query (decode): the fewest
/// (the more heads share a part, the fewer times the group's keys and values are read) that
/// keep the busiest of `threads` threads as short as any split can, in heads, with the parts
/// handed out largest first to the least busy thread.
fn decode_parts(groups: usize, heads_per_group: usize, threads: usize) -> usize {
    let busiest = |parts: usize| {
        let mut sizes: Vec<usize> = (0..groups)
            .flat_map(|_| {
                (0..parts)
                    .map(move |p| (p + 1) * heads_per_group / parts - p * heads_per_group / parts)
            })
            .collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        let mut load = vec![0; threads.max(1)];
        for size in sizes {
            let least = load.iter_mut().min().expect("a thread");
            *least += size;
        }
        load.into_iter().max().unwrap_or(0)
    };
    (1..=heads_per_group.max(1))
        .min_by_key(|&parts| (busiest(parts), parts))
        .unwrap_or(1)
}

struct SharedOut(*mut f32);
// SAFETY: jobs write disjoint parts (see `attend`).
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// A method (not the field) so closures capture the whole `Sync` wrapper.
    fn at(&self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_close, SeededRng};

    /// Straight from the definition, one head and query at a time, in f64.
    fn naive(
        q: &[f32],
        keys: &[Vec<f32>],
        values: &[Vec<f32>],
        shape: AttentionShape,
        t: usize,
        mask: &Mask,
    ) -> Vec<f32> {
        let AttentionShape {
            n_heads,
            n_kv_heads,
            head_dim,
        } = shape;
        let total = keys.len();
        let cached = total - t;
        let mut out = vec![0.0; t * n_heads * head_dim];
        for i in 0..t {
            for h in 0..n_heads {
                let g = h / (n_heads / n_kv_heads);
                let qv = &q[i * n_heads * head_dim + h * head_dim..][..head_dim];
                let mut s: Vec<f64> = (0..total)
                    .map(|j| {
                        if mask.visible(i, j, cached, total) {
                            let k = &keys[j][g * head_dim..][..head_dim];
                            qv.iter()
                                .zip(k)
                                .map(|(a, b)| (*a as f64) * (*b as f64))
                                .sum::<f64>()
                                / (head_dim as f64).sqrt()
                        } else {
                            f64::NEG_INFINITY
                        }
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                s.iter_mut().for_each(|v| *v = (*v - m).exp() / z);
                for x in 0..head_dim {
                    out[i * n_heads * head_dim + h * head_dim + x] = (0..total)
                        .map(|j| s[j] * values[j][g * head_dim + x] as f64)
                        .sum::<f64>()
                        as f32;
                }
            }
        }
        out
    }

    // Every kernel — the baseline and the one for this CPU's widest vectors, reading the keys
    // one by one or transposed — gives the numbers of the plain per-head loops it replaced,
    // to the bit: under a mask with holes (as Set-Based Prompting makes), for key counts that
    // leave partial tiles, and a head size that leaves a remainder after the eight partial
    // sums and the chunks of values.
    #[test]
    fn every_kernel_gives_the_plain_loops_bits() {
        use super::super::attend_group::{
            attend_group_128_bits, attend_group_baseline, attend_group_kernel,
        };
        let shape = AttentionShape {
            n_heads: 6,
            n_kv_heads: 1,
            head_dim: 76,
        };
        let (mut rng, t, d) = (SeededRng::new(7), 37, shape.head_dim);
        let mut cache = KvCache::new(shape, t).unwrap();
        cache.append(&rng.vec_f32(t * d, 1.0), &rng.vec_f32(t * d, 1.0), t);
        let tiles = KeyTiles::new(&cache);
        let mut visible = Mask::Causal.to_rows(t, 0);
        for i in (0..t * t).step_by(5) {
            visible[i] = false;
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for i in [0, 5, 20, 36] {
            let q = rng.vec_f32(shape.n_heads * d, 3.0);
            let row = &visible[i * t..(i + 1) * t];
            // The loops as they were: per head, scores, softmax, then the f64 sum key by key.
            let (mut want_scores, mut want_out) = (Vec::new(), Vec::new());
            for query in q.chunks_exact(d) {
                let mut scores: Vec<f32> = (0..t)
                    .map(|j| match row[j] {
                        true => dot(query, cache.key(0, j)) * 0.125,
                        false => f32::NEG_INFINITY,
                    })
                    .collect();
                softmax_in_place(&mut scores);
                let mut acc = vec![0.0f64; d];
                for (j, &p) in scores.iter().enumerate() {
                    if p > 0.0 {
                        for (a, &v) in acc.iter_mut().zip(cache.value(0, j)) {
                            *a += p as f64 * v as f64;
                        }
                    }
                }
                want_scores.extend(scores);
                want_out.extend(acc.into_iter().map(|a| a as f32));
            }
            for (name, f, tiles) in [
                ("baseline, keys one by one", attend_group_baseline(), None),
                ("baseline, tiles", attend_group_baseline(), Some(&tiles)),
                ("128-bit, keys one by one", attend_group_128_bits(), None),
                ("128-bit, tiles", attend_group_128_bits(), Some(&tiles)),
                ("this CPU's, keys one by one", attend_group_kernel(), None),
                ("this CPU's, tiles", attend_group_kernel(), Some(&tiles)),
            ] {
                let (mut scores, mut acc) = (vec![0.0; 6 * t], vec![0.0f64; 6 * d]);
                f(&q, row, &cache, tiles, 0, 0.125, &mut scores, &mut acc);
                let out: Vec<f32> = acc.into_iter().map(|a| a as f32).collect();
                assert_eq!(
                    bits(&scores),
                    bits(&want_scores),
                    "query {i}: {name}, scores"
                );
                assert_eq!(bits(&out), bits(&want_out), "query {i}: {name}, output");
            }
        }
    }

    #[test]
    fn attend_matches_the_definition() {
        let shape = AttentionShape {
            n_heads: 6,
            n_kv_heads: 2,
            head_dim: 12,
        };
        let mut rng = SeededRng::new(5);
        let kv = shape.n_kv_heads * shape.head_dim;
        let (first, second) = (7, 3);
        let mut cache = KvCache::new(shape, 16).unwrap();
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for t in [first, second] {
            let k = rng.vec_f32(t * kv, 1.0);
            let v = rng.vec_f32(t * kv, 1.0);
            let q = rng.vec_f32(t * shape.n_heads * shape.head_dim, 1.0);
            keys.extend(k.chunks(kv).map(|c| c.to_vec()));
            values.extend(v.chunks(kv).map(|c| c.to_vec()));
            cache.append(&k, &v, t);
            let (got, probs) = attend(&q, t, &cache, &Mask::Causal, true);
            let want = naive(&q, &keys, &values, shape, t, &Mask::Causal);
            check_close("attention", &got, &want, 1e-5, 1e-4).unwrap();
            let probs = probs.unwrap();
            for row in probs.chunks(cache.len) {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn decode_splits_groups_only_where_threads_would_wait() {
        // (groups, heads per group, threads) → parts per group.
        for (case, want) in [
            ((3, 3, 1), 1), // one thread: whole groups
            ((3, 3, 2), 2), // SmolLM2 on two threads: runs of 2 and 1 heads (5 heads each way)
            ((3, 3, 3), 1), // a group per thread
            ((3, 3, 4), 1), // a fourth thread would not shorten the busiest
            ((3, 3, 8), 2), // a head per job would leave the busiest with two all the same
            ((1, 4, 2), 2), // Gemma 3 270M on two threads: two heads a job
            ((1, 4, 4), 4),
            ((4, 2, 2), 1),
        ] {
            let (groups, heads, threads) = case;
            assert_eq!(decode_parts(groups, heads, threads), want, "{case:?}");
        }
    }

    // However the pool splits a decoding step's heads (by the machine's threads), each head's
    // output and probabilities are those of the same query's position in a prefill, to the bit.
    #[test]
    fn a_decoded_query_equals_its_place_in_a_prefill() {
        for (n_heads, n_kv_heads) in [(9, 3), (4, 1), (6, 2)] {
            let shape = AttentionShape {
                n_heads,
                n_kv_heads,
                head_dim: 64,
            };
            let (cache, q) = crate::testing::random_prompt_attention(shape, 40, 11);
            let (all, all_probs) = attend(&q, 40, &cache, &Mask::Causal, true);
            let width = n_heads * 64;
            let (last, last_probs) = attend(&q[39 * width..], 1, &cache, &Mask::Causal, true);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&last), bits(&all[39 * width..]), "{shape:?}: output");
            let rows = |of: fn(&KvCache, usize, usize) -> &[f32]| -> Vec<Vec<f32>> {
                (0..40)
                    .map(|j| {
                        (0..n_kv_heads)
                            .flat_map(|g| of(&cache, g, j).to_vec())
                            .collect()
                    })
                    .collect()
            };
            let (keys, values) = (rows(KvCache::key), rows(KvCache::value));
            let want = naive(&q[39 * width..], &keys, &values, shape, 1, &Mask::Causal);
            check_close(&format!("{shape:?}"), &last, &want, 1e-5, 1e-4).unwrap();
            let (all_probs, last_probs) = (all_probs.unwrap(), last_probs.unwrap());
            for h in 0..n_heads {
                let row = &all_probs[(h * 40 + 39) * 40..][..40];
                assert_eq!(
                    bits(&last_probs[h * 40..][..40]),
                    bits(row),
                    "{shape:?}: head {h}"
                );
            }
        }
    }
}
