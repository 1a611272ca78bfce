//! The device: adapter, device and queue, the first failure (loss, out of memory, invalid
//! work) kept for the next read-back to report, buffer creation and a plain read-back.

pub use crate::error::GpuError;
use std::sync::Arc;

/// An adapter, its device and queue, and a description for people ("SwiftShader Device (Vulkan)").
#[derive(Clone)]
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    /// The adapter can time passes (used by `glassbox bench` for per-kernel timings).
    pub timestamps: bool,
    /// The first device loss or uncaptured error (out of memory, validation), reported by the
    /// next read-back.
    failure: Arc<std::sync::Mutex<Option<GpuError>>>,
}

impl GpuContext {
    /// Requests a high-performance adapter and a device with the adapter's own limits, so large
    /// weight buffers fit wherever the hardware allows. No optional features are required:
    /// in particular no `shader-f16`, which SwiftShader and many GPUs lack.
    pub async fn new() -> Result<Self, GpuError> {
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
        descriptor.backends = if cfg!(target_arch = "wasm32") {
            wgpu::Backends::BROWSER_WEBGPU
        } else {
            wgpu::Backends::VULKAN
        };
        let instance = wgpu::Instance::new(descriptor);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        // Only optional features that cost nothing when unused.
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("glassbox"),
                required_features: if timestamps {
                    wgpu::Features::TIMESTAMP_QUERY
                } else {
                    wgpu::Features::empty()
                },
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoDevice(e.to_string()))?;
        let failure = Arc::new(std::sync::Mutex::new(None));
        let on_lost = Arc::clone(&failure);
        device.set_device_lost_callback(move |reason, message| {
            record(
                &on_lost,
                GpuError::DeviceLost(format!("{reason:?}: {message}")),
            );
        });
        let on_error = Arc::clone(&failure);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            let failure = match &error {
                wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory(error.to_string()),
                _ => GpuError::Other(error.to_string()),
            };
            record(&on_error, failure);
        }));
        Ok(GpuContext {
            device,
            queue,
            info,
            limits,
            timestamps,
            failure,
        })
    }

    /// "name (backend)", e.g. "llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)" natively or
    /// "google swiftshader (WebGPU)" in Chromium.
    pub fn description(&self) -> String {
        let name = match browser_adapter_name(&self.device) {
            Some(name) => name,
            None if !self.info.name.is_empty() => self.info.name.clone(),
            None => format!(
                "vendor {:#x} device {:#x}",
                self.info.vendor, self.info.device
            ),
        };
        let mut text = format!("{name} ({})", self.info.backend);
        if !self.info.driver.is_empty() && cfg!(not(target_arch = "wasm32")) {
            text.push_str(&format!(", driver {}", self.info.driver));
        }
        text
    }

    /// The first failure since the device was created (lost, out of memory, invalid work).
    pub fn check_lost(&self) -> Result<(), GpuError> {
        match self.failure.lock().ok().and_then(|slot| slot.clone()) {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }

    /// Marks the device as lost, as a real loss would (tests of the CPU fallback use it).
    pub fn simulate_loss(&self, reason: &str) {
        record(&self.failure, GpuError::DeviceLost(reason.to_string()));
    }

    /// Refuses a buffer the adapter could not bind whole, before it is made.
    pub(super) fn check_binding_size(&self, what: &str, bytes: u64) -> Result<(), GpuError> {
        let limit = self.limits.max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(GpuError::OutOfMemory(format!(
                "{what} needs {bytes} bytes in one buffer; this adapter binds at most {limit}"
            )));
        }
        Ok(())
    }

    /// The largest buffer the adapter both makes and binds whole: the size of a weight
    /// matrix's parts.
    pub(super) fn max_part_bytes(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// A storage buffer initialised from `data`.
    pub fn storage_buffer(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: padded_size(data.len()),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buffer, 0, &pad_to_4(data));
        buffer
    }

    /// An uninitialised storage buffer of `bytes` bytes.
    pub fn empty_buffer(&self, label: &str, bytes: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: padded_size(bytes),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    }

    /// Copies `bytes` bytes of `source` back to the CPU. The only place that waits for the GPU.
    pub async fn read_back(
        &self,
        source: &wgpu::Buffer,
        bytes: usize,
    ) -> Result<Vec<u8>, GpuError> {
        self.check_lost()?;
        let size = padded_size(bytes);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read back"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(source, 0, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        let slice = staging.slice(..);
        let (sender, receiver) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            let _ = sender.send(result);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Other(e.to_string()))?;
        receiver
            .await
            .map_err(|_| GpuError::DeviceLost("the read-back was dropped".into()))?
            .map_err(|e| {
                self.check_lost()
                    .err()
                    .unwrap_or(GpuError::Other(format!("mapping failed: {e}")))
            })?;
        let data = slice
            .get_mapped_range()
            .map_err(|e| GpuError::Other(format!("mapped range: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(data[..bytes].to_vec())
    }
}

fn record(slot: &std::sync::Mutex<Option<GpuError>>, failure: GpuError) {
    if let Ok(mut slot) = slot.lock() {
        slot.get_or_insert(failure);
    }
}

/// Browsers leave wgpu's adapter name empty; `GPUDevice.adapterInfo` has vendor and
/// architecture ("google", "swiftshader").
#[cfg(target_arch = "wasm32")]
fn browser_adapter_name(device: &wgpu::Device) -> Option<String> {
    use js_sys::Reflect;
    let device = device.as_webgpu()?;
    let info = Reflect::get(device.as_ref(), &"adapterInfo".into()).ok()?;
    let parts: Vec<String> = ["description", "vendor", "architecture", "device"]
        .iter()
        .filter_map(|key| Reflect::get(&info, &(*key).into()).ok()?.as_string())
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(" "))
}

#[cfg(not(target_arch = "wasm32"))]
fn browser_adapter_name(_device: &wgpu::Device) -> Option<String> {
    None
}

/// Buffer sizes must be multiples of 4 bytes (and copies of 4), and never zero.
pub(crate) fn padded_size(bytes: usize) -> u64 {
    (bytes.max(4).div_ceil(4) * 4) as u64
}

fn pad_to_4(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if data.len().is_multiple_of(4) && !data.is_empty() {
        std::borrow::Cow::Borrowed(data)
    } else {
        let mut padded = data.to_vec();
        padded.resize(padded_size(data.len()) as usize, 0);
        std::borrow::Cow::Owned(padded)
    }
}
