//! Where the worker keeps files between visits: the Origin Private File System where the
//! browser offers it and its synchronous handles really work (tried once with a small file of
//! its own: WebKit has the methods and refuses them), else the Cache API (every browser with
//! service workers has it), else nowhere. A store that fails a write it should take (anything
//! but a full quota) is given up for the rest of the worker's life, and the page is told why.
//!
//! Sizes and reads go through `getFile()` snapshots, which need no lock, so a second tab can
//! read while another writes; only writers take a synchronous handle. A size that cannot be
//! read is an error, never "no such file". A small file that cannot be written whole is
//! deleted, never left truncated.
//!
//! Both look the same to the model store above: files with a size, read from the start in
//! chunks, written from an offset on. The Cache API holds whole responses only, so a file there is
//! a run of parts, each a response keyed by its offset and length
//! (`glassbox-store/<name>/<offset>+<len>`); a file's size is the length of its parts that follow
//! each other without a gap from byte 0. An interrupted write keeps every part already put, which
//! is what lets a download resume.

use super::js::{self, message};
use js_sys::{Array, Uint8Array};
use std::cell::RefCell;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, FileSystemDirectoryHandle, FileSystemSyncAccessHandle, Response};

/// The Cache API cache that holds the model; the service worker's shell cache is another one.
const CACHE_NAME: &str = "glassbox-models-v1";
const PART_PREFIX: &str = "glassbox-store/";
/// The Cache API writer puts a part each time this many bytes have arrived.
const PART_BYTES: usize = 4 << 20;
/// How much a reader reads at a time.
const READ_CHUNK: u64 = 4 << 20;

/// Why a store could not do what was asked: the origin's quota is used up, or anything else
/// (the store refused what it advertised, a file in use).
#[derive(Debug, Clone)]
pub struct StoreError {
    pub message: String,
    pub quota: bool,
}

impl StoreError {
    fn js(value: JsValue) -> Self {
        StoreError {
            quota: js::is_quota(&value),
            message: named(value),
        }
    }

