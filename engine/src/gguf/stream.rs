//! The push parser: bytes in, header and tensors out, as early as their bytes allow.

use super::header::HeaderParser;
use super::{GgufError, GgufHeader, Limits, TensorInfo};
use std::sync::Arc;

/// What [`GgufStream::push`] hands out.
#[derive(Debug)]
pub enum GgufEvent {
    /// The header, once all its bytes have arrived. Always the first event.
    Header(Arc<GgufHeader>),
    /// One tensor, once all its bytes have arrived (in data-section order).
    Tensor(TensorData),
}

#[derive(Debug, Clone)]
pub struct TensorData {
    pub info: TensorInfo,
    pub bytes: Vec<u8>,
}

pub struct GgufStream {
    limits: Limits,
    file_len: Option<u64>,
    /// Header bytes gathered so far (emptied once the header is parsed).
    pending: Vec<u8>,
    parser: HeaderParser,
    header: Option<Arc<GgufHeader>>,
    /// Tensor indices sorted by data offset: the order their bytes arrive in.
    order: Vec<usize>,
    next_tensor: usize,
    /// Absolute file position of the next byte pushed.
    position: u64,
    current: Vec<u8>,
}

impl GgufStream {
    /// `file_len`, when known (a file's size, a response's Content-Length), lets the header
    /// check that every tensor lies inside the file before any data arrives.
    pub fn new(limits: Limits, file_len: Option<u64>) -> Self {
        GgufStream {
            parser: HeaderParser::new(limits.clone(), file_len),
            limits,
            file_len,
            pending: Vec::new(),
            header: None,
            order: Vec::new(),
            next_tensor: 0,
            position: 0,
            current: Vec::new(),
        }
    }

    pub fn header(&self) -> Option<&Arc<GgufHeader>> {
        self.header.as_ref()
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.position + self.pending.len() as u64
    }

    /// Feeds the next chunk; returns what became complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<GgufEvent>, GgufError> {
        let mut events = Vec::new();
        if self.header.is_some() {
            self.feed_data(chunk, &mut events)?;
            return Ok(events);
        }
        self.pending.extend_from_slice(chunk);
        match self.parser.advance(&self.pending)? {
            Some(parsed) => {
                let header = Arc::new(parsed);
                self.order = (0..header.tensors.len()).collect();
                self.order.sort_by_key(|&i| header.tensors[i].offset);
                self.header = Some(Arc::clone(&header));
                events.push(GgufEvent::Header(header));
                let rest = std::mem::take(&mut self.pending);
                self.feed_data(&rest, &mut events)?;
            }
            None => {
                let needed = self.parser.needed().max(self.pending.len());
                if needed as u64 > self.limits.max_header_bytes {
                    return Err(GgufError::HeaderTooLarge {
                        max: self.limits.max_header_bytes,
                    });
                }
            }
        }
        Ok(events)
    }

    /// Call after the last chunk: an error if the header or a tensor is incomplete. (Every
    /// event has already been handed out by `push`.)
    pub fn finish(self) -> Result<(), GgufError> {
        let Some(header) = &self.header else {
            return Err(GgufError::Truncated {
                context: "the header".into(),
                needed: self.parser.needed().max(self.pending.len() + 1) as u64,
                got: self.pending.len() as u64,
            });
        };
        if let Some(&index) = self.order.get(self.next_tensor) {
            let info = &header.tensors[index];
            return Err(GgufError::Truncated {
                context: format!("tensor {:?}", info.name),
                needed: info.n_bytes,
                got: self.current.len() as u64,
            });
        }
        Ok(())
    }

    /// True once the header and every tensor have been handed out.
    pub fn is_complete(&self) -> bool {
        self.header.is_some() && self.next_tensor == self.order.len()
    }

    fn feed_data(
        &mut self,
        mut bytes: &[u8],
        events: &mut Vec<GgufEvent>,
    ) -> Result<(), GgufError> {
        let Some(header) = self.header.clone() else {
            return Ok(());
        };
        if let Some(expected) = self.file_len {
            if self.position + bytes.len() as u64 > expected {
                return Err(GgufError::TooLong { expected });
            }
        }
        while !bytes.is_empty() {
            let Some(&index) = self.order.get(self.next_tensor) else {
                // Past the last tensor: trailing padding, ignored.
                self.position += bytes.len() as u64;
                return Ok(());
            };
            let info = &header.tensors[index];
            let start = header.data_offset + info.offset;
            let end = start + info.n_bytes;
            if self.position < start {
                let skip = (start - self.position).min(bytes.len() as u64) as usize;
                bytes = &bytes[skip..];
                self.position += skip as u64;
                continue;
            }
            let take = (end - self.position).min(bytes.len() as u64) as usize;
            if self.current.is_empty() {
                // One allocation per tensor: growing by doubling copies a large one several times.
                self.current.reserve_exact(info.n_bytes as usize);
            }
            self.current.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            self.position += take as u64;
            if self.position == end {
                events.push(GgufEvent::Tensor(TensorData {
                    info: info.clone(),
                    bytes: std::mem::take(&mut self.current),
                }));
                self.next_tensor += 1;
            }
        }
        Ok(())
    }
}
