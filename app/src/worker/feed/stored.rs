//! Feeding a stored copy of the model: a verified one whole (hashed by the browser on a thread
//! of its own, where it can), or the part a download stopped at before the rest arrives.

use super::file_hash::{self, FileHash};
use super::{js, warn, yield_now, Feed, LoadError, LoadStage, Store};
use js_sys::Uint8Array;
use sha2::{Digest, Sha256};

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

/// A stored copy up to this size is read in one piece, and hashed by the browser (the piece stays
/// in JS memory until it is fed; the hash's copies are in `file_hash`).
const WHOLE_READ_LIMIT: u64 = 1 << 30;

/// Feeds a stored copy read in one piece while a thread of its own hashes it ([`FileHash`]:
/// WebCrypto, about four times the speed of hashing in wasm; a large file is hashed by WebCrypto
/// here). Where no digest can be started, this worker hashes as it feeds; where the thread gives
/// none, once more at the end. (Read 4 MB at a time, 100 MB take twice as long: 155 ms against
/// 75.)
async fn replay_whole(
    file: &web_sys::File,
    len: u64,
    feed: &mut Feed<'_>,
) -> Result<(), LoadError> {
    let thread = (len <= file_hash::THREAD_LIMIT)
        .then(FileHash::start_thread)
        .flatten();
    let buffer = js::file_span_started(file, 0, len)
        .map_err(read_error)?
        .await
        .map_err(|e| read_error(js::message(e)))?;
    let bytes = Uint8Array::new(&buffer);
    if u64::from(bytes.length()) < len {
        return Err(shorter());
    }
    let hash = match thread {
        Some(thread) => thread.hash(file, len),
        None => FileHash::here(&bytes),
    };
    let mut chunk = Vec::new();
    let mut at = 0;
    while at < len {
        let end = (at + REPLAY_CHUNK).min(len);
        let piece = bytes.subarray(at as u32, end as u32);
        chunk.resize(piece.length() as usize, 0);
        piece.copy_to(&mut chunk);
        match hash {
            Some(_) => feed.push_unhashed(&chunk)?,
            None => feed.push(&chunk)?,
        }
        at = end;
        // Let the worker answer messages (and the page repaint its progress bar).
        yield_now().await;
    }
    if let Some(hash) = hash {
        let digest = match hash.finish().await {
            Ok(digest) => digest,
            Err(e) => {
                warn(&format!("the stored model is hashed here instead: {e}"));
                hash_here(file, len).await?
            }
        };
        feed.digested_elsewhere(&digest);
    }
    Ok(())
}

/// The SHA-256 of the first `len` bytes of `file`, hashed in wasm.
async fn hash_here(file: &web_sys::File, len: u64) -> Result<Vec<u8>, LoadError> {
    let mut hasher = Sha256::new();
    let mut at = 0;
    while at < len {
        let bytes = js::read_file(file, at, (at + REPLAY_CHUNK).min(len))
            .await
            .map_err(read_error)?;
        if bytes.is_empty() {
            return Err(shorter());
        }
        hasher.update(&bytes);
        at += bytes.len() as u64;
    }
    Ok(hasher.finalize().to_vec())
}

/// A stored copy is fed to the loader this many bytes at a time.
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
