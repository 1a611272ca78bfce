//! GELU (tanh form) as one fused op with a fused backward pass.
//!
//! candle's own `gelu()` computes the same function, but on the CPU it spends a third of a
//! training step there: glibc's `tanhf` goes through `expm1f`, and the backward pass is a dozen
//! separate element-wise tensors (two `powf`, another `tanh`). Here both passes are one loop, and
//! tanh comes from `exp`, which is fast: tanh(z) = 1 − 2 / (1 + e^(2z)).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// √(2/π).
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const CUBIC: f32 = 0.044_715;

fn tanh(z: f32) -> f32 {
    // e^(2z) overflows to ∞ for large z, which still gives 1; for very negative z it gives −1.
    1.0 - 2.0 / (1.0 + (2.0 * z).exp())
}

/// gelu(x) = ½ x (1 + tanh(u)), u = √(2/π) (x + 0.044715 x³).
pub fn gelu(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + CUBIC * x * x * x);
    0.5 * x * (1.0 + tanh(u))
}

/// d gelu / dx = ½ (1 + t) + ½ x (1 − t²) √(2/π) (1 + 3 · 0.044715 x²), t = tanh(u).
pub fn gelu_derivative(x: f32) -> f32 {
    let u = SQRT_2_OVER_PI * (x + CUBIC * x * x * x);
    let t = tanh(u);
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * CUBIC * x * x)
}

struct FusedGelu;

impl CustomOp1 for FusedGelu {
    fn name(&self) -> &'static str {
        "fused-gelu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("fused-gelu wants a contiguous input".into()))?;
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("fused-gelu is f32 only")
        };
        let out = values[start..end].iter().map(|&x| gelu(x)).collect();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let xs = arg.flatten_all()?.to_vec1::<f32>()?;
        let grads = grad_res.flatten_all()?.to_vec1::<f32>()?;
        let grad_arg: Vec<f32> = xs
            .iter()
            .zip(&grads)
            .map(|(&x, &g)| g * gelu_derivative(x))
            .collect();
        Ok(Some(Tensor::from_vec(grad_arg, arg.shape(), arg.device())?))
    }
}

/// GELU (tanh form) of every element of an f32 tensor, with a gradient.
pub fn fused_gelu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(FusedGelu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn matches_candle_gelu_and_its_gradient() {
        let values: Vec<f32> = (0..401).map(|i| (i as f32 - 200.0) / 25.0).collect();
        let x = Var::new(values.as_slice(), &Device::Cpu).unwrap();
        let ours = fused_gelu(x.as_tensor()).unwrap();
        let theirs = x.as_tensor().gelu().unwrap();
        let (a, b) = (
            ours.to_vec1::<f32>().unwrap(),
            theirs.to_vec1::<f32>().unwrap(),
        );
        for (p, q) in a.iter().zip(&b) {
            assert!((p - q).abs() < 1e-5, "gelu {p} vs candle {q}");
        }
        let grad_ours = ours.sum_all().unwrap().backward().unwrap();
        let grad_theirs = theirs.sum_all().unwrap().backward().unwrap();
        let ga = grad_ours
            .get(x.as_tensor())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let gb = grad_theirs
            .get(x.as_tensor())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (i, (p, q)) in ga.iter().zip(&gb).enumerate() {
            assert!(
                (p - q).abs() < 1e-4,
                "x = {}: d gelu {p} vs candle {q}",
                values[i]
            );
        }
    }
}
