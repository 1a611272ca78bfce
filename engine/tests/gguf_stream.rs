//! The GGUF stream reader: chunking does not change the result, tensors come out as soon as
//! their bytes are in, and hostile files get a typed error (never a panic). The proptest at the
//! end mutates valid files at random for a bounded number of cases.
#![cfg(not(target_arch = "wasm32"))]

use engine::gguf::{
    GgmlType, GgufError, GgufEvent, GgufHeader, GgufStream, GgufWriter, Limits, MetadataValue,
};
use proptest::prelude::*;

/// A small valid file: three tensors of different types, some metadata (nested array too).
fn sample_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.metadata("general.architecture", MetadataValue::String("test".into()))
        .metadata("test.count", MetadataValue::U32(3))
        .metadata(
            "test.words",
            MetadataValue::Array(vec![
                MetadataValue::String("a".into()),
                MetadataValue::String("bc".into()),
            ]),
        )
        .metadata(
            "test.nested",
            MetadataValue::Array(vec![MetadataValue::Array(vec![
                MetadataValue::I32(-1),
                MetadataValue::I32(2),
            ])]),
        )
        .metadata("test.pi", MetadataValue::F64(std::f64::consts::PI));
    w.tensor_f32("norm", &[5], &[1.0, 2.0, 3.0, 4.0, 5.0]);
    w.tensor(
        "q8",
        &[32, 3],
        GgmlType::Q8_0,
        (0..34 * 3).map(|i| i as u8).collect(),
    );
    w.tensor(
        "q41",
        &[64, 2],
        GgmlType::Q4_1,
        (0..20 * 4).map(|i| (i * 7) as u8).collect(),
    );
    w.to_bytes()
}

/// A tensor's name and bytes.
type NamedBytes = (String, Vec<u8>);

/// Feeds `bytes` in chunks of `chunk` bytes; returns the header and tensors, or the error.
fn read(
    bytes: &[u8],
    chunk: usize,
    file_len: Option<u64>,
) -> Result<(GgufHeader, Vec<NamedBytes>), GgufError> {
    let mut stream = GgufStream::new(Limits::default(), file_len);
    let mut events = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        events.extend(stream.push(piece)?);
    }
    stream.finish()?;
    let mut header = None;
    let mut tensors = Vec::new();
    for event in events {
        match event {
            GgufEvent::Header(h) => header = Some((*h).clone()),
            GgufEvent::Tensor(t) => tensors.push((t.info.name, t.bytes)),
        }
    }
    Ok((header.expect("a header event"), tensors))
}

#[test]
fn chunk_size_does_not_change_the_result() {
    let file = sample_file();
    let whole = read(&file, file.len(), Some(file.len() as u64)).unwrap();
    assert_eq!(whole.0.tensors.len(), 3);
    assert_eq!(whole.0.get_str("general.architecture").unwrap(), "test");
    assert_eq!(whole.1[0].1.len(), 20);
    for chunk in [1, 2, 7, 31, 64, 1000] {
        assert_eq!(read(&file, chunk, None).unwrap(), whole, "chunk {chunk}");
    }
}

#[test]
fn header_and_tensors_come_out_as_soon_as_their_last_byte_arrives() {
    let file = sample_file();
    let (header, _) = read(&file, file.len(), None).unwrap();
    let mut stream = GgufStream::new(Limits::default(), None);
    let mut header_at = None;
    let mut seen = Vec::new();
    for (i, byte) in file.iter().enumerate() {
        for event in stream.push(std::slice::from_ref(byte)).unwrap() {
            match event {
                GgufEvent::Header(_) => header_at = Some(i + 1),
                GgufEvent::Tensor(t) => seen.push((t.info.name.clone(), i + 1)),
            }
        }
    }
    // The last tensor info ends where the alignment padding before the data begins.
    let header_end = header_at.expect("a header event");
    assert!(
        header_end <= header.data_offset as usize && header.data_offset as usize - header_end < 32
    );
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (name, arrived_at) in seen {
        let info = header.tensor(&name).unwrap();
        let end = (header.data_offset + info.offset + info.n_bytes) as usize;
        assert_eq!(arrived_at, end, "{name} should be handed out at byte {end}");
    }
}

fn patch(file: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut out = file.to_vec();
    out[at..at + bytes.len()].copy_from_slice(bytes);
    out
}

fn first_error(bytes: &[u8], file_len: Option<u64>) -> GgufError {
    read(bytes, 13, file_len).expect_err("should be refused")
}

