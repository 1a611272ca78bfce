use engine::gguf::{GgufEvent, GgufStream, Limits, MetadataValue};
use std::io::Read;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let mut f = std::fs::File::open(&path).unwrap();
    let mut s = GgufStream::new(Limits::default(), None);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        for e in s.push(&buf[..n]).unwrap() {
            if let GgufEvent::Header(h) = e {
                for (k, v) in &h.metadata {
                    match v {
                        MetadataValue::Array(a) => println!("{k}: array of {}", a.len()),
                        MetadataValue::String(s) if s.len() > 200 => {
                            println!("{k}: {:?}…", &s[..200])
                        }
                        _ => println!("{k}: {v:?}"),
                    }
                }
                for t in h.tensors.iter().take(12) {
                    println!("{} {:?} {}", t.name, t.dims, t.ggml_type);
                }
                return;
            }
        }
    }
}
