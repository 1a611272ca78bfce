//! The threaded build's CPU threads. The engine's pool ([`engine::cpu::pool`]) asks for a thread;
//! here that is a Web Worker (`pool_worker.js`) that instantiates this same module on this
//! worker's shared memory and runs the pool's worker loop until the page goes away.
//!
//! Only in the build with wasm atomics (`cargo xtask build` makes it with a pinned nightly's
//! `-Z build-std`); the one-thread build has no pool threads.

use super::js;
use crate::engine_client::MAX_THREADS;
use wasm_bindgen::prelude::*;

/// Sets the pool's size (the worker's `threads=N`, else the cores the browser reports, at most
/// [`MAX_THREADS`]) and how it starts threads. Call before the engine's first kernel.
pub fn install() {
    let search = js::scope().location().search();
    let requested = crate::query_string::parse_query(&search)
        .into_iter()
        .find(|(key, _)| key == "threads")
        .and_then(|(_, value)| value.parse::<usize>().ok());
    let cores = js::scope().navigator().hardware_concurrency() as usize;
    let threads = requested.unwrap_or(cores).clamp(1, MAX_THREADS);
    engine::cpu::pool::set_threads(threads);
    engine::cpu::pool::set_spawner(spawn);
}

/// A pool thread: a worker given the module, the memory and the closure to run (a pointer into
/// that memory).
fn spawn(body: Box<dyn FnOnce() + Send>) -> Result<(), String> {
    let options = web_sys::WorkerOptions::new();
    options.set_name("glassbox-cpu");
    let worker = web_sys::Worker::new_with_options("./pool_worker.js", &options)
        .map_err(|e| format!("cannot start a CPU thread: {e:?}"))?;
    let on_error = Closure::<dyn FnMut(web_sys::ErrorEvent)>::new(|event: web_sys::ErrorEvent| {
        web_sys::console::error_1(&format!("CPU thread: {}", event.message()).into());
    });
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_error.forget();
    // A thin pointer (a box of the boxed closure) fits in a number.
    let body = Box::into_raw(Box::new(body));
    let message = js_sys::Array::of3(
        &wasm_bindgen::module(),
        &wasm_bindgen::memory(),
        &JsValue::from(body as usize as u32),
    );
    if let Err(e) = worker.post_message(&message) {
        // SAFETY: the message did not go, so no thread will take the closure.
        drop(unsafe { Box::from_raw(body) });
        worker.terminate();
        return Err(format!("cannot start a CPU thread: {e:?}"));
    }
    Ok(())
}

/// Called by `pool_worker.js` once its instance shares this module's memory: runs the closure
/// [`spawn`] sent (the pool's worker loop, which returns only when the pool is dropped).
#[wasm_bindgen]
pub fn glassbox_pool_thread(body: u32) {
    // SAFETY: `body` is the pointer `spawn` made with `Box::into_raw` and posted to this one
    // worker only; the memory is shared, so it points at the same closure here.
    let body = unsafe { Box::from_raw(body as usize as *mut Box<dyn FnOnce() + Send>) };
    body();
}
