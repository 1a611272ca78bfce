//! A small static file server for `dist/`: GET and HEAD, byte ranges (the page resumes an
//! interrupted model download with Range requests), correct MIME types, optional
//! cross-origin isolation headers, and, for the e2e tests only, fault injection.
//!
//! The engine worker's scripts come with [`WORKER_CSP`]: the worker fetches the models, and a
//! dedicated worker runs under its script's policy. The page's service worker adds the origins
//! the user allowed to its `connect-src`. GGUF files may be read from other origins (CORS), so
//! that a page served elsewhere can load models from this server once its user allows it.
//!
//! std only: it must run before anything else is installed.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The engine worker's Content-Security-Policy (the page's service worker writes the same
/// default, `www/sw.js`): its own scripts and wasm, and fetches from this origin only.
pub const WORKER_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; object-src 'none'; base-uri 'none'";

/// The engine worker's scripts (one-thread and threaded builds, and its threads' own), which
/// get [`WORKER_CSP`].
fn is_worker_script(path: &str) -> bool {
    matches!(
        path,
        "/worker_loader.js"
            | "/worker.js"
            | "/worker_mt_loader.js"
            | "/worker_mt.js"
            | "/pool_worker.js"
            | "/hash_worker.js"
    )
}

/// The engine worker's entry scripts, which a test patch goes in front of.
fn is_worker_loader(path: &str) -> bool {
    matches!(path, "/worker_loader.js" | "/worker_mt_loader.js")
}

#[derive(Clone, Default)]
pub struct Options {
    /// Sends COOP/COEP so the page is cross-origin isolated (needed by wasm threads). Not under
    /// [`TEST_SUBPATH`]: there the page is as on a static host that sends no such headers (its
    /// service worker isolates it).
    pub cross_origin_isolation: bool,
    /// Enables `/__test/…` endpoints: a request log, one-shot download cuts and slow downloads,
    /// files served as by a server without Range support, a network that is gone, and a worker
    /// that runs as if the browser had no Origin Private File System, or one that refuses
    /// synchronous handles or writes.
    pub test_hooks: bool,
}

/// A cut the tests arm: the next GET of `path` stops after `after_bytes` bytes of body.
#[derive(Clone)]
struct Cut {
    path: String,
    after_bytes: u64,
}

/// A slow download the tests arm: the next GET of `path` sends at most `bytes_per_second`.
#[derive(Clone)]
struct Slow {
    path: String,
    bytes_per_second: u64,
}

#[derive(Default)]
struct TestState {
    log: VecDeque<String>,
    cuts: Vec<Cut>,
    slow: Vec<Slow>,
    offline: bool,
    /// Paths whose GETs ignore Range headers (the whole file, 200), like a server without
    /// Range support.
    no_range: Vec<String>,
    /// A script run in the engine worker before the engine starts (see [`WORKER_PATCHES`]).
    worker_patch: Option<&'static str>,
}

/// What the `worker-patch` hook can put before the engine worker's loader, by name: browsers
/// that lack or refuse what the store uses.
const WORKER_PATCHES: &[(&str, &str)] = &[
    // No Origin Private File System at all (the Cache API holds the model).
    ("no-opfs", "delete StorageManager.prototype.getDirectory;"),
    // The methods are there, the handles are refused (WebKit with its file-system features on).
    (
        "refuse-sync",
        "FileSystemFileHandle.prototype.createSyncAccessHandle = function () { \
         return Promise.reject(new DOMException('The operation is not supported.', 'NotSupportedError')); };",
    ),
    // The thread that hashes a stored model does not start (its script is not found): the
    // engine worker hashes it itself.
    (
        "no-hash-thread",
        "(() => { const Worker = self.Worker; self.Worker = function (url, options) { \
         return new Worker(String(url).includes('hash_worker') ? './no-such-hash-worker.js' : url, options); }; })();",
    ),
    // Handles open, and writes fail once 8 MB were written (a store that breaks mid-way).
    (
        "failing-writes",
        "(() => { const write = FileSystemSyncAccessHandle.prototype.write; let total = 0; \
         FileSystemSyncAccessHandle.prototype.write = function (buffer, options) { \
         total += buffer.byteLength; \
         if (total > 8e6) throw new DOMException('The file could not be written.', 'InvalidStateError'); \
         return write.call(this, buffer, options); }; })();",
    ),
];

pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

struct Shared {
    dist: PathBuf,
    options: Options,
    test: Mutex<TestState>,
}

