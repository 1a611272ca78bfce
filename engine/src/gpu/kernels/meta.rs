//! The `Meta` uniform of each WGSL family, mirrored field for field by a `#[repr(C)]` struct.
//!
//! A test reads every family's `struct Meta { … }` and checks it against the struct that says it
//! mirrors that family: same field names, order and scalar types, so a WGSL edit that the Rust
//! side misses (or the reverse) fails `cargo test` instead of scrambling a uniform.

use super::Family;

/// A uniform that mirrors the `struct Meta` of some families' WGSL.
pub trait WgslMeta: bytemuck::Pod {
    /// Field names and WGSL scalar types, in declaration order.
    const FIELDS: &'static [(&'static str, &'static str)];
    /// The families whose `struct Meta` this is.
    const FAMILIES: &'static [Family];
}

/// Declares a Meta struct together with its field list (for the WGSL check) and the families
/// whose `struct Meta` it mirrors. Every field is a 4-byte scalar, and uniform buffers want the
/// whole struct in rows of 16 bytes: both are checked when the crate compiles.
macro_rules! wgsl_meta {
    ($(#[$doc:meta])* $name:ident mirrors [$($family:ident),+] {
        $($(#[$field_doc:meta])* $field:ident: $ty:ident,)+
    }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
        pub struct $name {
            $($(#[$field_doc])* pub $field: $ty,)+
        }

        impl WgslMeta for $name {
            const FIELDS: &'static [(&'static str, &'static str)] =
                &[$((stringify!($field), stringify!($ty))),+];
            const FAMILIES: &'static [Family] = &[$(Family::$family),+];
        }

        const _: () = assert!(
            std::mem::size_of::<$name>() == 4 * <$name as WgslMeta>::FIELDS.len()
                && std::mem::size_of::<$name>() % 16 == 0
        );
    };
}

wgsl_meta! {
    /// `add`, `scale`, `silu_mul`, `gelu`, `gelu_mul`, `column_affine`.
    ElementwiseMeta mirrors [Elementwise] {
        /// Number of elements.
        n: u32,
        /// `scale` only.
        factor: f32,
        /// `column_affine` only: the row width.
        cols: u32,
        _pad: u32,
    }
}

wgsl_meta! {
    /// `gather`: embedding rows for token ids.
    EmbeddingMeta mirrors [Embedding] {
        /// Number of ids.
        tokens: u32,
        /// Embedding width.
        cols: u32,
        /// u32 words per table row.
        row_words: u32,
        /// The table part bound: rows `first_row .. first_row + part_rows`.
        first_row: u32,
        part_rows: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

wgsl_meta! {
    /// `matvec`, `matvec_rows`, `matmul_tiled`.
    MatmulMeta mirrors [Matmul] {
        /// Rows of the weight part bound.
        rows: u32,
        cols: u32,
        tokens: u32,
        /// u32 words per weight row.
        row_words: u32,
        /// Rows of the whole matrix: the width of `y`.
        out_rows: u32,
        /// Where the part's first row goes in `y`.
        row_offset: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

wgsl_meta! {
    RmsNormMeta mirrors [RmsNorm] {
        rows: u32,
        cols: u32,
        eps: f32,
        _pad: u32,
    }
}

wgsl_meta! {
    GroupNormMeta mirrors [GroupNorm] {
        rows: u32,
        cols: u32,
        groups: u32,
        eps: f32,
    }
}

wgsl_meta! {
    RopeMeta mirrors [Rope] {
        tokens: u32,
        /// heads · head_dim
        features: u32,
        head_dim: u32,
        /// 1: pairs (i, i + head_dim/2); 0: pairs (2i, 2i + 1).
        halves: u32,
    }
}

wgsl_meta! {
    KvKeepMeta mirrors [KvKeep] {
        kept: u32,
        kv_heads: u32,
        head_dim: u32,
        capacity: u32,
        /// 1: pairs (i, i + head_dim/2); 0: pairs (2i, 2i + 1).
        halves: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

wgsl_meta! {
    ActivationQuantMeta mirrors [ActivationQuant] {
        rows: u32,
        cols: u32,
        /// Outlier columns reach it.
        threshold: f32,
        /// 0: every column is rounded.
        keep_outliers: u32,
    }
}

wgsl_meta! {
    KvAppendMeta mirrors [KvAppend] {
        tokens: u32,
        kv_heads: u32,
        head_dim: u32,
        capacity: u32,
        /// Cached length before this append.
        start: u32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

wgsl_meta! {
    /// One uniform serves both halves of attention, so the values pass binds the very bytes the
    /// scores pass read; `attention_values.wgsl` names the two fields it ignores `_pad0`, `_pad1`.
    AttentionMeta mirrors [AttentionScores, AttentionValues] {
        /// New queries.
        tokens: u32,
        heads: u32,
        kv_heads: u32,
        head_dim: u32,
        /// Cached keys, the new ones included.
        total: u32,
        capacity: u32,
        /// 1: query i sees keys 0 ..= total - tokens + i; 0: read the mask bits.
        causal: u32,
        scale: f32,
    }
}

wgsl_meta! {
    SoftmaxMeta mirrors [Softmax] {
        rows: u32,
        cols: u32,
        _pad0: u32,
        _pad1: u32,
    }
}

wgsl_meta! {
    /// `penalize` and `top_one`.
    SelectMeta mirrors [Select] {
        /// Vocabulary size.
        n: u32,
        /// `penalize`: number of ids; `top_one`: the pick's slot (0 .. k).
        count: u32,
        penalty: f32,
        _pad: u32,
    }
}

wgsl_meta! {
    /// Every retention entry point.
    RetentionMeta mirrors [Retention] {
        t: u32,
        heads: u32,
        head_dim: u32,
        chunk: u32,
        scale: f32,
        _pad0: u32,
        _pad1: u32,
        _pad2: u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Fields = &'static [(&'static str, &'static str)];

    /// Every Meta struct: its name, fields, size and the families it mirrors.
    fn structs() -> [(&'static str, Fields, usize, &'static [Family]); 13] {
        [
            meta_entry::<ElementwiseMeta>(),
            meta_entry::<EmbeddingMeta>(),
            meta_entry::<MatmulMeta>(),
            meta_entry::<RmsNormMeta>(),
            meta_entry::<GroupNormMeta>(),
            meta_entry::<RopeMeta>(),
            meta_entry::<KvAppendMeta>(),
            meta_entry::<KvKeepMeta>(),
            meta_entry::<ActivationQuantMeta>(),
            meta_entry::<AttentionMeta>(),
            meta_entry::<SoftmaxMeta>(),
            meta_entry::<SelectMeta>(),
            meta_entry::<RetentionMeta>(),
        ]
    }

    fn meta_entry<T: WgslMeta>() -> (&'static str, Fields, usize, &'static [Family]) {
        (
            std::any::type_name::<T>(),
            T::FIELDS,
            std::mem::size_of::<T>(),
            T::FAMILIES,
        )
    }

    /// `(name, type)` of each field of the WGSL `struct Meta`, comments dropped.
    fn wgsl_meta_fields(source: &str) -> Vec<(String, String)> {
        let body = source
            .split_once("struct Meta {")
            .and_then(|(_, rest)| rest.split_once('}'))
            .map(|(body, _)| body)
            .expect("the family declares `struct Meta { … }`");
        body.lines()
            .map(|line| line.split("//").next().unwrap_or("").trim())
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (name, ty) = line
                    .trim_end_matches(',')
                    .split_once(':')
                    .unwrap_or_else(|| panic!("a Meta field reads `name: type`, not `{line}`"));
                (name.trim().to_string(), ty.trim().to_string())
            })
            .collect()
    }

    #[test]
    fn every_family_has_exactly_one_meta_struct() {
        for family in Family::ALL {
            let owners: Vec<_> = structs()
                .iter()
                .filter(|(_, _, _, families)| families.contains(&family))
                .map(|(name, ..)| *name)
                .collect();
            assert_eq!(owners.len(), 1, "{family:?} is mirrored by {owners:?}");
        }
    }

    #[test]
    fn meta_structs_match_the_wgsl() {
        for (name, fields, size, families) in structs() {
            assert_eq!(size, 4 * fields.len(), "{name}: every field is 4 bytes");
            assert_eq!(size % 16, 0, "{name}: uniforms come in rows of 16 bytes");
            for family in families {
                let wgsl = wgsl_meta_fields(family.source());
                let file = format!("{}.wgsl", family.name());
                assert_eq!(
                    wgsl.len(),
                    fields.len(),
                    "{name} has {} fields, {file} has {}",
                    fields.len(),
                    wgsl.len()
                );
                for (i, ((wgsl_name, wgsl_ty), (rust_name, rust_ty))) in
                    wgsl.iter().zip(fields.iter()).enumerate()
                {
                    // A padding field in WGSL is never read, so the shared attention uniform
                    // may carry data there; everywhere else names and types must agree.
                    if wgsl_name.starts_with("_pad") {
                        continue;
                    }
                    assert_eq!(
                        (wgsl_name.as_str(), wgsl_ty.as_str()),
                        (*rust_name, *rust_ty),
                        "field {i} of {name} and of `struct Meta` in {file}"
                    );
                }
            }
        }
    }

    #[test]
    fn f32_fields_are_their_bits() {
        let meta = AttentionMeta {
            tokens: 1,
            heads: 2,
            kv_heads: 3,
            head_dim: 4,
            total: 5,
            capacity: 6,
            causal: 1,
            scale: 0.125,
        };
        let words: [u32; 8] = bytemuck::cast(meta);
        assert_eq!(words, [1, 2, 3, 4, 5, 6, 1, 0.125f32.to_bits()]);
    }
}