    fn other(message: impl Into<String>) -> Self {
        StoreError {
            message: message.into(),
            quota: false,
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A JS error as "Name: message" (the name tells a refusal from a file in use).
fn named(value: JsValue) -> String {
    let name = js::error_name(&value);
    let text = message(value);
    match name {
        Some(name) if !name.is_empty() && name != "Error" && !text.contains(&name) => {
            format!("{name}: {text}")
        }
        _ => text,
    }
}

/// Where files are kept.
pub enum Backend {
    Opfs(FileSystemDirectoryHandle),
    CacheApi(Cache),
    /// Nothing persists; the reason is shown to the user.
    Nowhere(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Opfs,
    CacheApi,
}

thread_local! {
    /// The stores this worker found wanting (a handle refused, a write that failed), with why:
    /// every later open skips them.
    static REFUSED: RefCell<Vec<(Kind, String)>> = const { RefCell::new(Vec::new()) };
    /// Whether the Origin Private File System's synchronous handles were tried and worked.
    static OPFS_TRIED: RefCell<bool> = const { RefCell::new(false) };
}

fn refused(kind: Kind) -> Option<String> {
    REFUSED.with(|r| {
        r.borrow()
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, why)| why.clone())
    })
}

fn refuse(kind: Kind, why: &str) {
    REFUSED.with(|r| {
        let mut r = r.borrow_mut();
        if !r.iter().any(|(k, _)| *k == kind) {
            r.push((kind, why.to_string()));
        }
    });
}

/// Opens, writes, reads back and deletes a small file of its own through a synchronous handle:
/// some browsers have the methods and refuse them (WebKit: `NotSupportedError`). A full quota
/// is not a refusal.
async fn try_opfs(dir: &FileSystemDirectoryHandle) -> Result<(), String> {
    let name = format!(".probe-{:016x}", (js_sys::Math::random() * 1e16) as u64);
    let result = async {
        let handle = js::sync_handle(dir, &name).await?;
        let written = js::write_at(&handle, b"g", 0).and_then(|()| handle.flush());
        handle.close();
        match written {
            Err(e) if !js::is_quota(&e) => Err(e),
            _ => Ok(()),
        }
    }
    .await;
    let _ = js::remove(dir, &name).await;
    result.map_err(named)
}

pub struct Storage {
    backend: Backend,
    /// Why a better store is not used (it refused what it advertised), for the page.
    pub note: Option<String>,
}

impl Storage {
    /// OPFS where the worker can really open synchronous handles in it, else the Cache API,
    /// else nowhere; a store that failed before in this worker is skipped.
    pub async fn open() -> Storage {
        let mut note = None;
        let opfs = match refused(Kind::Opfs) {
            Some(why) => Err((why, true)),
            None => match js::opfs_root().await {
                Ok(dir) if OPFS_TRIED.with(|t| *t.borrow()) => Ok(dir),
                Ok(dir) => match try_opfs(&dir).await {
                    Ok(()) => {
                        OPFS_TRIED.with(|t| *t.borrow_mut() = true);
                        Ok(dir)
                    }
                    Err(why) => {
                        let why = format!("it refused a file handle ({why})");
                        refuse(Kind::Opfs, &why);
                        Err((why, true))
                    }
                },
                Err(why) => Err((why, false)),
            },
        };
        let opfs = match opfs {
            Ok(dir) => {
                return Storage {
                    backend: Backend::Opfs(dir),
                    note: None,
                }
            }
            Err((why, advertised)) => {
                if advertised {
                    note = Some(format!("the Origin Private File System is not used: {why}"));
                }
                why
            }
        };
        let cache_api = match refused(Kind::CacheApi) {
            Some(why) => Err(why),
            None => js::open_cache(CACHE_NAME).await,
        };
        match cache_api {
            Ok(cache) => Storage {
                backend: Backend::CacheApi(cache),
                note,
            },
            Err(cache_api) => Storage {
                backend: Backend::Nowhere(format!(
                    "this browser cannot store the model (Origin Private File System: {opfs}; \
                     Cache API: {cache_api}); it is downloaded on every visit"
                )),
                note: None,
            },
        }
    }

    /// Marks this store as unusable for the rest of the worker's life (it failed a write it
    /// should have taken): the next open takes the next store.
    pub fn refuse(&self, why: &str) {
        match self.backend {
            Backend::Opfs(_) => refuse(Kind::Opfs, why),
            Backend::CacheApi(_) => refuse(Kind::CacheApi, why),
            Backend::Nowhere(_) => {}
        }
    }

    /// Why nothing can be kept, where that is so.
    pub fn unavailable(&self) -> Option<&str> {
        match &self.backend {
            Backend::Nowhere(why) => Some(why),
            _ => None,
        }
    }

    /// What holds the files, as the page shows it.
    pub fn describe(&self) -> &'static str {
        match self.backend {
            Backend::Opfs(_) => "Origin Private File System",
            Backend::CacheApi(_) => "Cache API",
            Backend::Nowhere(_) => "nowhere",
        }
    }

    /// The file's size: `Ok(None)` when there is no such file, `Err` when the store cannot say
    /// (never to be taken for "not stored").
    pub async fn size(&self, name: &str) -> Result<Option<u64>, String> {
        match &self.backend {
            Backend::Opfs(dir) => Ok(js::get_file(dir, name).await?.map(|f| f.size() as u64)),
            Backend::CacheApi(cache) => {
                let parts = parts(cache, name).await?;
                Ok((!parts.is_empty()).then(|| contiguous(&parts).1))
            }
            Backend::Nowhere(_) => Ok(None),
        }
    }

    pub async fn remove(&self, name: &str) -> Result<(), String> {
        match &self.backend {
            Backend::Opfs(dir) => js::remove(dir, name).await,
            Backend::CacheApi(cache) => remove_parts(cache, name, 0).await,
            Backend::Nowhere(_) => Ok(()),
        }
    }

    /// Reads the first `len` bytes of the file, a chunk at a time (OPFS: from a snapshot of the
    /// file, which needs no lock).
    pub async fn reader(&self, name: &str, len: u64) -> Result<FileReader, String> {
        match &self.backend {
            Backend::Opfs(dir) => {
                let file = js::get_file(dir, name)
                    .await?
                    .ok_or("the stored file is gone")?;
                Ok(FileReader::Opfs { file, at: 0, len })
            }
            Backend::CacheApi(cache) => {
                let (parts, _) = contiguous(&parts(cache, name).await?);
                Ok(FileReader::CacheApi {
                    cache: cache.clone(),
                    parts,
                    next: 0,
                    at: 0,
                    len,
                })
            }
            Backend::Nowhere(_) => Ok(FileReader::Empty),
        }
    }

    /// Writes the file from byte `at` on, dropping whatever it held from there.
    pub async fn writer(&self, name: &str, at: u64) -> Result<FileWriter, StoreError> {
        match &self.backend {
            Backend::Opfs(dir) => {
                let handle = js::sync_handle(dir, name).await.map_err(StoreError::js)?;
                if let Err(e) = handle.truncate_with_f64(at as f64) {
                    handle.close();
                    return Err(StoreError::js(e));
                }
                Ok(FileWriter::Opfs { handle, at })
            }
            Backend::CacheApi(cache) => {
                remove_parts(cache, name, at)
                    .await
                    .map_err(StoreError::other)?;
                Ok(FileWriter::CacheApi {
                    cache: cache.clone(),
                    name: name.to_string(),
                    start: at,
                    pending: Vec::with_capacity(PART_BYTES),
                })
            }
            Backend::Nowhere(_) => Ok(FileWriter::Nowhere),
        }
    }

    /// Replaces a small file's contents; a failed write leaves no file behind (never a
    /// truncated one).
    pub async fn write_small(&self, name: &str, text: &str) -> Result<(), StoreError> {
        let result = async {
            let mut writer = self.writer(name, 0).await?;
            let written = writer.write(text.as_bytes()).await;
            let closed = writer.close().await;
            written.and(closed)
        }
        .await;
        if result.is_err() {
            let _ = self.remove(name).await;
        }
        result
    }

    /// A small file's text: `Ok(None)` when there is none (or it is not text).
    pub async fn read_small(&self, name: &str) -> Result<Option<String>, String> {
        let Some(size) = self.size(name).await? else {
            return Ok(None);
        };
        let mut reader = self.reader(name, size.min(1 << 20)).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = reader.next_chunk().await? {
            bytes.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8(bytes).ok())
    }
}

/// One stored part of a file in the Cache API: its key, where it starts, how long it is.
#[derive(Debug, Clone)]
pub struct Part {
    key: String,
    offset: u64,
    len: u64,
}

fn part_key(name: &str, offset: u64, len: u64) -> String {
    format!("{PART_PREFIX}{name}/{offset}+{len}")
}

/// The part a cached request's URL names, if it belongs to `name`.
fn parse_part(url: &str, name: &str) -> Option<Part> {
    let marker = format!("{PART_PREFIX}{name}/");
    let at = url.find(&marker)?;
    let key = url[at..].to_string();
    let (offset, len) = url[at + marker.len()..].split_once('+')?;
    Some(Part {
        offset: offset.parse().ok()?,
        len: len.parse().ok()?,
        key,
    })
}

async fn parts(cache: &Cache, name: &str) -> Result<Vec<Part>, String> {
    let keys = JsFuture::from(cache.keys()).await.map_err(named)?;
    let mut parts: Vec<Part> = Array::from(&keys)
        .iter()
        .filter_map(|request| {
            let url = request.unchecked_into::<web_sys::Request>().url();
            parse_part(&url, name)
        })
        .collect();
    parts.sort_by_key(|p| p.offset);
    Ok(parts)
}

/// The parts that follow each other from byte 0 without a gap, and the bytes they cover.
fn contiguous(parts: &[Part]) -> (Vec<Part>, u64) {
    let mut end = 0;
    let mut run = Vec::new();
    for part in parts {
        if part.offset != end {
            break;
        }
        end += part.len;
        run.push(part.clone());
    }
    (run, end)
}

/// Deletes the parts of `name` that reach byte `from` or beyond.
async fn remove_parts(cache: &Cache, name: &str, from: u64) -> Result<(), String> {
    for part in parts(cache, name).await? {
        if part.offset + part.len > from || part.len == 0 {
            JsFuture::from(cache.delete_with_str(&part.key))
                .await
                .map_err(named)?;
        }
    }
    Ok(())
}

pub enum FileReader {
    Opfs {
        file: web_sys::File,
        at: u64,
        len: u64,
    },
    CacheApi {
        cache: Cache,
        parts: Vec<Part>,
        next: usize,
        at: u64,
        len: u64,
    },
    Empty,
}

impl FileReader {
    /// The whole file as one blob, where the store keeps it as one (OPFS) and nothing was read.
    pub fn whole_file(&self) -> Option<&web_sys::File> {
        match self {
            FileReader::Opfs { file, at: 0, .. } => Some(file),
            _ => None,
        }
    }