impl Server {
    pub fn bind(
        addr: impl ToSocketAddrs,
        dist: PathBuf,
        options: Options,
    ) -> std::io::Result<Self> {
        Ok(Server {
            listener: TcpListener::bind(addr)?,
            shared: Arc::new(Shared {
                dist,
                options,
                test: Mutex::new(TestState::default()),
            }),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn run_forever(self) {
        for stream in self.listener.incoming().flatten() {
            let shared = Arc::clone(&self.shared);
            std::thread::spawn(move || {
                let _ = handle(stream, &shared);
            });
        }
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    range: Option<String>,
    /// Asked for under [`TEST_SUBPATH`] (served as a plain static host would).
    under_test_subpath: bool,
}

fn read_request(stream: &TcpStream) -> std::io::Result<Option<Request>> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("/").to_string();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_string());
            }
        }
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Ok(Some(Request {
        method,
        path: percent_decode(&path),
        query,
        range,
        under_test_subpath: false,
    }))
}

/// Under test hooks the page is also published here, as a course site would host it.
pub const TEST_SUBPATH: &str = "/course/glassbox/";

fn handle(mut stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let Some(mut request) = read_request(&stream)? else {
        return Ok(());
    };
    if shared.options.test_hooks {
        if let Some(rest) = request.path.strip_prefix(TEST_SUBPATH) {
            request.path = format!("/{rest}");
            request.under_test_subpath = true;
        }
        if let Some(hook) = request.path.strip_prefix("/__test/") {
            return test_hook(&mut stream, shared, hook, &request.query);
        }
        let mut test = lock(&shared.test);
        test.log.push_back(format!(
            "{} {} range={}",
            request.method,
            request.path,
            request.range.as_deref().unwrap_or("-")
        ));
        if test.log.len() > 1000 {
            test.log.pop_front();
        }
        if test.offline {
            // Like a network that is gone: the connection closes without an answer.
            return Ok(());
        }
        if let Some(patch) = test
            .worker_patch
            .filter(|_| is_worker_loader(&request.path))
        {
            drop(test);
            return serve_patched_worker(&mut stream, shared, &request, patch);
        }
    }
    if request.method == "OPTIONS" && request.path.ends_with(".gguf") {
        // A CORS preflight for a Range request from another origin.
        let head = "HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Allow-Methods: GET, HEAD\r\nAccess-Control-Allow-Headers: Range\r\nAccess-Control-Max-Age: 600\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        return stream.write_all(head.as_bytes());
    }
    if request.method != "GET" && request.method != "HEAD" {
        return respond_plain(
            &mut stream,
            405,
            "Method Not Allowed",
            "GET and HEAD only\n",
        );
    }
    let Some(file_path) = resolve(&shared.dist, &request.path) else {
        return respond_plain(&mut stream, 404, "Not Found", "not found\n");
    };
    let mut file = File::open(&file_path)?;
    let size = file.metadata()?.len();
    let mut range = request.range.as_deref();
    if shared.options.test_hooks && lock(&shared.test).no_range.contains(&request.path) {
        range = None;
    }
    let (status, start, end) = match range.map(|r| parse_range(r, size)) {
        None => (200, 0, size),
        Some(Some((start, end))) => (206, start, end),
        Some(None) => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return stream.write_all(head.as_bytes());
        }
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n",
        if status == 206 { "Partial Content" } else { "OK" },
        mime_type(&file_path),
        end - start
    );
    if range.is_some() || request.range.is_none() {
        head.push_str("Accept-Ranges: bytes\r\n");
    }
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{size}\r\n",
            end.saturating_sub(1)
        ));
    }
    if shared.options.cross_origin_isolation && !request.under_test_subpath {
        head.push_str("Cross-Origin-Opener-Policy: same-origin\r\n");
        head.push_str("Cross-Origin-Embedder-Policy: require-corp\r\n");
    }
    if is_worker_script(&request.path) {
        head.push_str(&format!("Content-Security-Policy: {WORKER_CSP}\r\n"));
    }
    if request.path.ends_with(".gguf") {
        head.push_str("Access-Control-Allow-Origin: *\r\n");
        head.push_str(
            "Access-Control-Expose-Headers: Content-Length, Content-Range, Accept-Ranges\r\n",
        );
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if request.method == "HEAD" {
        return Ok(());
    }
    let mut remaining = end - start;
    let mut rate = None;
    if shared.options.test_hooks {
        let mut test = lock(&shared.test);
        if let Some(i) = test.cuts.iter().position(|c| c.path == request.path) {
            let cut = test.cuts.remove(i);
            remaining = remaining.min(cut.after_bytes);
        }
        if let Some(i) = test.slow.iter().position(|s| s.path == request.path) {
            rate = Some(test.slow.remove(i).bytes_per_second.max(1));
        }
    }
    file.seek(SeekFrom::Start(start))?;
    let mut buffer = vec![0u8; 256 * 1024];
    while remaining > 0 {
        let want = buffer.len().min(remaining as usize);
        let got = file.read(&mut buffer[..want])?;
        if got == 0 {
            break;
        }
        stream.write_all(&buffer[..got])?;
        remaining -= got as u64;
        if let Some(rate) = rate {
            std::thread::sleep(std::time::Duration::from_secs_f64(got as f64 / rate as f64));
        }
    }
    // A cut response ends here, short of its Content-Length: the client sees a broken download.
    stream.flush()
}

