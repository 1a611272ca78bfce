//! Every WGSL kernel against its CPU twin, natively (lavapipe) and in Chromium (SwiftShader).
//!
//! Each check is an async function; `gpu_test!` turns it into a native `#[test]` and a
//! `wasm_bindgen_test`. Where no adapter exists the native test says so and passes, unless
//! `GLASSBOX_REQUIRE_GPU=1` (set by `cargo xtask test`), where it fails.

use engine::gpu::{kernels, GpuContext};
use engine::testing::{check_close, SeededRng};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

macro_rules! gpu_test {
    ($name:ident, $check:ident) => {
        #[cfg(not(target_arch = "wasm32"))]
        #[test]
        fn $name() {
            pollster::block_on(async {
                match context().await {
                    Some(ctx) => $check(&ctx).await,
                    None => {}
                }
            })
        }

        #[cfg(target_arch = "wasm32")]
        #[wasm_bindgen_test::wasm_bindgen_test]
        async fn $name() {
            let ctx = context()
                .await
                .expect("Chromium should offer a WebGPU adapter");
            $check(&ctx).await
        }
    };
}

async fn context() -> Option<GpuContext> {
    match GpuContext::new().await {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            let required = std::env::var("GLASSBOX_REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(!required, "GLASSBOX_REQUIRE_GPU=1 but: {e}");
            eprintln!("skipped: {e}");
            None
        }
    }
}

async fn read_f32(ctx: &GpuContext, buffer: &wgpu::Buffer, n: usize) -> Vec<f32> {
    let bytes = ctx.read_back(buffer, n * 4).await.expect("read back");
    bytemuck::pod_collect_to_vec(&bytes)
}

async fn check_add(ctx: &GpuContext) {
    let cache = kernels::PipelineCache::default();
    let mut rng = SeededRng::new(7);
    // Sizes around and beyond the workgroup size, none a multiple of 256 but one.
    for n in [1usize, 255, 256, 257, 1000, 70_001] {
        let a = rng.vec_f32(n, 4.0);
        let b = rng.vec_f32(n, 4.0);
        let a_buf = ctx.storage_buffer("a", bytemuck::cast_slice(&a));
        let b_buf = ctx.storage_buffer("b", bytemuck::cast_slice(&b));
        let out = ctx.empty_buffer("out", n * 4);
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        kernels::elementwise::add(ctx, &cache, &mut encoder, &a_buf, &b_buf, &out, n as u32);
        ctx.queue.submit([encoder.finish()]);
        let got = read_f32(ctx, &out, n).await;
        let want = kernels::elementwise::add_cpu(&a, &b);
        check_close(&format!("add n={n}"), &got, &want, 0.0, 0.0).unwrap();
    }
}
gpu_test!(add_matches_cpu, check_add);
