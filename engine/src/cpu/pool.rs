//! A small thread pool for the CPU kernels.
//!
//! A decode step runs ~120 parallel matmuls of a few hundred microseconds each. Rayon's workers
//! fall asleep between them and waking them costs tens of microseconds each time; here, as in
//! llama.cpp, workers spin for a short while after a task before they park, so back-to-back
//! tasks start at once.
//!
//! Natively the workers are OS threads. In the browser, a wasm build with atomics (the page's
//! threaded worker) gets its workers from a spawner the page installs ([`set_spawner`]: Web
//! Workers that instantiate the same module on the same shared memory); the plain wasm build has
//! no threads, so its pool runs every job on the calling thread. Jobs never share an output, so
//! how many threads run them never changes a result.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, OnceLock};

/// How long a worker spins for new work before it parks.
#[cfg(not(target_arch = "wasm32"))]
const SPIN_FOR: std::time::Duration = std::time::Duration::from_micros(300);
/// wasm has no clock without JavaScript: spins instead (a few hundred microseconds).
#[cfg(target_arch = "wasm32")]
const SPINS_BEFORE_PARKING: u32 = 1 << 17;

/// Starts a thread that runs the closure; `Err` says why it could not.
pub type Spawner = fn(Box<dyn FnOnce() + Send>) -> Result<(), String>;

type Job = dyn Fn(usize) + Sync;

struct Shared {
    /// The current task's job, lifetime-erased. Written by `run` only while no index of any
    /// task is claimed; read by a worker only after it claimed an index of the current task,
    /// during which `run` is still waiting (so the job is alive).
    job: UnsafeCell<*const Job>,
    count: AtomicUsize,
    /// Generation (high 32 bits) and next unclaimed index (low 32 bits), in one word so that a
    /// claim can only succeed for the task its worker saw.
    state: AtomicU64,
    done: AtomicUsize,
    parked: Mutex<usize>,
    wake: Condvar,
    shutdown: AtomicBool,
}

// SAFETY: see the field comments: `job` is never written while it can be read.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

impl Shared {
    /// Claims the next index of task `generation`, if that task is current and has one left.
    fn claim(&self, generation: u64) -> Option<usize> {
        loop {
            let state = self.state.load(SeqCst);
            let index = (state & 0xFFFF_FFFF) as usize;
            if state >> 32 != generation || index >= self.count.load(SeqCst) {
                return None;
            }
            if self
                .state
                .compare_exchange(state, state + 1, SeqCst, SeqCst)
                .is_ok()
            {
                return Some(index);
            }
        }
    }

    fn run_claimed(&self, generation: u64) {
        while let Some(i) = self.claim(generation) {
            // SAFETY: an index is claimed, so `run` is waiting and the job is alive.
            unsafe { (**self.job.get())(i) };
            self.done.fetch_add(1, SeqCst);
        }
    }
}

pub struct Pool {
    shared: Arc<Shared>,
    threads: usize,
    run_lock: Mutex<()>,
}

