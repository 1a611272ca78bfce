//! The GGUF header parser: magic, version, metadata key/values, tensor infos, resumable over
//! bytes that arrive in pieces.

use super::metadata::{GgufHeader, MetadataValue, TensorInfo};
use super::{GgmlType, GgufError, Limits};
use std::collections::{BTreeMap, HashSet};

/// Why a parse step stopped.
pub(super) enum Stop {
    /// The bytes end before the current item does; nothing can progress until the buffer holds
    /// this many bytes in all.
    NeedMore(usize),
    Invalid(GgufError),
}

impl From<GgufError> for Stop {
    fn from(e: GgufError) -> Self {
        Stop::Invalid(e)
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    limits: &'a Limits,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], Stop> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .ok_or(Stop::NeedMore(usize::MAX))?;
        if end > self.bytes.len() {
            return Err(Stop::NeedMore(end));
        }
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, Stop> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, Stop> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, Stop> {
        let offset = self.pos as u64;
        let len = self.u64()?;
        if len > self.limits.max_string_bytes {
            return Err(GgufError::StringTooLong {
                len,
                max: self.limits.max_string_bytes,
                offset,
            }
            .into());
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 { offset }.into())
    }

    /// An array's element type and count, checked against the limits.
    fn array_header(&mut self, key: &str, depth: u32) -> Result<(u32, u64), Stop> {
        if depth >= self.limits.max_array_depth {
            return Err(GgufError::ArrayTooDeep {
                key: key.to_string(),
                max: self.limits.max_array_depth,
            }
            .into());
        }
        let item_type = self.u32()?;
        if min_value_bytes(item_type).is_none() {
            return Err(GgufError::UnknownValueType {
                key: key.to_string(),
                value_type: item_type,
            }
            .into());
        }
        let count = self.u64()?;
        if count > self.limits.max_array_len {
            return Err(GgufError::TooMany {
                what: "array elements",
                count,
                max: self.limits.max_array_len,
            }
            .into());
        }
        Ok((item_type, count))
    }

    fn value(&mut self, key: &str, value_type: u32, depth: u32) -> Result<MetadataValue, Stop> {
        Ok(match value_type {
            0 => MetadataValue::U8(self.array::<1>()?[0]),
            1 => MetadataValue::I8(self.array::<1>()?[0] as i8),
            2 => MetadataValue::U16(u16::from_le_bytes(self.array()?)),
            3 => MetadataValue::I16(i16::from_le_bytes(self.array()?)),
            4 => MetadataValue::U32(self.u32()?),
            5 => MetadataValue::I32(i32::from_le_bytes(self.array()?)),
            6 => MetadataValue::F32(f32::from_le_bytes(self.array()?)),
            7 => MetadataValue::Bool(self.array::<1>()?[0] != 0),
            8 => MetadataValue::String(self.string()?),
            9 => {
                let (item_type, count) = self.array_header(key, depth)?;
                // Reserve only what the bytes at hand can hold: the count is the file's word.
                let present =
                    (self.bytes.len() - self.pos) as u64 / min_value_bytes(item_type).unwrap_or(1);
                let mut items = Vec::with_capacity(count.min(present) as usize);
                for _ in 0..count {
                    items.push(self.value(key, item_type, depth + 1)?);
                }
                MetadataValue::Array(items)
            }
            10 => MetadataValue::U64(self.u64()?),
            11 => MetadataValue::I64(i64::from_le_bytes(self.array()?)),
            12 => MetadataValue::F64(f64::from_le_bytes(self.array()?)),
            other => {
                return Err(GgufError::UnknownValueType {
                    key: key.to_string(),
                    value_type: other,
                }
                .into())
            }
        })
    }
}

/// The fewest bytes a value of this type takes in the file (None: unknown type).
fn min_value_bytes(value_type: u32) -> Option<u64> {
    Some(match value_type {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 => 8,
        9 => 12,
        10..=12 => 8,
        _ => return None,
    })
}

/// A top-level metadata array being read element by element (the vocabulary is ~50,000
/// strings: re-reading it whole at every new chunk would cost O(n²)).
struct OpenArray {
    key: String,
    item_type: u32,
    remaining: u64,
    items: Vec<MetadataValue>,
}

/// The header parser: resumable, so each call reads only what is new. Every item (counts, a
/// key/value, an array element, a tensor info) is read whole or not at all.
pub(super) struct HeaderParser {
    limits: Limits,
    file_len: Option<u64>,
    /// Bytes consumed by the items read so far.
    pos: usize,
    /// Nothing can progress before the buffer holds this many bytes.
    needed: usize,
    counts: Option<(u32, u64, u64)>,
    metadata: BTreeMap<String, MetadataValue>,
    open_array: Option<OpenArray>,
    tensors: Vec<TensorInfo>,
    names: HashSet<String>,
}

impl HeaderParser {
    pub(super) fn new(limits: Limits, file_len: Option<u64>) -> Self {
        HeaderParser {
            limits,
            file_len,
            pos: 0,
            needed: 0,
            counts: None,
            metadata: BTreeMap::new(),
            open_array: None,
            tensors: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// Reads on from where the last call stopped; `bytes` is everything received so far.
    /// Returns the header once its last byte is in.
    pub(super) fn advance(&mut self, bytes: &[u8]) -> Result<Option<GgufHeader>, GgufError> {
        if bytes.len() < self.needed {
            return Ok(None);
        }
        let limits = self.limits.clone();
        loop {
            let mut cur = Cursor {
                bytes,
                pos: self.pos,
                limits: &limits,
            };
            match self.step(&mut cur) {
                Ok(done) => {
                    self.pos = cur.pos;
                    if done {
                        return self.finish().map(Some);
                    }
                }
                Err(Stop::NeedMore(needed)) => {
                    self.needed = needed;
                    return Ok(None);
                }
                Err(Stop::Invalid(e)) => return Err(e),
            }
        }
    }

    /// Reads one item; true once the last tensor info is read.
    fn step(&mut self, cur: &mut Cursor<'_>) -> Result<bool, Stop> {
        let Some((_, tensor_count, kv_count)) = self.counts else {
            let magic = cur.array::<4>()?;
            if &magic != b"GGUF" {
                return Err(GgufError::BadMagic(magic.to_vec()).into());
            }
            let version = cur.u32()?;
            if !(2..=3).contains(&version) {
                return Err(GgufError::UnsupportedVersion(version).into());
            }
            let tensor_count = cur.u64()?;
            check_count("tensors", tensor_count, self.limits.max_tensors)?;
            let kv_count = cur.u64()?;
            check_count(
                "metadata entries",
                kv_count,
                self.limits.max_metadata_entries,
            )?;
            self.counts = Some((version, tensor_count, kv_count));
            return Ok(tensor_count == 0 && kv_count == 0);
        };
        if let Some(open) = &mut self.open_array {
            let item = cur.value(&open.key, open.item_type, 1)?;
            open.items.push(item);
            open.remaining -= 1;
            if open.remaining == 0 {
                if let Some(open) = self.open_array.take() {
                    self.insert(open.key, MetadataValue::Array(open.items))?;
                }
            }
        } else if (self.metadata.len() as u64) < kv_count {
            let key = cur.string()?;
            let value_type = cur.u32()?;
            if value_type == 9 {
                let (item_type, count) = cur.array_header(&key, 0)?;
                if count == 0 {
                    self.insert(key, MetadataValue::Array(Vec::new()))?;
                } else {
                    self.open_array = Some(OpenArray {
                        key,
                        item_type,
                        remaining: count,
                        items: Vec::with_capacity(count.min(4096) as usize),
                    });
                }
            } else {
                let value = cur.value(&key, value_type, 0)?;
                self.insert(key, value)?;
            }
        } else if (self.tensors.len() as u64) < tensor_count {
            self.tensor_info(cur)?;
        }
        Ok(self.metadata.len() as u64 == kv_count
            && self.open_array.is_none()
            && self.tensors.len() as u64 == tensor_count)
    }

    fn insert(&mut self, key: String, value: MetadataValue) -> Result<(), Stop> {
        if self.metadata.contains_key(&key) {
            return Err(GgufError::DuplicateKey(key).into());
        }
        self.metadata.insert(key, value);
        Ok(())
    }

    fn alignment(&self) -> Result<u64, GgufError> {
        match self.metadata.get("general.alignment") {
            None => Ok(32),
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() && a <= 65_536 => Ok(a),
                Some(a) => Err(GgufError::BadAlignment(a)),
                None => Err(GgufError::WrongMetadataType {
                    key: "general.alignment".into(),
                    expected: "an unsigned integer",
                }),
            },
        }
    }

    fn tensor_info(&mut self, cur: &mut Cursor<'_>) -> Result<(), Stop> {
        let name = cur.string()?;
        let n_dims = cur.u32()?;
        if !(1..=4).contains(&n_dims) {
            return Err(bad_shape(&name, format!("{n_dims} dimensions (1 to 4 allowed)")).into());
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(cur.u64()?);
        }
        let type_id = cur.u32()?;
        let offset = cur.u64()?;
        let ggml_type =
            GgmlType::from_u32(type_id).ok_or_else(|| GgufError::UnknownTensorType {
                name: name.clone(),
                ggml_type: type_id,
                type_name: super::ggml_type_name(type_id),
            })?;
        let n_bytes = tensor_bytes(&name, &dims, ggml_type, &self.limits)?;
        let alignment = self.alignment()?;
        if offset % alignment != 0 {
            return Err(GgufError::Misaligned {
                name,
                offset,
                alignment,
            }
            .into());
        }
        if !self.names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor(name).into());
        }
        self.tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            n_bytes,
        });
        Ok(())
    }

    fn finish(&mut self) -> Result<GgufHeader, GgufError> {
        let alignment = self.alignment()?;
        let version = self.counts.map_or(3, |c| c.0);
        let data_offset = (self.pos as u64).div_ceil(alignment) * alignment;
        check_layout(&self.tensors, data_offset, self.file_len)?;
        Ok(GgufHeader {
            version,
            metadata: std::mem::take(&mut self.metadata),
            tensors: std::mem::take(&mut self.tensors),
            alignment,
            data_offset,
        })
    }

    /// Bytes the parser must see before it can go on (for the "header too large" check).
    pub(super) fn needed(&self) -> usize {
        self.needed
    }
}

