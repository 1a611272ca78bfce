//! The engine's side of the worker: receives [`ToWorker`] messages, runs the engine, posts
//! [`FromWorker`] messages back.

use crate::protocol::{decode, encode, ComputeTier, FromWorker, ToWorker};
use engine::gpu::GpuContext;
use wasm_bindgen::prelude::*;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

pub fn start() {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        let Some(text) = event.data().as_string() else {
            return;
        };
        match decode::<ToWorker>(&text) {
            Ok(message) => wasm_bindgen_futures::spawn_local(handle(message)),
            Err(e) => post(&FromWorker::Error(e)),
        }
    });
    scope.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The handler lives as long as the worker.
    on_message.forget();
    post(&FromWorker::Ready);
}

fn post(message: &FromWorker) {
    let scope: DedicatedWorkerGlobalScope = js_sys::global().unchecked_into();
    let _ = scope.post_message(&JsValue::from_str(&encode(message)));
}

async fn handle(message: ToWorker) {
    match message {
        ToWorker::Probe => post(&FromWorker::Tier(probe_tier().await)),
    }
}

async fn probe_tier() -> ComputeTier {
    match GpuContext::new().await {
        Ok(ctx) => ComputeTier::WebGpu {
            adapter: ctx.description(),
        },
        Err(e) => ComputeTier::Cpu {
            reason: e.to_string(),
        },
    }
}
