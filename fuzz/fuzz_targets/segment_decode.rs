//! Fuzzes the sealed-segment decoders (`logbook::journal::segment`): `decode_segment` on
//! arbitrary bytes (as given, and behind the segment magic so the fuzzer starts past it) and
//! `Footer::decode` on its own. Neither may panic, whatever the input. Whatever they accept must
//! satisfy the format's invariants (schemas/journal-format.md, section 7): dense offsets, time
//! order, each block's first record at its entry's `first_ts`, non-empty payloads, and a chain
//! linking `prev_hash` to `last_hash`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use logbook::journal::record::chain_hash;
use logbook::journal::segment::{Footer, SEGMENT_MAGIC, decode_segment};

fuzz_target!(|data: &[u8]| {
    check_segment(data);
    let mut with_magic = SEGMENT_MAGIC.to_vec();
    with_magic.extend_from_slice(data);
    check_segment(&with_magic);

    // The footer decoder alone: the first 8 input bytes give the footer's file position (where
    // the blocks must end), the rest are the footer bytes.
    if let (Some(pos), Some(bytes)) = (data.get(..8), data.get(8..)) {
        let mut footer_pos = [0u8; 8];
        footer_pos.copy_from_slice(pos);
        if let Ok(footer) = Footer::decode(bytes, u64::from_le_bytes(footer_pos)) {
            assert_eq!(
                footer.encode(),
                bytes,
                "an accepted footer must re-encode to its bytes"
            );
            assert!(!footer.blocks.is_empty());
            assert_eq!(footer.count, footer.last_offset - footer.first_offset + 1);
            assert!(
                footer.last_offset < u64::MAX,
                "no room for a successor offset"
            );
        }
    }
});

fn check_segment(file: &[u8]) {
    let Ok((footer, records)) = decode_segment(file) else {
        return;
    };
    assert_eq!(records.len() as u64, footer.count);
    // Each block's first record sits exactly at the entry's first_ts (its delta must be 0).
    for b in &footer.blocks {
        let first = &records[(b.first_offset - footer.first_offset) as usize];
        assert_eq!(
            first.ts_us, b.first_ts,
            "block at {} starts off its first_ts",
            b.first_offset
        );
    }
    let mut prev = footer.prev_hash;
    let mut last_ts = footer.first_ts;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            r.offset,
            footer.first_offset + i as u64,
            "offsets are not dense"
        );
        assert!(r.ts_us >= last_ts, "time runs backwards at {}", r.offset);
        assert!(
            !r.payload.is_empty(),
            "empty payload accepted at {}",
            r.offset
        );
        assert_eq!(
            r.hash,
            chain_hash(&prev, r.offset, r.ts_us, r.schema_version, &r.payload),
            "chain broken at {}",
            r.offset
        );
        prev = r.hash;
        last_ts = r.ts_us;
    }
    assert_eq!(prev, footer.last_hash);
    assert_eq!(last_ts, footer.last_ts);
}
