//! Feeding a stored copy of the model: a verified one whole (read in one piece and hashed by
//! the browser, where it can), or the part a download stopped at before the rest arrives.

use super::{js, yield_now, Feed, LoadError, LoadStage, Store};

/// Feeds `feed` the first `len` bytes of the stored file. `whole`: they are all the feed gets,
/// so the browser may hash them (see [`replay_whole`]).
pub(super) async fn replay_cache(
    store: &Store,
    storage: &str,
    len: u64,
    whole: bool,
    feed: &mut Feed<'_>,
) -> Result<(), LoadError> {
    let mut reader = store
        .storage
        .reader(storage, len)
        .await
        .map_err(read_error)?;
    if whole && feed.fed == 0 && len <= WHOLE_READ_LIMIT {
        if let Some(file) = reader.whole_file().cloned() {
            reader.close();
            return replay_whole(&file, len, feed).await;
        }
    }
    let result = loop {
        match reader.next_chunk().await {
            Ok(Some(chunk)) => {
                if let Err(e) = feed.push(&chunk) {
                    break Err(e);
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(read_error(e)),
        }
        // Let the worker answer messages (and the page repaint its progress bar).
        yield_now().await;
    };
    reader.close();
    if result.is_ok() && feed.fed < len {
        return Err(shorter());
    }
    result
}

/// A stored copy up to this size is read in one piece, so that the browser can hash it (the
/// piece stays in JS memory until it is fed: twice the model's size for a moment).
const WHOLE_READ_LIMIT: u64 = 1 << 30;

/// Feeds a stored copy read in one piece, hashed by WebCrypto ([`js::sha256_started`]: on this
/// thread, in Chromium, but about four times the speed of hashing in wasm); where the browser
/// cannot hash, the feed hashes it as it goes.
async fn replay_whole(
    file: &web_sys::File,
    len: u64,
    feed: &mut Feed<'_>,
) -> Result<(), LoadError> {
    let bytes = js::read_file_js(file, 0, len).await.map_err(read_error)?;
    if (bytes.length() as u64) < len {
        return Err(shorter());
    }
    let digest = js::sha256_started(&bytes);
    let mut at = 0;
    while at < len {
        let end = (at + REPLAY_CHUNK).min(len);
        let chunk = bytes.subarray(at as u32, end as u32).to_vec();
        match digest {
            Some(_) => feed.push_unhashed(&chunk)?,
            None => feed.push(&chunk)?,
        }
        at = end;
        // Let the worker answer messages (and the page repaint its progress bar).
        yield_now().await;
    }
    if let Some(digest) = digest {
        let digest = js::sha256_finished(digest).await.map_err(read_error)?;
        feed.digested_elsewhere(&digest);
    }
    Ok(())
}

/// A stored copy read in one piece goes to the loader this many bytes at a time.
const REPLAY_CHUNK: u64 = 4 << 20;

fn shorter() -> LoadError {
    LoadError::new("the cached model is shorter than recorded", true)
}

fn read_error(e: String) -> LoadError {
    LoadError::new(format!("cannot read the cached model: {e}"), true)
}

/// Feeds the whole stored copy and checks its sha256; returns it.
pub(super) async fn read_cached(
    store: &Store,
    storage: &str,
    bytes: u64,
    expected: Option<&str>,
    feed: &mut Feed<'_>,
) -> Result<String, LoadError> {
    feed.stage(LoadStage::Cache);
    replay_cache(store, storage, bytes, true, feed).await?;
    feed.verify(expected)
}
