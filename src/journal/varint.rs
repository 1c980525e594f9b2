//! LEB128 unsigned varints, used inside sealed blocks where most fields are small.
//!
//! Invariant: `decode` never reads past the buffer and refuses encodings longer than 10 bytes
//! or overflowing u64.

/// Appends `value` as an unsigned LEB128 varint.
pub fn encode(buf: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        buf.push((value as u8) | 0x80);
        value >>= 7;
    }
    buf.push(value as u8);
}

/// Decodes a varint from the start of `buf`; returns the value and the bytes used.
pub fn decode(buf: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in buf.iter().take(10).enumerate() {
        let low = u64::from(byte & 0x7f);
        if i == 9 && *byte > 1 {
            return None;
        }
        value |= low << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(value: u64) {
            let mut buf = Vec::new();
            super::encode(&mut buf, value);
            prop_assert_eq!(super::decode(&buf), Some((value, buf.len())));
        }
    }
}
