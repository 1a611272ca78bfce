//! Argument and shape checks for every [`super::Backend`] op, shared by both backends: each op
//! calls its check first, so a wrong shape is refused with the same message on the CPU and on
//! WebGPU, before any index or dispatch depends on it.
//!
//! Shapes are `(rows, cols)` of 2-D tensors; matrices are `(out_features, in_features)`.

use super::{AttentionShape, Mask, Selection};
use crate::error::{Error, Result};

type Dims = (usize, usize);

fn invalid(message: String) -> Error {
    Error::InvalidRequest(message)
}

/// Token ids index a table of `vocab` rows.
pub fn embed(ids: &[u32], vocab: usize) -> Result<()> {
    match ids.iter().find(|&&id| id as usize >= vocab) {
        Some(bad) => Err(invalid(format!(
            "token id {bad} is outside the vocabulary ({vocab} tokens)"
        ))),
        None => Ok(()),
    }
}

/// `x` has as many features as every matrix has inputs.
pub fn matmul(x: Dims, matrices: &[Dims]) -> Result<()> {
    match matrices.iter().find(|&&(_, cols)| cols != x.1) {
        Some(&(_, cols)) => Err(invalid(format!(
            "matmul: input has {} features, the matrix expects {cols}",
            x.1
        ))),
        None => Ok(()),
    }
}

/// One gain per feature.
pub fn rms_norm(x: Dims, weight_len: usize) -> Result<()> {
    if weight_len != x.1 {
        return Err(invalid(format!(
            "rms_norm: {} features, {weight_len} weights",
            x.1
        )));
    }
    Ok(())
}

/// One position per row, whole heads of an even size.
pub fn rope(x: Dims, head_dim: usize, positions: &[u32]) -> Result<()> {
    let (tokens, features) = x;
    if positions.len() != tokens
        || head_dim == 0
        || !features.is_multiple_of(head_dim)
        || !head_dim.is_multiple_of(2)
    {
        return Err(invalid(format!(
            "rope: {tokens} tokens, {} positions, {features} features, head_dim {head_dim}",
            positions.len()
        )));
    }
    Ok(())
}

/// What an attention op needs to know of a layer's KV cache.
#[derive(Debug, Clone, Copy)]
pub struct CacheState {
    pub len: usize,
    pub capacity: usize,
    pub shape: AttentionShape,
}

/// `q` `(t, heads·head_dim)`, `k` and `v` `(t, kv_heads·head_dim)`, a cache of this shape with
/// room for `t` more, and (if explicit) a mask of `(t, cached + t)`.
pub fn attention(
    q: Dims,
    k: Dims,
    v: Dims,
    cache: CacheState,
    shape: AttentionShape,
    mask: &Mask,
) -> Result<()> {
    let AttentionShape {
        n_heads,
        n_kv_heads,
        head_dim,
    } = shape;
    if n_heads == 0 || n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) || head_dim == 0 {
        return Err(invalid(format!(
            "attention: {n_heads} query heads cannot share {n_kv_heads} key/value heads of {head_dim}"
        )));
    }
    let t = q.0;
    let kv_width = n_kv_heads * head_dim;
    if q.1 != n_heads * head_dim || k != (t, kv_width) || v != (t, kv_width) {
        return Err(invalid(format!(
            "attention: q {q:?}, k {k:?}, v {v:?} for {n_heads} query and {n_kv_heads} \
             key/value heads of {head_dim}"
        )));
    }
    if cache.shape != shape {
        return Err(invalid("attention: the cache has another shape".into()));
    }
    let total = cache.len + t;
    if total > cache.capacity {
        return Err(Error::ContextOverflow {
            prompt: total,
            context: cache.capacity,
        });
    }
    if let Mask::Explicit(visible) = mask {
        if visible.len() != t * total {
            return Err(invalid(format!(
                "attention: the mask has {} entries for {t} queries over {total} keys",
                visible.len()
            )));
        }
    }
    Ok(())
}

/// `q`, `k`, `v` all `(t, heads·head_dim)` with one decay per head.
pub fn retention(q: Dims, k: Dims, v: Dims, head_dim: usize, decays: &[f32]) -> Result<()> {
    let width = decays.len() * head_dim;
    if decays.is_empty() || head_dim == 0 || q.1 != width || k != q || v != q {
        return Err(invalid(format!(
            "retention: q {q:?}, k {k:?}, v {v:?} for {} heads of {head_dim}",
            decays.len()
        )));
    }
    Ok(())
}

/// Whole groups, one weight and one bias per feature.
pub fn group_norm(x: Dims, groups: usize, weight_len: usize, bias_len: usize) -> Result<()> {
    if groups == 0 || !x.1.is_multiple_of(groups) || weight_len != x.1 || bias_len != x.1 {
        return Err(invalid(format!(
            "group_norm: {} features in {groups} groups, {weight_len} weights, {bias_len} biases",
            x.1
        )));
    }
    Ok(())
}

/// A reshape keeps the number of values.
pub fn reshape(x: Dims, rows: usize, cols: usize) -> Result<()> {
    if rows.checked_mul(cols) != Some(x.0 * x.1) {
        return Err(invalid(format!(
            "reshape: {}x{} cannot be read as {rows}x{cols}",
            x.0, x.1
        )));
    }
    Ok(())
}