impl Pool {
    /// A pool of `threads` threads in all: the caller of `run` is one of them. Fewer where a
    /// thread cannot be started (always one in a wasm build without atomics).
    pub fn new(threads: usize) -> Self {
        let wanted = if cfg!(all(target_arch = "wasm32", not(target_feature = "atomics"))) {
            1
        } else {
            threads.max(1)
        };
        let nothing: &Job = &|_| {};
        let shared = Arc::new(Shared {
            job: UnsafeCell::new(nothing as *const Job),
            count: AtomicUsize::new(0),
            state: AtomicU64::new(0),
            done: AtomicUsize::new(0),
            parked: Mutex::new(0),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
        });
        let mut threads = 1;
        for i in 1..wanted {
            let shared = Arc::clone(&shared);
            match spawn(i, Box::new(move || worker(&shared))) {
                Ok(()) => threads += 1,
                Err(_) => break,
            }
        }
        Pool {
            shared,
            threads,
            run_lock: Mutex::new(()),
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Calls `job(i)` for every `i` in `0..count`, spread over the pool; returns when all are
    /// done.
    pub fn run(&self, count: usize, job: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1 || count <= 1 {
            (0..count).for_each(job);
            return;
        }
        let _one_task_at_a_time = self.run_lock.lock().unwrap_or_else(|p| p.into_inner());
        let s = &*self.shared;
        let generation = (s.state.load(SeqCst) >> 32) + 1;
        // SAFETY: no index is claimed now (the previous task finished every index before its
        // `run` returned), so no worker reads `job`; the erased lifetime is honoured because
        // this function waits below until every claimed index is done.
        unsafe {
            *s.job.get() =
                std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static Job>(job) as *const Job;
        }
        s.count.store(count, SeqCst);
        s.done.store(0, SeqCst);
        s.state.store(generation << 32, SeqCst);
        if *s.parked.lock().unwrap_or_else(|p| p.into_inner()) > 0 {
            s.wake.notify_all();
        }
        s.run_claimed(generation);
        while s.done.load(SeqCst) < count {
            std::hint::spin_loop();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, SeqCst);
        self.shared.wake.notify_all();
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn spawn(index: usize, body: Box<dyn FnOnce() + Send>) -> Result<(), String> {
    std::thread::Builder::new()
        .name(format!("glassbox-cpu-{index}"))
        .spawn(body)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[cfg(target_arch = "wasm32")]
fn spawn(_index: usize, body: Box<dyn FnOnce() + Send>) -> Result<(), String> {
    let spawner = SPAWNER.get().ok_or("no thread spawner is installed")?;
    spawner(body)
}

static SPAWNER: OnceLock<Spawner> = OnceLock::new();

/// Installs how a wasm build starts threads (the page's threaded worker does, before the pool's
/// first use). Natively the pool uses OS threads and ignores it.
pub fn set_spawner(spawner: Spawner) {
    let _ = SPAWNER.set(spawner);
}

/// A worker's spinning since its last task: says when it is time to park.
struct Spinning {
    spins: u32,
    #[cfg(not(target_arch = "wasm32"))]
    started: std::time::Instant,
}

impl Spinning {
    fn start() -> Self {
        Spinning {
            spins: 0,
            #[cfg(not(target_arch = "wasm32"))]
            started: std::time::Instant::now(),
        }
    }

    fn should_park(&mut self) -> bool {
        self.spins = self.spins.wrapping_add(1);
        #[cfg(not(target_arch = "wasm32"))]
        return self.spins.is_multiple_of(256) && self.started.elapsed() > SPIN_FOR;
        #[cfg(target_arch = "wasm32")]
        return self.spins >= SPINS_BEFORE_PARKING;
    }
}

fn worker(s: &Shared) {
    let mut seen = s.state.load(SeqCst) >> 32;
    loop {
        // Spin a little, then park until a new task arrives.
        let mut spinning = Spinning::start();
        while s.state.load(SeqCst) >> 32 == seen {
            if s.shutdown.load(SeqCst) {
                return;
            }
            std::hint::spin_loop();
            if spinning.should_park() {
                let mut parked = s.parked.lock().unwrap_or_else(|p| p.into_inner());
                *parked += 1;
                while s.state.load(SeqCst) >> 32 == seen && !s.shutdown.load(SeqCst) {
                    parked = s.wake.wait(parked).unwrap_or_else(|p| p.into_inner());
                }
                *parked -= 1;
            }
        }
        seen = s.state.load(SeqCst) >> 32;
        s.run_claimed(seen);
    }
}

static GLOBAL: OnceLock<Pool> = OnceLock::new();
static REQUESTED_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets how many threads the CPU kernels use; only effective before their first use.
pub fn set_threads(threads: usize) {
    REQUESTED_THREADS.store(threads, SeqCst);
}

/// The process-wide pool: all cores natively, one thread in wasm, unless [`set_threads`] said
/// otherwise.
pub fn global() -> &'static Pool {
    GLOBAL.get_or_init(|| {
        let requested = REQUESTED_THREADS.load(SeqCst);
        let threads = if requested > 0 {
            requested
        } else if cfg!(target_arch = "wasm32") {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        Pool::new(threads)
    })
}

/// Values below which [`for_each_chunk`] stays on the calling thread: waking the pool costs
/// about what a few thousand values of an elementwise op do (a decode step's are all below).
const PARALLEL_VALUES: usize = 1 << 14;

/// Calls `f(start, chunk)` over `data` cut into consecutive chunks of whole `unit`s (`start`:
/// the chunk's first index), spread over the global pool where `data` is large. For ops whose
/// every value (or every row of `unit` values) depends only on itself: the split changes no
/// result.
pub fn for_each_chunk(data: &mut [f32], unit: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let pool = global();
    let unit = unit.max(1);
    if data.len() < PARALLEL_VALUES || pool.threads() == 1 || data.len() < 2 * unit {
        f(0, data);
        return;
    }
    // A few chunks per thread, so that a thread slowed by the machine does not hold up the rest.
    let units = data.len().div_ceil(unit);
    let chunk = units.div_ceil(4 * pool.threads()) * unit;
    let chunks: Vec<Mutex<(usize, &mut [f32])>> = data
        .chunks_mut(chunk)
        .enumerate()
        .map(|(i, c)| Mutex::new((i * chunk, c)))
        .collect();
    pool.run(chunks.len(), &|i| {
        let mut guard = chunks[i].lock().unwrap_or_else(|p| p.into_inner());
        let (start, chunk) = &mut *guard;
        f(*start, chunk);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_index_runs_once_across_many_tasks() {
        let pool = Pool::new(3);
        for count in [1usize, 2, 7, 100, 1000] {
            let hits: Vec<AtomicUsize> = (0..count).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..50 {
                pool.run(count, &|i| {
                    hits[i].fetch_add(1, SeqCst);
                });
            }
            assert!(hits.iter().all(|h| h.load(SeqCst) == 50), "count {count}");
        }
    }

    #[test]
    fn chunks_cover_the_data_once_in_whole_units() {
        for (len, unit) in [
            (10usize, 1usize),
            (PARALLEL_VALUES * 3 + 7, 1),
            (576 * 420, 576),
        ] {
            let mut data: Vec<f32> = (0..len).map(|i| i as f32).collect();
            for_each_chunk(&mut data, unit, |start, chunk| {
                assert_eq!(start % unit, 0);
                assert!(chunk.len() % unit == 0 || start + chunk.len() == len);
                for (i, v) in chunk.iter_mut().enumerate() {
                    assert_eq!(
                        *v,
                        (start + i) as f32,
                        "chunk at {start} holds its own values"
                    );
                    *v = -*v;
                }
            });
            assert!(data.iter().enumerate().all(|(i, &v)| v == -(i as f32)));
        }
    }
}
