//! A stored model's SHA-256 by WebCrypto, computed on a thread of its own (`hash_worker.js`)
//! while this worker feeds the same bytes to the loader. WebCrypto hashes on the thread that
//! calls it (in Chromium), so hashing here would hold a load up for the whole digest: about
//! 150 ms of the 850 ms from a reload to a ready SmolLM2.
//!
//! The thread reads the file itself (a `File` is a handle, cheap to post), once this worker's
//! own read is done: the two reads at once would share the browser's file reading and each take
//! twice as long, and a copy of what this worker read costs it about 65 ms per 100 MB.
//!
//! The thread's read is a second copy of the file in memory (and WebCrypto copies what it
//! hashes), so a file larger than [`THREAD_LIMIT`] is hashed here instead, as it was before the
//! thread: that much more memory could run the tab out of it.

use super::js;
use js_sys::{Array, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// The largest file the hash thread reads (the bundled models are 98 and 253 MB).
pub(super) const THREAD_LIMIT: u64 = 256 << 20;

/// A digest under way: on the hash thread (dropping it stops the thread), or on this one.
pub(super) enum FileHash {
    Thread {
        worker: web_sys::Worker,
        reply: JsFuture,
    },
    Here(JsFuture),
}

impl FileHash {
    /// Starts the hash thread; `None` where none could start. Its script loads while the caller
    /// reads the file.
    pub(super) fn start_thread() -> Option<FileHash> {
        let worker = web_sys::Worker::new("./hash_worker.js").ok()?;
        // The first message or error settles the reply (the thread sends one message).
        let reply = Promise::new(&mut |resolve, reject| {
            worker.set_onmessage(Some(resolve.unchecked_ref()));
            worker.set_onerror(Some(reject.unchecked_ref()));
        });
        Some(FileHash::Thread {
            worker,
            reply: JsFuture::from(reply),
        })
    }

    /// Has the thread hash the first `len` bytes of `file`; `None` where the message did not go.
    pub(super) fn hash(self, file: &web_sys::File, len: u64) -> Option<FileHash> {
        if let FileHash::Thread { worker, .. } = &self {
            let message = Array::of2(file, &JsValue::from_f64(len as f64));
            worker.post_message(&message).ok()?;
        }
        Some(self)
    }

    /// Hashes `bytes` on this thread (the call returns once WebCrypto has hashed them); `None`
    /// where WebCrypto is missing (outside a secure context).
    pub(super) fn here(bytes: &Uint8Array) -> Option<FileHash> {
        let subtle = js::scope().crypto().ok()?.subtle();
        let promise = subtle
            .digest_with_str_and_buffer_source("SHA-256", bytes)
            .ok()?;
        Some(FileHash::Here(JsFuture::from(promise)))
    }

    /// The digest's 32 bytes, or why there is none.
    pub(super) async fn finish(mut self) -> Result<Vec<u8>, String> {
        let reply = match &mut self {
            FileHash::Here(digest) => {
                let digest = digest.await.map_err(js::message)?;
                return Ok(Uint8Array::new(&digest).to_vec());
            }
            FileHash::Thread { reply, .. } => reply.await,
        };
        let event = reply.map_err(|e| {
            e.dyn_ref::<web_sys::ErrorEvent>()
                .map(|e| e.message())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "the hash thread did not start".to_string())
        })?;
        let data = event.unchecked_into::<web_sys::MessageEvent>().data();
        let field = |name: &str| Reflect::get(&data, &name.into()).unwrap_or(JsValue::UNDEFINED);
        let digest = field("digest");
        if digest.is_instance_of::<js_sys::ArrayBuffer>() {
            let digest = Uint8Array::new(&digest).to_vec();
            if digest.len() == 32 {
                return Ok(digest);
            }
        }
        Err(field("error")
            .as_string()
            .unwrap_or_else(|| format!("the hash thread answered {}", js::message(data))))
    }
}

impl Drop for FileHash {
    fn drop(&mut self) {
        if let FileHash::Thread { worker, .. } = self {
            worker.terminate();
        }
    }
}
