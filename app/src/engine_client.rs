//! The page's handle on the engine worker: starts it, sends [`ToWorker`] messages and turns
//! [`FromWorker`] messages into calls of a handler.

use crate::protocol::{decode, encode, FromWorker, ToWorker};
use wasm_bindgen::prelude::*;
use web_sys::{MessageEvent, Worker};

#[derive(Clone)]
pub struct EngineClient {
    worker: Worker,
}

impl EngineClient {
    /// Starts `worker_loader.js` (made by Trunk) and routes its messages to `on_message`.
    pub fn spawn(on_message: impl Fn(FromWorker) + 'static) -> Result<Self, String> {
        let worker = Worker::new("./worker_loader.js")
            .map_err(|e| format!("cannot start the engine worker: {e:?}"))?;
        let handler = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let message = match event.data().as_string() {
                Some(text) => decode::<FromWorker>(&text).unwrap_or_else(FromWorker::Error),
                None => FromWorker::Error("the engine sent a message that is not text".into()),
            };
            on_message(message);
        });
        worker.set_onmessage(Some(handler.as_ref().unchecked_ref()));
        handler.forget();
        Ok(EngineClient { worker })
    }

    pub fn send(&self, message: &ToWorker) {
        let _ = self
            .worker
            .post_message(&JsValue::from_str(&encode(message)));
    }
}
