//! GGUF, the weight format of llama.cpp (ggml `docs/gguf.md`), read from a byte stream.
//!
//! [`GgufStream`] takes bytes in chunks of any size (a `fetch` body in the page, a file in the
//! CLI). It parses the header as soon as its bytes are in, then hands out each tensor as soon as
//! its bytes are complete, keeping only the tensor being assembled in memory. Hostile input gets
//! a [`GgufError`] naming the problem: every count, length and size from the file is checked
//! against [`Limits`] before anything is allocated for it.
//!
//! [`blocks`] decodes ggml's quantized block formats: the reference every backend's kernels are
//! tested against.

pub mod blocks;
mod header;
mod metadata;
mod stream;
mod types;
mod writer;

pub use metadata::{GgufHeader, MetadataValue, TensorInfo};
pub use stream::{GgufEvent, GgufStream, TensorData};
pub use types::{ggml_type_name, GgmlType};
pub use writer::GgufWriter;

/// Caps on what a file may ask for. The defaults fit every model Glassbox ships with room to
/// spare, and keep a malicious header from reserving gigabytes.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_tensors: u64,
    pub max_metadata_entries: u64,
    pub max_string_bytes: u64,
    pub max_array_len: u64,
    pub max_array_depth: u32,
    /// The whole header (metadata and tensor infos) must fit in this many bytes.
    pub max_header_bytes: u64,
    pub max_tensor_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tensors: 65_536,
            max_metadata_entries: 65_536,
            max_string_bytes: 1 << 20,
            max_array_len: 1 << 24,
            max_array_depth: 4,
            max_header_bytes: 64 << 20,
            max_tensor_bytes: 4 << 30,
        }
    }
}

/// What is wrong with a GGUF file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file: the first bytes are {0:02x?}, expected \"GGUF\"")]
    BadMagic(Vec<u8>),
    #[error("unsupported GGUF version {0} (versions 2 and 3 are supported)")]
    UnsupportedVersion(u32),
    #[error("the file declares {count} {what}, more than the limit of {max}")]
    TooMany {
        what: &'static str,
        count: u64,
        max: u64,
    },
    #[error("a string of {len} bytes at offset {offset} exceeds the limit of {max}")]
    StringTooLong { len: u64, max: u64, offset: u64 },
    #[error("a string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: u64 },
    #[error("unknown metadata value type {value_type} for key {key:?}")]
    UnknownValueType { key: String, value_type: u32 },
    #[error("metadata key {key:?}: arrays nested deeper than {max} levels")]
    ArrayTooDeep { key: String, max: u32 },
    #[error("duplicate metadata key {0:?}")]
    DuplicateKey(String),
    #[error("metadata key {key:?} should be {expected}")]
    WrongMetadataType { key: String, expected: &'static str },
    #[error("missing metadata key {0:?}")]
    MissingKey(String),
    #[error("general.alignment is {0}, which is not a power of two between 1 and 65536")]
    BadAlignment(u64),
    #[error(
        "tensor {name:?} has type {type_name} (ggml type {ggml_type}), which Glassbox does not \
         read; it reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K and Q6_K"
    )]
    UnknownTensorType {
        name: String,
        ggml_type: u32,
        type_name: String,
    },
    #[error("tensor {name:?}: {reason}")]
    BadShape { name: String, reason: String },
    #[error("duplicate tensor name {0:?}")]
    DuplicateTensor(String),
    #[error("tensor {name:?} starts at data offset {offset}, not a multiple of the alignment {alignment}")]
    Misaligned {
        name: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensors {first:?} and {second:?} overlap")]
    Overlap { first: String, second: String },
    #[error("tensor {name:?} ends at byte {end}, past the end of the file ({file_len} bytes)")]
    OutsideFile {
        name: String,
        end: u64,
        file_len: u64,
    },
    #[error("the header is larger than the limit of {max} bytes")]
    HeaderTooLarge { max: u64 },
    #[error("the file is truncated: {context} needs {needed} bytes, only {got} arrived")]
    Truncated {
        context: String,
        needed: u64,
        got: u64,
    },
    #[error("more bytes arrived than the {expected}-byte file should have")]
    TooLong { expected: u64 },
}
