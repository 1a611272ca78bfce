//! The page's handle on the engine worker: starts it, sends [`ToWorker`] messages (a file the
//! user opened beside its message) and turns [`FromWorker`] messages into calls of a handler.

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
    queued: Rc<RefCell<Option<Vec<JsValue>>>>,
}

impl EngineClient {
    /// Starts the engine worker ([`worker_script`]) and routes its messages to `on_message`.
    pub fn spawn(on_message: impl Fn(FromWorker) + 'static) -> Result<Self, String> {
        let worker = Worker::new(&worker_script())
            .map_err(|e| format!("cannot start the engine worker: {e:?}"))?;
        let queued: Rc<RefCell<Option<Vec<JsValue>>>> = Rc::new(RefCell::new(Some(Vec::new())));
        let (queue, target) = (Rc::clone(&queued), worker.clone());
        let handler = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            let message = match event.data().as_string() {
                Some(text) => decode::<FromWorker>(&text).unwrap_or_else(FromWorker::Error),
                None => FromWorker::Error("the engine sent a message that is not text".into()),
            };
            if matches!(message, FromWorker::Ready) {
                for message in queue.borrow_mut().take().unwrap_or_default() {
                    let _ = target.post_message(&message);
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
        self.post(JsValue::from_str(&encode(message)));
    }

    /// Sends `message` with a file the user opened beside it (a `File` is cloned to the worker,
    /// which reads it; JSON could not carry it).
    pub fn send_with_file(&self, message: &ToWorker, file: &web_sys::File) {
        let object = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&object, &"json".into(), &encode(message).into());
        let _ = js_sys::Reflect::set(&object, &"file".into(), file);
        self.post(object.into());
    }

    fn post(&self, message: JsValue) {
        match self.queued.borrow_mut().as_mut() {
            Some(queue) => queue.push(message),
            None => {
                let _ = self.worker.post_message(&message);
            }
        }
    }

    /// Ends the worker at once (whatever it was doing), so that a new one can start (under a
    /// new Content-Security-Policy, after the allowed origins changed).
    pub fn terminate(&self) {
        self.worker.set_onmessage(None);
        self.worker.terminate();
    }
}

/// The engine worker to start. Two builds ship: `worker_loader.js` (made by Trunk: one thread)
/// and `worker_mt_loader.js` (made by `cargo xtask build`: wasm threads on a shared memory,
/// which needs a cross-origin isolated page). The threaded one runs wherever the page is
/// isolated and has `Atomics.waitAsync` (the threaded build's futures wait with it; its polyfill
/// would start workers from blob URLs, which the worker's policy forbids), with as many threads
/// as the browser reports cores (at most 8) or as the page's `threads=N` asks; `threads=1`
/// picks the one-thread build.
fn worker_script() -> String {
    let global = js_sys::global();
    let isolated = js_sys::Reflect::get(&global, &"crossOriginIsolated".into())
        .ok()
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
        && js_sys::Reflect::get(&global, &"Atomics".into())
            .and_then(|atomics| js_sys::Reflect::get(&atomics, &"waitAsync".into()))
            .is_ok_and(|wait| wait.is_function());
    match requested_threads() {
        _ if !isolated => "./worker_loader.js".into(),
        Some(1) => "./worker_loader.js".into(),
        Some(n) => format!("./worker_mt_loader.js?threads={}", n.min(MAX_THREADS)),
        None => "./worker_mt_loader.js".into(),
    }
}

/// The page's `threads=N`, as it opened (the address bar follows the shown state later, and
/// keeps this).
pub fn requested_threads() -> Option<usize> {
    thread_local! {
        static REQUESTED: Option<usize> = web_sys::window()
            .and_then(|w| w.location().search().ok())
            .and_then(|search| {
                crate::query_string::parse_query(&search)
                    .into_iter()
                    .find(|(key, _)| key == "threads")
                    .and_then(|(_, value)| value.parse::<usize>().ok())
            })
            .filter(|&n| n > 0);
    }
    REQUESTED.with(|n| *n)
}

/// More threads than this gain nothing for models of this size (and cost memory: each has its
/// own stack and wasm instance).
pub const MAX_THREADS: usize = 8;
