//! Where the worker keeps files between visits: the Origin Private File System where the
//! browser offers it (fast, random access), else the Cache API (every browser with service
//! workers has it), else nowhere.
//!
//! Both look the same to the model store above: files with a size, read from the start in
//! chunks, written from an offset on. The Cache API holds whole responses only, so a file there is
//! a run of parts, each a response keyed by its offset and length
//! (`glassbox-store/<name>/<offset>+<len>`); a file's size is the length of its parts that follow
//! each other without a gap from byte 0. An interrupted write keeps every part already put, which
//! is what lets a download resume.

use super::js::{self, message};
use js_sys::{Array, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, FileSystemDirectoryHandle, FileSystemSyncAccessHandle, Response};

/// The Cache API cache that holds the model; the service worker's shell cache is another one.
const CACHE_NAME: &str = "glassbox-models-v1";
const PART_PREFIX: &str = "glassbox-store/";
/// The Cache API writer puts a part each time this many bytes have arrived.
const PART_BYTES: usize = 4 << 20;
/// How much the OPFS reader reads at a time.
const READ_CHUNK: usize = 1 << 20;

pub enum Storage {
    Opfs(FileSystemDirectoryHandle),
    CacheApi(Cache),
    /// Nothing persists; the reason is shown to the user.
    Nowhere(String),
}

impl Storage {
    /// OPFS where the worker can open synchronous handles in it, else the Cache API.
    pub async fn open() -> Storage {
        let opfs = match js::opfs_root().await {
            Ok(dir) => return Storage::Opfs(dir),
            Err(e) => e,
        };
        match js::open_cache(CACHE_NAME).await {
            Ok(cache) => Storage::CacheApi(cache),
            Err(cache_api) => Storage::Nowhere(format!(
                "this browser cannot store the model (Origin Private File System: {opfs}; \
                 Cache API: {cache_api}); it is downloaded on every visit"
            )),
        }
    }

    /// What holds the files, as the page shows it.
    pub fn describe(&self) -> &'static str {
        match self {
            Storage::Opfs(_) => "Origin Private File System",
            Storage::CacheApi(_) => "Cache API",
            Storage::Nowhere(_) => "nowhere",
        }
    }

    /// The file's size, or None when there is no such file.
    pub async fn size(&self, name: &str) -> Option<u64> {
        match self {
            Storage::Opfs(dir) => {
                if !js::file_exists(dir, name).await {
                    return None;
                }
                let handle = js::sync_handle(dir, name).await.ok()?;
                let size = handle.get_size().unwrap_or(0.0) as u64;
                handle.close();
                Some(size)
            }
            Storage::CacheApi(cache) => {
                let parts = parts(cache, name).await;
                (!parts.is_empty()).then(|| contiguous(&parts).1)
            }
            Storage::Nowhere(_) => None,
        }
    }

    pub async fn remove(&self, name: &str) {
        match self {
            Storage::Opfs(dir) => {
                let _ = js::remove(dir, name).await;
            }
            Storage::CacheApi(cache) => remove_parts(cache, name, 0).await,
            Storage::Nowhere(_) => {}
        }
    }

    /// Reads the first `len` bytes of the file, a chunk at a time.
    pub async fn reader(&self, name: &str, len: u64) -> Result<FileReader, String> {
        match self {
            Storage::Opfs(dir) => Ok(FileReader::Opfs {
                handle: js::sync_handle(dir, name).await?,
                buffer: vec![0u8; READ_CHUNK],
                at: 0,
                len,
            }),
            Storage::CacheApi(cache) => {
                let (parts, _) = contiguous(&parts(cache, name).await);
                Ok(FileReader::CacheApi {
                    cache: cache.clone(),
                    parts,
                    next: 0,
                    at: 0,
                    len,
                })
            }
            Storage::Nowhere(_) => Ok(FileReader::Empty),
        }
    }

    /// Writes the file from byte `at` on, dropping whatever it held from there.
    pub async fn writer(&self, name: &str, at: u64) -> Result<FileWriter, String> {
        match self {
            Storage::Opfs(dir) => {
                let handle = js::sync_handle(dir, name).await?;
                handle.truncate_with_f64(at as f64).map_err(message)?;
                Ok(FileWriter::Opfs { handle, at })
            }
            Storage::CacheApi(cache) => {
                remove_parts(cache, name, at).await;
                Ok(FileWriter::CacheApi {
                    cache: cache.clone(),
                    name: name.to_string(),
                    start: at,
                    pending: Vec::with_capacity(PART_BYTES),
                })
            }
            Storage::Nowhere(_) => Ok(FileWriter::Nowhere),
        }
    }

    /// Replaces a small file's contents.
    pub async fn write_small(&self, name: &str, text: &str) {
        if let Ok(mut writer) = self.writer(name, 0).await {
            let _ = writer.write(text.as_bytes()).await;
            let _ = writer.close().await;
        }
    }

    pub async fn read_small(&self, name: &str) -> Option<String> {
        let size = self.size(name).await?.min(1 << 20);
        let mut reader = self.reader(name, size).await.ok()?;
        let mut bytes = Vec::new();
        let result = loop {
            match reader.next_chunk().await {
                Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        reader.close();
        result.ok()?;
        String::from_utf8(bytes).ok()
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

async fn parts(cache: &Cache, name: &str) -> Vec<Part> {
    let Ok(keys) = JsFuture::from(cache.keys()).await else {
        return Vec::new();
    };
    let mut parts: Vec<Part> = Array::from(&keys)
        .iter()
        .filter_map(|request| {
            let url = request.unchecked_into::<web_sys::Request>().url();
            parse_part(&url, name)
        })
        .collect();
    parts.sort_by_key(|p| p.offset);
    parts
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
async fn remove_parts(cache: &Cache, name: &str, from: u64) {
    for part in parts(cache, name).await {
        if part.offset + part.len > from || part.len == 0 {
            let _ = JsFuture::from(cache.delete_with_str(&part.key)).await;
        }
    }
}

pub enum FileReader {
    Opfs {
        handle: FileSystemSyncAccessHandle,
        buffer: Vec<u8>,
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
    /// The next chunk, or None once `len` bytes were read. A file shorter than `len` is an error.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, String> {
        match self {
            FileReader::Opfs {
                handle,
                buffer,
                at,
                len,
            } => {
                if *at >= *len {
                    return Ok(None);
                }
                let want = ((*len - *at) as usize).min(buffer.len());
                let n = js::read_at(handle, &mut buffer[..want], *at)?;
                if n == 0 {
                    return Err("the stored file is shorter than recorded".into());
                }
                *at += n as u64;
                Ok(Some(buffer[..n].to_vec()))
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

    pub fn close(self) {
        if let FileReader::Opfs { handle, .. } = self {
            handle.close();
        }
    }
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
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            FileWriter::Opfs { handle, at } => {
                js::write_at(handle, bytes, *at)?;
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
    pub async fn close(mut self) -> Result<(), String> {
        match &self {
            FileWriter::Opfs { handle, .. } => {
                let result = handle.flush().map_err(message);
                handle.close();
                result
            }
            FileWriter::CacheApi { .. } => self.put_pending().await,
            FileWriter::Nowhere => Ok(()),
        }
    }

    async fn put_pending(&mut self) -> Result<(), String> {
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
        let response = Response::new_with_opt_buffer_source(Some(&body)).map_err(message)?;
        let key = part_key(name, *start, pending.len() as u64);
        JsFuture::from(cache.put_with_str(&key, &response))
            .await
            .map_err(message)?;
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
