//! The page's handle on the engine worker: starts it, sends [`ToWorker`] messages and turns
//! [`FromWorker`] messages into calls of a handler.

use crate::protocol::{decode, encode, FromWorker, ToWorker};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use web_sys::{ErrorEvent, MessageEvent, Worker};

#[derive(Clone)]
pub struct EngineClient {
    worker: Worker,
    /// Messages sent before the worker said `Ready` (they would be lost), sent on `Ready`;
    /// `None` once the worker is ready.
    queued: Rc<RefCell<Option<Vec<String>>>>,
}

impl EngineClient {
    /// Starts `worker_loader.js` (made by Trunk) and routes its messages to `on_message`.
    pub fn spawn(on_message: impl Fn(FromWorker) + 'static) -> Result<Self, String> {
        let worker = Worker::new("./worker_loader.js")
            .map_err(|e| format!("cannot start the engine worker: {e:?}"))?;
        let queued: Rc<RefCell<Option<Vec<String>>>> = Rc::new(RefCell::new(Some(Vec::new())));
        let (queue, target) = (Rc::clone(&queued), worker.clone());
        let handler = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let message = match event.data().as_string() {
                Some(text) => decode::<FromWorker>(&text).unwrap_or_else(FromWorker::Error),
                None => FromWorker::Error("the engine sent a message that is not text".into()),
            };
            if matches!(message, FromWorker::Ready) {
                for text in queue.borrow_mut().take().unwrap_or_default() {
                    let _ = target.post_message(&JsValue::from_str(&text));
                }
            }
            on_message(message);
        });
        worker.set_onmessage(Some(handler.as_ref().unchecked_ref()));
        handler.forget();
        let on_error = Closure::<dyn FnMut(ErrorEvent)>::new(move |event: ErrorEvent| {
            web_sys::console::error_1(&JsValue::from_str(&format!(
                "engine worker: {}",
                event.message()
            )));
        });
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        on_error.forget();
        Ok(EngineClient { worker, queued })
    }

    pub fn send(&self, message: &ToWorker) {
        let text = encode(message);
        match self.queued.borrow_mut().as_mut() {
            Some(queue) => queue.push(text),
            None => {
                let _ = self.worker.post_message(&JsValue::from_str(&text));
            }
        }
    }
}
