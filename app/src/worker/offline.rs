//! The engine worker's own files, kept for offline visits. The service worker precaches the
//! page's shell but not the engine worker's two builds (5 to 6 MB each, and a visitor runs
//! one): the build that runs keeps itself in the shell's cache. A page the service worker did
//! not control yet (a first visit to a host that sends COOP/COEP itself) fetched this build
//! past it, so the service worker could not keep it then.

use super::js;
use super::store::warn;
use wasm_bindgen_futures::JsFuture;

/// The service worker's shell cache (`SHELL_CACHE` in `www/sw.js`).
const SHELL_CACHE: &str = "glassbox-shell-v1";

/// This build's files, relative to the worker's own address (the page's directory).
#[cfg(target_feature = "atomics")]
const THIS_BUILD: &[&str] = &[
    "./worker_mt_loader.js",
    "./worker_mt.js",
    "./worker_mt_bg.wasm",
    "./pool_worker.js",
];
#[cfg(not(target_feature = "atomics"))]
const THIS_BUILD: &[&str] = &["./worker_loader.js", "./worker.js", "./worker_bg.wasm"];

/// Adds what the shell cache lacks of this build. A browser without the Cache API (or a
/// refusal) only costs offline use: a warning, nothing else.
pub async fn keep_this_build() {
    if let Err(e) = keep(THIS_BUILD).await {
        warn(&format!(
            "the engine worker is not kept for offline use: {e}"
        ));
    }
}

async fn keep(files: &[&str]) -> Result<(), String> {
    let cache = js::open_cache(SHELL_CACHE).await?;
    for file in files {
        let url = js::absolute_url(file)?.href();
        let cached = JsFuture::from(cache.match_with_str(&url))
            .await
            .map_err(js::message)?;
        if cached.is_undefined() {
            JsFuture::from(cache.add_with_str(&url))
                .await
                .map_err(js::message)?;
        }
    }
    Ok(())
}
