//! Float functions written out so that the compiler inlines and vectorizes them, where the
//! library's would be a call per element: e^x for the softmax of attention and for SiLU, and
//! the larger of two floats for the maxima of softmax and of activation blocks. The same
//! operations in the same order on every platform, so native and browser get the same bits.
//!
//! Why: `f32::exp` is glibc's natively and a software `expf` in wasm, where a prompt's
//! attention spent about an eighth of its time in it; in wasm `f32::max` is a call to `fmaxf`.
//!
//! Accuracy of [`exp`]: its f64 result is within about 3e-10 of e^x relative, so the f32 it
//! rounds to is the correctly rounded one or, rarely, its neighbour (at most 0.504 ulp from
//! e^x over the whole range, measured by the test below).

/// The larger of two floats: `f32::max` for every input here (a NaN `v` leaves `m`), inline.
#[inline(always)]
pub fn larger(m: f32, v: f32) -> f32 {
    if v > m {
        v
    } else {
        m
    }
}

/// 1.5 · 2^52: adding it to a number of magnitude < 2^51 leaves that number rounded to an
/// integer in the low bits of the sum.
const ROUND: f64 = 6_755_399_441_055_744.0;

/// e^x (0 for -∞ and below -104, ∞ above 89, NaN for NaN).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Past these bounds e^x is 0 or ∞ as an f32 already; inside them 2^k below is a normal f64.
    // (`clamp` compares; a NaN stays NaN.)
    let x = x.clamp(-104.0, 89.0);
    // e^x = 2^z = 2^k · 2^r, k the integer nearest z, |r| ≤ 1/2.
    let z = x as f64 * std::f64::consts::LOG2_E;
    let shifted = z + ROUND;
    let r = z - (shifted - ROUND);
    // 2^r = e^t, t = r·ln 2 (|t| < 0.35): Taylor to degree 8, remainder below 3e-10.
    let t = r * std::f64::consts::LN_2;
    let mut p = 1.0 / 40320.0;
    for c in [
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = p * t + c;
    }
    // 2^k from k's bits: the low bits of `shifted` are k (two's complement), and
    // (k + 1023) << 52 is the f64 2^k; ROUND's own bits vanish in the shift.
    let two_to_k = f64::from_bits(shifted.to_bits().wrapping_add(1023) << 52);
    (p * two_to_k) as f32
}

#[cfg(test)]
mod tests {
    use super::exp;

    /// Distance from e^x (in f64) in units of the last place of the f32 nearest it.
    fn ulps(x: f32) -> f64 {
        let want = (x as f64).exp();
        let nearest = want as f32;
        let ulp = (f32::from_bits(nearest.to_bits() + 1) - nearest) as f64;
        (exp(x) as f64 - want).abs() / ulp
    }

    #[test]
    fn within_about_half_an_ulp_over_the_range_softmax_and_silu_use() {
        const STEPS: u32 = 1 << 20;
        let (mut worst, mut at) = (0.0f64, 0.0f32);
        for i in 0..STEPS {
            let x = -104.0 + 192.5 * i as f32 / STEPS as f32;
            let u = ulps(x);
            if u > worst {
                (worst, at) = (u, x);
            }
        }
        assert!(worst < 0.51, "{worst} ulp at {at}");
    }

    #[test]
    fn matches_the_library_where_the_result_is_exact_or_saturates() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        // The smallest results: subnormal, rounded once from the f64.
        assert_eq!(exp(-103.0), (-103.0f64).exp() as f32);
        assert_eq!(exp(-88.0), (-88.0f64).exp() as f32);
        assert_eq!(exp(88.0), (88.0f64).exp() as f32);
    }
}