    /// The next chunk, or None once `len` bytes were read. A file shorter than `len` is an error.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        match self {
            FileReader::Opfs { file, at, len } => {
                if *at >= *len {
                    return Ok(None);
                }
                let end = (*at + READ_CHUNK).min(*len);
                let bytes = js::read_file(file, *at, end).await?;
                if bytes.is_empty() {
                    return Err("the stored file is shorter than recorded".into());
                }
                *at += bytes.len() as u64;
                Ok(Some(bytes))
            }
            FileReader::CacheApi {
                cache,
                parts,
                next,
                at,
                len,
            } => {
                if *at >= *len {
                    return Ok(None);
                }
                let part = parts
                    .get(*next)
                    .ok_or("the stored file is shorter than recorded")?;
                *next += 1;
                let response = JsFuture::from(cache.match_with_str(&part.key))
                    .await
                    .map_err(message)?;
                let response: Response = response
                    .dyn_into()
                    .map_err(|_| "a stored part of the file is missing".to_string())?;
                let body = JsFuture::from(response.array_buffer().map_err(message)?)
                    .await
                    .map_err(message)?;
                let mut bytes = Uint8Array::new(&body).to_vec();
                if bytes.len() as u64 != part.len {
                    return Err(format!(
                        "a stored part holds {} bytes, not the {} recorded",
                        bytes.len(),
                        part.len
                    ));
                }
                bytes.truncate((*len - *at).min(part.len) as usize);
                *at += bytes.len() as u64;
                Ok(Some(bytes))
            }
            FileReader::Empty => Ok(None),
        }
    }

    pub fn close(self) {}
}

