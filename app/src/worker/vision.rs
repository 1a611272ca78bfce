//! The Vision view's side of the worker: the MNIST ViT and ViR, fetched on first use and run on
//! the CPU (wasm). They are small enough (tens of milliseconds an image) that the WebGPU tier
//! would gain nothing here, and the chat model keeps the GPU device.

use super::{js, post, Worker};
use crate::protocol::{FormRun, VisionOutput, VisionReply, VisionReport, VisionRequest};
use engine::analysis::rollout::vision_rollout;
use engine::backend::RetentionForm;
use engine::cpu::retention::working_floats;
use engine::models::vision::Classification;
use engine::runtime::{Device, VisionEngine};

pub const VIT_URL: &str = "models/vit-mnist.gguf";
pub const VIR_URL: &str = "models/vir-mnist.gguf";
/// Timed runs per retention form (the median is shown).
const TIMED_RUNS: usize = 5;

impl Worker {
    pub(super) async fn on_vision(&mut self, request: VisionRequest) {
        match request {
            VisionRequest::Classify {
                request,
                image,
                chunk,
            } => {
                if self.vision.is_none() {
                    match VisionModels::load().await {
                        Ok(models) => self.vision = Some(models),
                        Err(e) => {
                            let result = Err(format!("the vision models did not load: {e}"));
                            post(VisionReply::Classified { request, result });
                            return;
                        }
                    }
                }
                if let Some(models) = &self.vision {
                    let result = models.classify(&image, chunk).await;
                    post(VisionReply::Classified { request, result });
                }
            }
        }
    }
}

pub struct VisionModels {
    vit: VisionEngine,
    vir: VisionEngine,
    /// (file, sha256)
    files: Vec<(String, String)>,
}

impl VisionModels {
    pub async fn load() -> Result<Self, String> {
        let load = |bytes: Vec<u8>, url: &str| {
            VisionEngine::load(Device::Cpu, &bytes).map_err(|e| format!("{url}: {e}"))
        };
        let (vit_bytes, vir_bytes) = (
            js::fetch_bytes(VIT_URL).await?,
            js::fetch_bytes(VIR_URL).await?,
        );
        let files = [(VIT_URL, &vit_bytes), (VIR_URL, &vir_bytes)]
            .iter()
            .map(|(url, bytes)| (url.to_string(), super::store::sha256_hex(bytes)))
            .collect();
        let vit = load(vit_bytes, VIT_URL)?;
        let vir = load(vir_bytes, VIR_URL)?;
        Ok(VisionModels { vit, vir, files })
    }

    pub async fn classify(&self, image: &[f32], chunk: usize) -> Result<VisionReport, String> {
        let vit = self
            .run(&self.vit, image, RetentionForm::Parallel, true)
            .await?;
        let vir = self
            .run(&self.vir, image, RetentionForm::Parallel, true)
            .await?;
        let config = self.vir.config();
        let (t, heads) = (config.n_tokens(), config.n_heads);
        let mut forms = Vec::new();
        for form in [
            RetentionForm::Parallel,
            RetentionForm::Recurrent,
            RetentionForm::Chunkwise(chunk.max(1)),
        ] {
            let mut times = Vec::with_capacity(TIMED_RUNS);
            let mut result = None;
            for _ in 0..TIMED_RUNS {
                let start = js::now_ms();
                result = Some(self.run(&self.vir, image, form, false).await?);
                times.push(js::now_ms() - start);
            }
            times.sort_by(f64::total_cmp);
            let result = result.ok_or("no run")?;
            let max_logit_diff = result
                .logits
                .iter()
                .zip(&vir.logits)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            forms.push(FormRun {
                form: match form {
                    RetentionForm::Parallel => "Parallel".to_string(),
                    RetentionForm::Recurrent => "Recurrent".to_string(),
                    RetentionForm::Chunkwise(b) => format!("Chunkwise ({b})"),
                },
                class: result.top(),
                probs: result.probs,
                max_logit_diff,
                ms: times[times.len() / 2],
                floats_held: working_floats(form, t, heads, config.head_dim()),
            });
            js::yield_now().await;
        }
        Ok(VisionReport {
            vit: output(&self.vit, &vit, true),
            vir: output(&self.vir, &vir, false),
            decays: config.decays.clone(),
            forms,
            backend: format!("{} (wasm)", self.vir.backend_name()),
            models: self.files.clone(),
        })
    }
}

impl VisionModels {
    async fn run(
        &self,
        model: &VisionEngine,
        image: &[f32],
        form: RetentionForm,
        capture: bool,
    ) -> Result<Classification, String> {
        model
            .classify(image, form, capture)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The class token's rows (and, for the ViT, its rollout row) over the patches.
fn output(model: &VisionEngine, result: &Classification, rollout: bool) -> VisionOutput {
    let config = model.config();
    let (t, heads, class) = (config.n_tokens(), config.n_heads, config.class_token());
    let patches = config.n_patches();
    let class_rows = result
        .mixing
        .iter()
        .map(|layer| {
            (0..heads)
                .map(|h| layer[(h * t + class) * t..][..patches].to_vec())
                .collect()
        })
        .collect();
    let rollout = if rollout {
        vision_rollout(result, heads, t)[class * t..][..patches].to_vec()
    } else {
        Vec::new()
    };
    VisionOutput {
        probs: result.probs.clone(),
        class: result.top(),
        n_heads: heads,
        class_rows,
        rollout,
    }
}
