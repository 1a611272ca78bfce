//! The Vision view's state: the image (a drawing or one of the 1,000 test digits), the two
//! models' report on it, and what is selected in the pictures.

use super::engine::EngineState;
use crate::deep_link::{Link, View, VisionImage};
use crate::protocol::{VisionReply, VisionReport, VisionRequest};
use leptos::prelude::*;
use std::sync::Arc;

/// The 1,000 test digits: records of `[label][784 pixel bytes]`.
const TEST_SET_URL: &str = "models/mnist-test.bin";

/// What the Vision view's ViT picture shows of the class token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VitMap {
    /// One head's attention (layer and head selected).
    Head,
    /// Attention rollout across every layer.
    Rollout,
}

#[derive(Clone, Copy)]
pub struct VisionState {
    /// 28 × 28 values in [0, 1], row-major.
    pub image: RwSignal<Vec<f32>>,
    /// Where the image came from, in words ("Your drawing", "Test digit 12 (label 7)").
    pub source: RwSignal<String>,
    pub running: RwSignal<Option<u32>>,
    pub report: RwSignal<Option<VisionReport>>,
    pub error: RwSignal<Option<String>>,
    pub layer: RwSignal<usize>,
    pub head: RwSignal<usize>,
    pub vit_map: RwSignal<VitMap>,
    /// Which of the report's retention forms gives the ViR's shown probabilities.
    pub form: RwSignal<usize>,
    pub chunk: RwSignal<usize>,
    /// `mnist-test.bin`, fetched on first use.
    pub test_set: RwSignal<Option<Arc<Vec<u8>>>>,
    /// The image as a deep link names it.
    pub link_image: RwSignal<Option<VisionImage>>,
    engine: EngineState,
}

impl VisionState {
    pub(super) fn new(engine: EngineState) -> Self {
        VisionState {
            image: RwSignal::new(vec![0.0; 784]),
            source: RwSignal::new(String::new()),
            running: RwSignal::new(None),
            report: RwSignal::new(None),
            error: RwSignal::new(None),
            layer: RwSignal::new(0),
            head: RwSignal::new(0),
            vit_map: RwSignal::new(VitMap::Head),
            form: RwSignal::new(0),
            chunk: RwSignal::new(16),
            test_set: RwSignal::new(None),
            link_image: RwSignal::new(None),
            engine,
        }
    }

    /// Classifies the image with both models (the worker queues it behind any work under way,
    /// such as the chat model's load).
    pub fn classify(self) {
        let request = self.engine.next_request();
        self.running.set(Some(request));
        self.engine.send(VisionRequest::Classify {
            request,
            image: self.image.get_untracked(),
            chunk: self.chunk.get_untracked().max(1),
        });
    }

    /// Classifies test digit `i` of `mnist-test.bin` (fetched on first use).
    pub fn show_test_digit(self, i: usize) {
        // `i` may come from a deep link: no arithmetic on it that could overflow.
        let range = i
            .checked_mul(785)
            .and_then(|start| Some(start..start.checked_add(785)?));
        let use_digit = move |set: &[u8]| match range.clone().and_then(|r| set.get(r)) {
            Some(record) => {
                self.image
                    .set(record[1..].iter().map(|&b| b as f32 / 255.0).collect());
                self.source
                    .set(format!("Test digit {i} (label {})", record[0]));
                self.link_image.set(Some(VisionImage::TestDigit(i)));
                self.classify();
            }
            None => self.error.set(Some(format!("there is no test digit {i}"))),
        };
        if let Some(set) = self.test_set.get_untracked() {
            use_digit(&set);
            return;
        }
        wasm_bindgen_futures::spawn_local(async move {
            match fetch_bytes(TEST_SET_URL).await {
                Ok(set) => {
                    let set = Arc::new(set);
                    self.test_set.set(Some(set.clone()));
                    use_digit(&set);
                }
                Err(e) => self.error.set(Some(format!("{TEST_SET_URL}: {e}"))),
            }
        });
    }

    /// Classifies a drawing already laid out like MNIST.
    pub fn classify_drawing(self, image: Vec<f32>) {
        let bytes = image
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        self.link_image.set(Some(VisionImage::Drawing(bytes)));
        self.source.set("Your drawing".into());
        self.image.set(image);
        self.classify();
    }

    /// The report on the image; a reply to another classification than the last is dropped.
    pub(super) fn on_reply(self, reply: VisionReply) {
        match reply {
            VisionReply::Classified { request, result } => {
                if self.running.get_untracked() == Some(request) {
                    self.running.set(None);
                    match result {
                        Ok(report) => {
                            self.error.set(None);
                            // A deep link's layer and head, within what the models have.
                            let (layers, heads) = report_dims(&report);
                            if self.layer.get_untracked() >= layers {
                                self.layer.set(layers - 1);
                            }
                            if self.head.get_untracked() >= heads {
                                self.head.set(heads - 1);
                            }
                            self.report.set(Some(report));
                        }
                        Err(message) => self.error.set(Some(message)),
                    }
                }
            }
        }
    }

    /// Takes a deep link to the Vision view: its selection, and its image, classified now (the
    /// classification queues behind the chat model's load in the worker).
    pub(super) fn apply_link(self, link: &Link) {
        if link.view != View::Vision {
            return;
        }
        self.layer.set(link.layer.unwrap_or(0));
        self.head.set(link.head.unwrap_or(0));
        self.form.set(link.form.unwrap_or(0).min(2));
        self.chunk.set(link.chunk.unwrap_or(16));
        self.vit_map.set(if link.rollout {
            VitMap::Rollout
        } else {
            VitMap::Head
        });
        match link.image.clone() {
            Some(VisionImage::TestDigit(i)) => self.show_test_digit(i),
            Some(VisionImage::Drawing(bytes)) => {
                self.classify_drawing(bytes.iter().map(|&b| b as f32 / 255.0).collect())
            }
            None => {}
        }
    }

    /// Writes the image and the selection into the link to the Vision view.
    pub(super) fn write_link(self, link: &mut Link) {
        if link.view == View::Vision {
            link.image = self.link_image.get();
            link.layer = Some(self.layer.get());
            link.head = Some(self.head.get());
            link.form = Some(self.form.get());
            link.chunk = Some(self.chunk.get());
            link.rollout = self.vit_map.get() == VitMap::Rollout;
        }
    }
}

/// The layers and heads both models have (at least one of each): a selection beyond them
/// would show nothing, or a decay of 0.
pub fn report_dims(report: &VisionReport) -> (usize, usize) {
    let layers = report
        .vit
        .class_rows
        .len()
        .min(report.vir.class_rows.len())
        .max(1);
    let heads = report
        .vit
        .n_heads
        .min(report.vir.n_heads)
        .min(report.decays.len())
        .max(1);
    (layers, heads)
}

/// GET `url` whole, on the page (a data file, no model code).
async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let message = |e: wasm_bindgen::JsValue| format!("{e:?}");
    let window = web_sys::window().ok_or("no window")?;
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(message)?
        .dyn_into()
        .map_err(message)?;
    if !response.ok() {
        return Err(format!("HTTP {}", response.status()));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(message)?)
        .await
        .map_err(message)?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}