pub enum FileWriter {
    Opfs {
        handle: FileSystemSyncAccessHandle,
        at: u64,
    },
    CacheApi {
        cache: Cache,
        name: String,
        /// Where `pending` starts in the file.
        start: u64,
        pending: Vec<u8>,
    },
    Nowhere,
}

impl FileWriter {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        match self {
            FileWriter::Opfs { handle, at } => {
                js::write_at(handle, bytes, *at).map_err(StoreError::js)?;
                *at += bytes.len() as u64;
                Ok(())
            }
            FileWriter::CacheApi { pending, .. } => {
                pending.extend_from_slice(bytes);
                if pending.len() >= PART_BYTES {
                    self.put_pending().await?;
                }
                Ok(())
            }
            FileWriter::Nowhere => Ok(()),
        }
    }

    /// Stores what is still buffered. Call it on every path out, an interrupted download too:
    /// what was written is what a later attempt resumes from.
    pub async fn close(mut self) -> Result<(), StoreError> {
        match &self {
            FileWriter::Opfs { handle, .. } => {
                let result = handle.flush().map_err(StoreError::js);
                handle.close();
                result
            }
            FileWriter::CacheApi { .. } => self.put_pending().await,
            FileWriter::Nowhere => Ok(()),
        }
    }

    /// Whether this writer keeps anything.
    pub fn keeps(&self) -> bool {
        !matches!(self, FileWriter::Nowhere)
    }

    async fn put_pending(&mut self) -> Result<(), StoreError> {
        let FileWriter::CacheApi {
            cache,
            name,
            start,
            pending,
        } = self
        else {
            return Ok(());
        };
        if pending.is_empty() {
            return Ok(());
        }
        let body = Uint8Array::from(pending.as_slice());
        let response = Response::new_with_opt_buffer_source(Some(&body)).map_err(StoreError::js)?;
        let key = part_key(name, *start, pending.len() as u64);
        JsFuture::from(cache.put_with_str(&key, &response))
            .await
            .map_err(StoreError::js)?;
        *start += pending.len() as u64;
        pending.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(offset: u64, len: u64) -> Part {
        Part {
            key: part_key("m.gguf", offset, len),
            offset,
            len,
        }
    }

    #[test]
    fn a_part_key_round_trips_through_its_url() {
        let url = format!("http://127.0.0.1:8080/{}", part_key("m.gguf", 8, 4194304));
        let parsed = parse_part(&url, "m.gguf").unwrap();
        assert_eq!((parsed.offset, parsed.len), (8, 4194304));
        assert_eq!(parsed.key, part_key("m.gguf", 8, 4194304));
        // Another file's parts, even one whose name starts the same, are not this file's.
        assert!(parse_part(&url, "m.gguf.verified").is_none());
        assert!(parse_part(&url.replace("m.gguf", "m.gguf.verified"), "m.gguf").is_none());
    }

    #[test]
    fn only_parts_that_follow_each_other_from_zero_count() {
        let (run, end) = contiguous(&[part(0, 4), part(4, 4), part(12, 4)]);
        assert_eq!((run.len(), end), (2, 8));
        let (run, end) = contiguous(&[part(4, 4)]);
        assert_eq!((run.len(), end), (0, 0));
    }
}