#[test]
fn hostile_headers_get_named_errors() {
    let file = sample_file();
    assert!(matches!(
        first_error(&patch(&file, 0, b"GGUX"), None),
        GgufError::BadMagic(_)
    ));
    assert!(matches!(
        first_error(&patch(&file, 4, &9u32.to_le_bytes()), None),
        GgufError::UnsupportedVersion(9)
    ));
    assert!(matches!(
        first_error(&patch(&file, 8, &u64::MAX.to_le_bytes()), None),
        GgufError::TooMany {
            what: "tensors",
            ..
        }
    ));
    assert!(matches!(
        first_error(&patch(&file, 16, &(1u64 << 40).to_le_bytes()), None),
        GgufError::TooMany {
            what: "metadata entries",
            ..
        }
    ));
    // The first key's length.
    assert!(matches!(
        first_error(&patch(&file, 24, &(1u64 << 50).to_le_bytes()), None),
        GgufError::StringTooLong { .. }
    ));
}

/// Byte offset of the tensor info of `name` (its name's length field).
fn tensor_info_at(file: &[u8], name: &str) -> usize {
    let needle: Vec<u8> = (name.len() as u64)
        .to_le_bytes()
        .iter()
        .chain(name.as_bytes())
        .copied()
        .collect();
    file.windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap()
}

#[test]
fn hostile_tensor_infos_get_named_errors() {
    let file = sample_file();
    let q8 = tensor_info_at(&file, "q8") + 8 + 2; // after the name
    let dims_at = q8 + 4;
    let type_at = dims_at + 16;
    let offset_at = type_at + 4;
    // Unknown type.
    assert!(matches!(
        first_error(&patch(&file, type_at, &77u32.to_le_bytes()), None),
        GgufError::UnknownTensorType { ggml_type: 77, .. }
    ));
    // Zero and too many dimensions.
    assert!(matches!(
        first_error(&patch(&file, q8, &0u32.to_le_bytes()), None),
        GgufError::BadShape { .. }
    ));
    assert!(matches!(
        first_error(&patch(&file, q8, &9u32.to_le_bytes()), None),
        GgufError::BadShape { .. }
    ));
    // A row that is not whole blocks, and a shape whose size overflows.
    assert!(matches!(
        first_error(&patch(&file, dims_at, &33u64.to_le_bytes()), None),
        GgufError::BadShape { .. }
    ));
    assert!(matches!(
        first_error(&patch(&file, dims_at + 8, &u64::MAX.to_le_bytes()), None),
        GgufError::BadShape { .. }
    ));
    // Misaligned, overlapping, and outside the file.
    assert!(matches!(
        first_error(&patch(&file, offset_at, &3u64.to_le_bytes()), None),
        GgufError::Misaligned { .. }
    ));
    assert!(matches!(
        first_error(&patch(&file, offset_at, &0u64.to_le_bytes()), None),
        GgufError::Overlap { .. }
    ));
    assert!(matches!(
        first_error(
            &patch(&file, offset_at, &(1u64 << 30).to_le_bytes()),
            Some(file.len() as u64)
        ),
        GgufError::OutsideFile { .. }
    ));
}

#[test]
fn truncated_files_say_what_is_missing() {
    let file = sample_file();
    let (header, _) = read(&file, file.len(), None).unwrap();
    match first_error(&file[..file.len() - 5], None) {
        GgufError::Truncated {
            context,
            needed,
            got,
        } => {
            assert!(context.contains("q41"), "{context}");
            assert_eq!((needed, got), (80, 75));
        }
        other => panic!("{other:?}"),
    }
    match first_error(&file[..header.data_offset as usize - 40], None) {
        GgufError::Truncated { context, .. } => assert_eq!(context, "the header"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        first_error(&file, Some(file.len() as u64 - 1)),
        GgufError::TooLong { .. } | GgufError::OutsideFile { .. }
    ));
}

#[test]
fn a_header_over_the_limit_is_refused_without_reading_on() {
    let mut w = GgufWriter::new();
    w.metadata("big", MetadataValue::String("x".repeat(5000)));
    let file = w.to_bytes();
    let limits = Limits {
        max_header_bytes: 1000,
        max_string_bytes: 1 << 20,
        ..Limits::default()
    };
    let mut stream = GgufStream::new(limits, None);
    let err = file.chunks(100).find_map(|c| stream.push(c).err());
    assert!(
        matches!(err, Some(GgufError::HeaderTooLarge { max: 1000 })),
        "{err:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        max_shrink_iters: 2000,
        .. ProptestConfig::default()
    })]

    /// Random mutations of a valid file, fed in random chunks: never a panic, and the outcome
    /// does not depend on the chunking.
    #[test]
    fn mutated_files_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in prop::option::of(any::<prop::sample::Index>()),
        chunk in 1usize..200,
        with_len in any::<bool>(),
    ) {
        let mut file = sample_file();
        for (at, value) in edits {
            let i = at.index(file.len());
            file[i] = value;
        }
        if let Some(cut) = cut {
            file.truncate(cut.index(file.len()));
        }
        let len = with_len.then_some(file.len() as u64);
        let whole = read(&file, usize::MAX, len);
        let chunked = read(&file, chunk, len);
        prop_assert_eq!(whole, chunked);
    }
}