fn check_count(what: &'static str, count: u64, max: u64) -> Result<(), GgufError> {
    if count > max {
        Err(GgufError::TooMany { what, count, max })
    } else {
        Ok(())
    }
}

fn bad_shape(name: &str, reason: String) -> GgufError {
    GgufError::BadShape {
        name: name.to_string(),
        reason,
    }
}

fn tensor_bytes(
    name: &str,
    dims: &[u64],
    ggml_type: GgmlType,
    limits: &Limits,
) -> Result<u64, GgufError> {
    if dims.contains(&0) {
        return Err(bad_shape(name, format!("a zero dimension in {dims:?}")));
    }
    let rows = dims[1..]
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad_shape(name, format!("dimensions {dims:?} overflow")))?;
    let row_bytes = ggml_type.bytes_for(dims[0]).ok_or_else(|| {
        bad_shape(
            name,
            format!(
                "first dimension {} is not a multiple of the {} block length {}",
                dims[0],
                ggml_type,
                ggml_type.block_len()
            ),
        )
    })?;
    let n_bytes = row_bytes
        .checked_mul(rows)
        .ok_or_else(|| bad_shape(name, format!("dimensions {dims:?} overflow")))?;
    if n_bytes > limits.max_tensor_bytes {
        return Err(bad_shape(
            name,
            format!(
                "{n_bytes} bytes exceed the limit of {}",
                limits.max_tensor_bytes
            ),
        ));
    }
    Ok(n_bytes)
}

/// Tensors must not overlap, and must end inside the file when its length is known.
fn check_layout(
    tensors: &[TensorInfo],
    data_offset: u64,
    file_len: Option<u64>,
) -> Result<(), GgufError> {
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        let end = pair[0].offset.checked_add(pair[0].n_bytes);
        if end.is_none_or(|end| end > pair[1].offset) {
            return Err(GgufError::Overlap {
                first: pair[0].name.clone(),
                second: pair[1].name.clone(),
            });
        }
    }
    if let Some(file_len) = file_len {
        for t in &by_offset {
            let end = data_offset
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.n_bytes))
                .unwrap_or(u64::MAX);
            if end > file_len {
                return Err(GgufError::OutsideFile {
                    name: t.name.clone(),
                    end,
                    file_len,
                });
            }
        }
    }
    Ok(())
}
