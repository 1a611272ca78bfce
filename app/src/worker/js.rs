//! Thin wrappers over the browser APIs the worker uses (fetch, streams, the Origin Private
//! File System, the Cache API, timers, Web Locks), each turning a JS error into a readable
//! message.

use js_sys::{Object, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Cache, DedicatedWorkerGlobalScope, FileSystemDirectoryHandle, FileSystemFileHandle,
    FileSystemGetFileOptions, FileSystemReadWriteOptions, FileSystemSyncAccessHandle,
    MessageChannel, ReadableStreamDefaultReader, Request, RequestCache, RequestInit, Response,
};

pub fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// A JS exception's message.
pub fn message(value: JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

/// A DOMException's name (`QuotaExceededError`, `NotSupportedError`, …), where it has one.
pub fn error_name(value: &JsValue) -> Option<String> {
    Reflect::get(value, &"name".into()).ok()?.as_string()
}

/// Whether a JS error says the origin's storage quota is used up.
pub fn is_quota(value: &JsValue) -> bool {
    error_name(value).as_deref() == Some("QuotaExceededError")
}

pub fn now_ms() -> f64 {
    scope()
        .performance()
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

/// Lets the worker's event loop run (incoming messages, such as Stop) before going on.
pub async fn yield_now() {
    // A message to itself rather than a zero timeout: browsers stretch nested timeouts to 4 ms,
    // a sixth of a 25 ms decoding step. The port stays alive while its message is on the way.
    let promise = Promise::new(&mut |resolve, _| match MessageChannel::new() {
        Ok(channel) => {
            channel.port1().set_onmessage(Some(resolve.unchecked_ref()));
            if channel.port2().post_message(&JsValue::NULL).is_err() {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
        Err(_) => {
            let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 0);
        }
    });
    let _ = JsFuture::from(promise).await;
}

async fn fetch(url: &str, range: Option<String>) -> Result<Response, String> {
    let init = RequestInit::new();
    init.set_method("GET");
    // The browser's HTTP cache must not answer: the model has its own verified cache.
    init.set_cache(RequestCache::NoStore);
    let request = Request::new_with_str_and_init(url, &init).map_err(message)?;
    if let Some(range) = range {
        request
            .headers()
            .set("Range", &format!("bytes={range}"))
            .map_err(message)?;
    }
    let response = JsFuture::from(scope().fetch_with_request(&request))
        .await
        .map_err(message)?;
    Ok(response.unchecked_into())
}

pub async fn fetch_text(url: &str) -> Result<String, String> {
    let response = fetch(url, None).await?;
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let text = JsFuture::from(response.text().map_err(message)?)
        .await
        .map_err(message)?;
    text.as_string()
        .ok_or_else(|| "the response is not text".to_string())
}

/// GET `url` whole (small files: the vision models, the test digits).
pub async fn fetch_bytes(url: &str) -> Result<Vec<u8>, String> {
    let response = fetch(url, None).await?;
    if !response.ok() {
        return Err(format!("{url}: HTTP {}", response.status()));
    }
    let buffer = JsFuture::from(response.array_buffer().map_err(message)?)
        .await
        .map_err(message)?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// GET `url`, from byte `from` on (a Range request when `from` > 0).
pub async fn fetch_range(url: &str, from: u64) -> Result<Response, String> {
    fetch(url, (from > 0).then(|| format!("{from}-"))).await
}

/// GET bytes `start..end` of `url` (a Range request; the server may answer with more).
pub async fn fetch_span(url: &str, start: u64, end: u64) -> Result<Response, String> {
    fetch(url, Some(format!("{start}-{}", end.saturating_sub(1)))).await
}

/// The file size a `206` names in its `Content-Range` (`bytes a-b/size`), where the server
/// lets the page read the header.
pub fn range_total(response: &Response) -> Option<u64> {
    let value = response.headers().get("Content-Range").ok().flatten()?;
    value.rsplit_once('/')?.1.trim().parse().ok()
}

/// The body's length, where the response says it (`Content-Length`).
pub fn content_length(response: &Response) -> Option<u64> {
    let value = response.headers().get("Content-Length").ok().flatten()?;
    value.trim().parse().ok()
}

/// Tells the server the rest of a body is not wanted.
pub fn cancel(reader: &ReadableStreamDefaultReader) {
    let _ = reader.cancel();
}

/// Bytes `start..end` of a file.
pub async fn read_file(file: &web_sys::File, start: u64, end: u64) -> Result<Vec<u8>, String> {
    let buffer = file_span_started(file, start, end)?
        .await
        .map_err(message)?;
    Ok(Uint8Array::new(&buffer).to_vec())
}

/// Starts reading bytes `start..end` of a file (the read goes on while the caller does); the
/// future gives an `ArrayBuffer`.
pub fn file_span_started(file: &web_sys::File, start: u64, end: u64) -> Result<JsFuture, String> {
    let blob = file
        .slice_with_f64_and_f64(start as f64, end as f64)
        .map_err(message)?;
    Ok(JsFuture::from(blob.array_buffer()))
}

/// `url` made absolute against the worker's own address (the page's directory).
pub fn absolute_url(url: &str) -> Result<web_sys::Url, String> {
    let base = scope().location().href();
    web_sys::Url::new_with_base(url, &base).map_err(|_| format!("{url:?} is not a URL"))
}

/// The worker's (and the page's) origin.
pub fn own_origin() -> String {
    scope().location().origin()
}

/// The memory the browser says the device has (`navigator.deviceMemory`, in bytes; Chromium
/// rounds it and caps it at 8 GB), where it says.
pub fn device_memory() -> Option<u64> {
    let gib = Reflect::get(&scope().navigator(), &"deviceMemory".into())
        .ok()?
        .as_f64()?;
    (gib > 0.0).then_some((gib * (1u64 << 30) as f64) as u64)
}

/// The Cache API cache the page keeps its settings in; the service worker reads it too.
pub const SETTINGS_CACHE: &str = "glassbox-settings-v1";
/// The allowed origins' entry in [`SETTINGS_CACHE`], relative to the page.
pub const ORIGINS_ENTRY: &str = "allowed-origins.json";

/// The origins the user allowed model downloads from (besides the page's own).
pub async fn allowed_origins() -> Vec<String> {
    async fn read() -> Option<Vec<String>> {
        let cache = open_cache(SETTINGS_CACHE).await.ok()?;
        let url = absolute_url(ORIGINS_ENTRY).ok()?.href();
        let response = JsFuture::from(cache.match_with_str(&url)).await.ok()?;
        let response: Response = response.dyn_into().ok()?;
        let text = JsFuture::from(response.text().ok()?)
            .await
            .ok()?
            .as_string()?;
        serde_json::from_str(&text).ok()
    }
    read().await.unwrap_or_default()
}

/// The next chunk of a body, or None at its end.
pub async fn read_chunk(reader: &ReadableStreamDefaultReader) -> Result<Option<Vec<u8>>, String> {
    let result = JsFuture::from(reader.read()).await.map_err(message)?;
    let done = Reflect::get(&result, &"done".into())
        .map_err(message)?
        .as_bool()
        .unwrap_or(true);
    if done {
        return Ok(None);
    }
    let value = Reflect::get(&result, &"value".into()).map_err(message)?;
    Ok(Some(value.unchecked_into::<Uint8Array>().to_vec()))
}

pub async fn opfs_root() -> Result<FileSystemDirectoryHandle, String> {
    let storage = scope().navigator().storage();
    let has = Reflect::has(&storage, &"getDirectory".into()).unwrap_or(false);
    if !has {
        return Err("no Origin Private File System".into());
    }
    // Some browsers have the directory but not the synchronous handles the store writes with.
    let file_handle = Reflect::get(&js_sys::global(), &"FileSystemFileHandle".into())
        .and_then(|class| Reflect::get(&class, &"prototype".into()))
        .ok()
        .filter(|proto| !proto.is_undefined());
    let sync = file_handle
        .and_then(|proto| Reflect::has(&proto, &"createSyncAccessHandle".into()).ok())
        .unwrap_or(false);
    if !sync {
        return Err("no synchronous file access in the Origin Private File System".into());
    }
    let dir = JsFuture::from(storage.get_directory())
        .await
        .map_err(message)?;
    Ok(dir.unchecked_into())
}

/// The named cache of the Cache API, created if needed.
pub async fn open_cache(name: &str) -> Result<Cache, String> {
    let caches = scope()
        .caches()
        .map_err(|e| format!("no Cache API ({})", message(e)))?;
    let cache = JsFuture::from(caches.open(name)).await.map_err(message)?;
    Ok(cache.unchecked_into())
}

/// The file as a `File` (a snapshot: reading it needs no lock, so another tab may hold a
/// synchronous handle on it meanwhile); `Ok(None)` when there is no such file.
pub async fn get_file(
    dir: &FileSystemDirectoryHandle,
    name: &str,
) -> Result<Option<web_sys::File>, String> {
    let options = FileSystemGetFileOptions::new();
    options.set_create(false);
    let handle = match JsFuture::from(dir.get_file_handle_with_options(name, &options)).await {
        Ok(handle) => handle.unchecked_into::<FileSystemFileHandle>(),
        Err(e) if error_name(&e).as_deref() == Some("NotFoundError") => return Ok(None),
        Err(e) => return Err(message(e)),
    };
    let file = JsFuture::from(handle.get_file()).await.map_err(message)?;
    Ok(Some(file.unchecked_into()))
}

/// A synchronous access handle (workers only), creating the file if needed. Close it after use.
/// The error is the browser's own (its name tells a refusal from a file in use).
pub async fn sync_handle(
    dir: &FileSystemDirectoryHandle,
    name: &str,
) -> Result<FileSystemSyncAccessHandle, JsValue> {
    let options = FileSystemGetFileOptions::new();
    options.set_create(true);
    let file: FileSystemFileHandle =
        JsFuture::from(dir.get_file_handle_with_options(name, &options))
            .await?
            .unchecked_into();
    let handle = JsFuture::from(file.create_sync_access_handle()).await?;
    Ok(handle.unchecked_into())
}

/// Deletes a file; one that is not there is not an error.
pub async fn remove(dir: &FileSystemDirectoryHandle, name: &str) -> Result<(), String> {
    match JsFuture::from(dir.remove_entry(name)).await {
        Ok(_) => Ok(()),
        Err(e) if error_name(&e).as_deref() == Some("NotFoundError") => Ok(()),
        Err(e) => Err(message(e)),
    }
}

/// Writes `bytes` at `at`; a short write (the quota reached) is an error too.
pub fn write_at(handle: &FileSystemSyncAccessHandle, bytes: &[u8], at: u64) -> Result<(), JsValue> {
    let options = FileSystemReadWriteOptions::new();
    options.set_at(at as f64);
    let written = handle.write_with_u8_array_and_options(bytes, &options)?;
    if (written as usize) < bytes.len() {
        let error = js_sys::Error::new("the browser stored only part of the bytes written");
        error.set_name("QuotaExceededError");
        return Err(error.into());
    }
    Ok(())
}

/// (usage, quota) of the origin's storage, in bytes.
pub async fn storage_estimate() -> Option<(f64, f64)> {
    let estimate: Object = JsFuture::from(scope().navigator().storage().estimate().ok()?)
        .await
        .ok()?
        .unchecked_into();
    let usage = Reflect::get(&estimate, &"usage".into()).ok()?.as_f64()?;
    let quota = Reflect::get(&estimate, &"quota".into()).ok()?.as_f64()?;
    Some((usage, quota))
}

/// Waits `ms` milliseconds (letting messages in meanwhile).
pub async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
    });
    let _ = JsFuture::from(promise).await;
}

/// A Web Lock held until this is dropped (`navigator.locks`: one holder per origin, across
/// tabs and workers).
pub struct LockGuard {
    release: Option<js_sys::Function>,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.call0(&JsValue::NULL);
        }
    }
}