fn test_hook(
    stream: &mut TcpStream,
    shared: &Shared,
    hook: &str,
    query: &str,
) -> std::io::Result<()> {
    let param = |key: &str| {
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| percent_decode(v))
        })
    };
    let mut test = lock(&shared.test);
    let body = match hook {
        "log" => test.log.iter().cloned().collect::<Vec<_>>().join("\n"),
        "clear-log" => {
            test.log.clear();
            "ok".into()
        }
        "cut" => match (param("path"), param("after").and_then(|a| a.parse().ok())) {
            (Some(path), Some(after_bytes)) => {
                test.cuts.push(Cut { path, after_bytes });
                "ok".into()
            }
            _ => "cut needs path= and after=".into(),
        },
        "slow" => match (param("path"), param("rate").and_then(|r| r.parse().ok())) {
            (Some(path), Some(bytes_per_second)) => {
                test.slow.push(Slow {
                    path,
                    bytes_per_second,
                });
                "ok".into()
            }
            _ => "slow needs path= and rate= (bytes per second)".into(),
        },
        "offline" => {
            test.offline = param("on").as_deref() == Some("1");
            "ok".into()
        }
        "no-opfs" => {
            test.worker_patch =
                (param("on").as_deref() == Some("1")).then_some(WORKER_PATCHES[0].1);
            "ok".into()
        }
        "worker-patch" => match param("name").as_deref() {
            None | Some("") => {
                test.worker_patch = None;
                "ok".into()
            }
            Some(name) => match WORKER_PATCHES.iter().find(|(n, _)| *n == name) {
                Some((_, patch)) => {
                    test.worker_patch = Some(patch);
                    "ok".into()
                }
                None => format!("no worker patch {name:?}"),
            },
        },
        "no-range" => match (param("path"), param("on").as_deref() == Some("1")) {
            (Some(path), on) => {
                test.no_range.retain(|p| *p != path);
                if on {
                    test.no_range.push(path);
                }
                "ok".into()
            }
            (None, _) => "no-range needs path= (and on=1 to switch it on)".into(),
        },
        _ => "unknown hook".into(),
    };
    drop(test);
    respond_plain(stream, 200, "OK", &body)
}

/// A worker loader (`path`) with a patch run before the engine starts (the Origin Private File
/// System taken away, or its handles or writes refused), so the e2e tests can check the
/// fallbacks in a Chromium that has it all.
fn serve_patched_worker(
    stream: &mut TcpStream,
    shared: &Shared,
    request: &Request,
    patch: &str,
) -> std::io::Result<()> {
    let loader = std::fs::read_to_string(shared.dist.join(request.path.trim_start_matches('/')))?;
    let body = format!("{patch}\n{loader}");
    let isolation = if shared.options.cross_origin_isolation && !request.under_test_subpath {
        "Cross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/javascript\r\nContent-Length: {}\r\nCache-Control: no-store\r\nContent-Security-Policy: {WORKER_CSP}\r\n{isolation}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn respond_plain(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    body: &str,
) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}

/// Maps a URL path to a file under `dist`, refusing anything that climbs out of it.
fn resolve(dist: &Path, url_path: &str) -> Option<PathBuf> {
    let mut path = dist.to_path_buf();
    for component in Path::new(url_path.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => path.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if path.is_dir() {
        path.push("index.html");
    }
    path.is_file().then_some(path)
}

/// Parses a single `bytes=` range into a half-open [start, end), or None if unsatisfiable.
fn parse_range(header: &str, size: u64) -> Option<(u64, u64)> {
    let spec = header.strip_prefix("bytes=")?.trim();
    let (first, last) = spec.split_once('-')?;
    let (start, end) = if first.is_empty() {
        let suffix: u64 = last.parse().ok()?;
        (size.saturating_sub(suffix), size)
    } else {
        let start: u64 = first.parse().ok()?;
        let end = if last.is_empty() {
            size
        } else {
            last.parse::<u64>().ok()?.saturating_add(1).min(size)
        };
        (start, end)
    };
    (start < end).then_some((start, end))
}

fn mime_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "md" | "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 100)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }

    #[test]
    fn paths_stay_inside_dist() {
        let dir = std::env::temp_dir();
        assert_eq!(resolve(&dir, "/../etc/passwd"), None);
        assert_eq!(percent_decode("a%20b%2F"), "a b/");
    }
}
