//! Software prefetch of the weights for one token's matmul (decode).
//!
//! Decode reads every weight once per token, in order, and on this project's x86 machines the
//! hardware prefetchers alone kept a one-token kernel at about half of what one core can
//! stream: Gemma 3's 178 MB Q8_0 output matrix went through at 6 GB/s against 13 GB/s for a
//! plain read of the same size. Asking for the line 4 KiB ahead of the one being multiplied
//! made that matrix 1.7× and a 49152 × 1536 Q4_1 matrix 1.35× faster (`qmm_speed`; 2 KiB
//! gained less, 8 and 16 KiB no more); every block type gained 12–70%, with the AVX2 kernels
//! as with the AVX-512 ones, and whole-model decode 1.45× (SmolLM2) and 1.55× (Gemma 3). A prefetch never faults, so running past the end of a
//! row or of the matrix costs a wasted request and nothing else. Tiles of tokens (prefill)
//! spend long enough on each block that the hardware prefetchers keep up: they do not ask.

use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};

/// How far ahead of the block being multiplied a one-token kernel asks for its weights.
const AHEAD: usize = 4096;
const LINE: usize = 64;

/// When the kernel runs one token (`T == 1`), asks for the cache lines of the `bytes` bytes
/// that lie [`AHEAD`] bytes past `block`.
#[inline(always)]
pub(super) fn weights_ahead<const T: usize>(block: *const u8, bytes: usize) {
    if T == 1 {
        let mut offset = 0;
        while offset < bytes {
            // `wrapping_add`: the address may lie past the weights' allocation; a prefetch
            // is only a hint and never dereferences it.
            let p = block.wrapping_add(AHEAD + offset) as *const i8;
            // SAFETY: prefetch is SSE (every x86-64 CPU) and reads nothing that could fault.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
            offset += LINE;
        }
    }
}
