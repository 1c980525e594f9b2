//! Fuzzes the frame decoder of unsealed segments (`logbook::journal::record::decode_frame`).
//!
//! Any input: decoding must not panic. A decoded frame must have a non-empty payload and account
//! for its bytes exactly, and re-encoding its fields (`encode_frame`, with a prev hash taken from
//! the input) must give a frame that differs from the input only in `crc` and `hash`, decodes to
//! the same fields, and is a fixed point of decode + encode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logbook::journal::record::{
    FRAME_OVERHEAD_BYTES, FRAME_PREFIX_BYTES, FrameError, chain_hash, decode_frame, encode_frame,
};

/// Payload bound given to the decoder (small, so the fuzzer also explores `BadLength`).
const MAX_PAYLOAD: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Ok((frame, used)) = decode_frame(data, MAX_PAYLOAD) else {
        return;
    };
    assert!(used <= data.len(), "frame claims bytes beyond the input");
    assert_eq!(used, FRAME_OVERHEAD_BYTES + frame.payload.len());
    assert!(frame.payload.len() <= MAX_PAYLOAD);
    assert!(
        !frame.payload.is_empty(),
        "an empty payload must be a bad length"
    );
    assert_eq!(&data[FRAME_OVERHEAD_BYTES..used], frame.payload);

    // Every strict prefix of a valid frame is incomplete (a torn write), never another error.
    for cut in [
        0,
        FRAME_PREFIX_BYTES - 1,
        FRAME_PREFIX_BYTES,
        used / 2,
        used - 1,
    ] {
        assert_eq!(
            decode_frame(&data[..cut], MAX_PAYLOAD).err(),
            Some(FrameError::Incomplete),
            "prefix of {cut} bytes"
        );
    }

    // Re-encode with the decoded fields, chaining from a prev hash drawn from the input.
    let mut prev = [0u8; 32];
    for (i, b) in data[used..].iter().take(32).enumerate() {
        prev[i] = *b;
    }
    let mut buf = Vec::new();
    let hash = encode_frame(
        &mut buf,
        &prev,
        frame.offset,
        frame.ts_us,
        frame.schema_version,
        frame.payload,
    );
    assert_eq!(
        hash,
        chain_hash(
            &prev,
            frame.offset,
            frame.ts_us,
            frame.schema_version,
            frame.payload
        )
    );
    assert_eq!(buf.len(), used);
    assert_eq!(buf[..4], data[..4], "len field changed");
    assert_eq!(buf[8..26], data[8..26], "offset, ts or version changed");
    assert_eq!(buf[26..58], hash, "hash not stored in place");
    assert_eq!(buf[58..], data[58..used], "payload changed");
    if data[26..58] == hash {
        assert_eq!(
            buf[..],
            data[..used],
            "same fields and hash must give the same bytes"
        );
    }

    let (again, used_again) = decode_frame(&buf, MAX_PAYLOAD).expect("re-encoded frame decodes");
    assert_eq!(used_again, used);
    assert_eq!(
        (
            again.offset,
            again.ts_us,
            again.schema_version,
            again.payload,
            again.hash
        ),
        (
            frame.offset,
            frame.ts_us,
            frame.schema_version,
            frame.payload,
            hash
        )
    );
    let mut twice = Vec::new();
    encode_frame(
        &mut twice,
        &prev,
        again.offset,
        again.ts_us,
        again.schema_version,
        again.payload,
    );
    assert_eq!(twice, buf, "decode + encode is not a fixed point");
});
