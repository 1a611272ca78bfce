//! What the kernel tests share (`cpu_kernels.rs`, `prefill_tiles.rs`): tests that run natively
//! and in the browser, and the weight types they cover. Unlike `common`, nothing here loads a
//! model, so it builds for wasm too.

use engine::gguf::GgmlType;

/// A test that runs natively and in the browser.
macro_rules! dual_test {
    ($name:ident, $body:block) => {
        #[cfg_attr(not(target_arch = "wasm32"), test)]
        #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
        fn $name() $body
    };
}
pub(crate) use dual_test;

/// Every weight type: the block types with 16-bit activations, then the float ones.
pub const TYPES: [GgmlType; 11] = [
    GgmlType::Q4_1,
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F32,
];