/// The lock `name` if it is free now: `Ok(Some)`; `Ok(None)` if another holds it; `Err` if
/// this browser has no Web Locks (then nothing can be coordinated, and the caller goes on).
pub async fn try_lock(name: &str) -> Result<Option<LockGuard>, String> {
    let locks = Reflect::get(&scope().navigator(), &"locks".into())
        .ok()
        .filter(|l| l.is_object())
        .ok_or("no Web Locks")?;
    let request: js_sys::Function = Reflect::get(&locks, &"request".into())
        .ok()
        .and_then(|f| f.dyn_into().ok())
        .ok_or("no Web Locks")?;
    // Resolved (with nothing) to let the lock go.
    let mut release = None;
    let held = Promise::new(&mut |resolve, _| release = Some(resolve));
    // Resolved with whether the lock was granted.
    let mut granted = None;
    let answer = Promise::new(&mut |resolve, _| granted = Some(resolve));
    let (release, granted) = match (release, granted) {
        (Some(r), Some(g)) => (r, g),
        _ => return Err("no Web Locks".into()),
    };
    let callback = wasm_bindgen::closure::Closure::once_into_js(move |lock: JsValue| -> JsValue {
        let got = !lock.is_null() && !lock.is_undefined();
        let _ = granted.call1(&JsValue::NULL, &JsValue::from_bool(got));
        if got {
            held.into()
        } else {
            JsValue::UNDEFINED
        }
    });
    let options = Object::new();
    let _ = Reflect::set(&options, &"ifAvailable".into(), &JsValue::TRUE);
    let pending = request
        .call3(&locks, &JsValue::from_str(name), &options, &callback)
        .map_err(message)?;
    // The request's own promise settles when the lock is let go; nothing waits on it.
    drop(pending);
    let got = JsFuture::from(answer).await.map_err(message)?;
    Ok(got.as_bool().unwrap_or(false).then_some(LockGuard {
        release: Some(release),
    }))
}