/// `column_affine` takes a row of scales and a row of shifts, one per column of `x`.
pub fn column_affine(x: Dims, coefficients: Dims) -> Result<()> {
    if coefficients != (2, x.1) {
        return Err(invalid(format!(
            "column_affine: coefficients of {}x{} for {} columns (want 2x{})",
            coefficients.0, coefficients.1, x.1, x.1
        )));
    }
    Ok(())
}

/// `splice_rows` puts whole rows of `x`'s width inside `x`.
pub fn splice_rows(x: Dims, first_row: usize, rows: Dims) -> Result<()> {
    if rows.1 != x.1 || first_row.checked_add(rows.0).is_none_or(|end| end > x.0) {
        return Err(invalid(format!(
            "splice_rows: {}x{} at row {first_row} does not fit in {}x{}",
            rows.0, rows.1, x.0, x.1
        )));
    }
    Ok(())
}

/// `cache_keep` keeps ascending slots the cache holds, one shift each.
pub fn cache_keep(cached: usize, keep: &[usize], shifts: &[i32]) -> Result<()> {
    if shifts.len() != keep.len() {
        return Err(invalid(format!(
            "cache_keep: {} slots but {} shifts",
            keep.len(),
            shifts.len()
        )));
    }
    if keep.windows(2).any(|w| w[0] >= w[1]) || keep.last().is_some_and(|&last| last >= cached) {
        return Err(invalid(format!(
            "cache_keep: the slots to keep must ascend and stay below the {cached} cached"
        )));
    }
    Ok(())
}

/// Element-wise ops take two tensors of one shape.
pub fn same_shape(op: &str, a: Dims, b: Dims) -> Result<()> {
    if a != b {
        return Err(invalid(format!(
            "{op}: shapes {}x{} and {}x{} differ",
            a.0, a.1, b.0, b.1
        )));
    }
    Ok(())
}

/// At least one row of logits, and at least one candidate asked for.
pub fn top_k(logits: Dims, selection: &Selection) -> Result<()> {
    if logits.0 == 0 || logits.1 == 0 || selection.k == 0 {
        return Err(invalid(format!(
            "top_k: {} candidates asked of {}x{} logits",
            selection.k, logits.0, logits.1
        )));
    }
    if !selection.penalty.is_finite() || selection.penalty <= 0.0 {
        return Err(invalid(format!(
            "the repetition penalty must be a positive number, not {}",
            selection.penalty
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: AttentionShape = AttentionShape {
        n_heads: 6,
        n_kv_heads: 2,
        head_dim: 4,
    };

    fn cache(len: usize, capacity: usize) -> CacheState {
        CacheState {
            len,
            capacity,
            shape: SHAPE,
        }
    }

    #[test]
    fn attention_refuses_what_would_index_out_of_bounds() {
        let ok = attention((3, 24), (3, 8), (3, 8), cache(2, 8), SHAPE, &Mask::Causal);
        assert!(ok.is_ok());
        // A k of the wrong width (a header's head_count_kv that disagrees with the tensor).
        let wide = attention((3, 24), (3, 12), (3, 12), cache(2, 8), SHAPE, &Mask::Causal);
        assert!(wide.unwrap_err().to_string().contains("key/value heads"));
        // No room left.
        let full = attention((3, 24), (3, 8), (3, 8), cache(6, 8), SHAPE, &Mask::Causal);
        assert!(matches!(
            full,
            Err(Error::ContextOverflow { prompt: 9, .. })
        ));
        // A mask of the wrong size.
        let mask = Mask::Explicit(vec![true; 3 * 4]);
        assert!(attention((3, 24), (3, 8), (3, 8), cache(2, 8), SHAPE, &mask).is_err());
        // Heads that do not group.
        let odd = AttentionShape {
            n_kv_heads: 4,
            ..SHAPE
        };
        assert!(attention((3, 24), (3, 16), (3, 16), cache(0, 8), odd, &Mask::Causal).is_err());
    }

    #[test]
    fn small_checks() {
        assert!(embed(&[0, 9], 10).is_ok());
        assert!(embed(&[10], 10).is_err());
        assert!(matmul((2, 8), &[(3, 8), (4, 8)]).is_ok());
        assert!(matmul((2, 8), &[(3, 8), (4, 7)]).is_err());
        assert!(rope((2, 8), 4, &[0, 1]).is_ok());
        assert!(rope((2, 8), 3, &[0, 1]).is_err());
        assert!(rope((2, 8), 0, &[0, 1]).is_err());
        assert!(rope((2, 8), 4, &[0]).is_err());
        assert!(retention((5, 8), (5, 8), (5, 8), 4, &[0.9, 0.8]).is_ok());
        assert!(retention((5, 8), (4, 8), (5, 8), 4, &[0.9, 0.8]).is_err());
        assert!(group_norm((2, 8), 2, 8, 8).is_ok());
        assert!(group_norm((2, 8), 3, 8, 8).is_err());
        assert!(same_shape("add", (2, 3), (3, 2)).is_err());
        assert!(reshape((2, 6), 4, 3).is_ok());
        assert!(reshape((2, 6), 5, 3).is_err());
        assert!(top_k((1, 5), &Selection::greedy()).is_ok());
        let bad_penalty = Selection {
            penalty: f32::NAN,
            ..Selection::greedy()
        };
        assert!(top_k((1, 5), &bad_penalty).is_err());
    }
}
