//! Lower-case hex digits for ids written on every request (request ids, trace ids), two
//! digits per table lookup, and header values made from them without a second copy.

use bytes::Bytes;
use http::HeaderValue;

/// The two hex digits of every byte value.
static PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [DIGITS[i >> 4], DIGITS[i & 15]];
        i += 1;
    }
    table
};

/// Write `n` as 16 hex digits, most significant first.
pub fn write_u64(n: u64, out: &mut [u8; 16]) {
    for (pair, byte) in out.chunks_exact_mut(2).zip(n.to_be_bytes()) {
        pair.copy_from_slice(&PAIRS[usize::from(byte)]);
    }
}

/// Write the last `out.len() / 2` bytes of `n` as hex digits, most significant first
/// (`out.len()` even, at most 32).
pub fn write_u128(n: u128, out: &mut [u8]) {
    let bytes = n.to_be_bytes();
    let from = 16 - out.len() / 2;
    for (pair, byte) in out.chunks_exact_mut(2).zip(&bytes[from..]) {
        pair.copy_from_slice(&PAIRS[usize::from(*byte)]);
    }
}

/// A header value holding `digits` (hex digits and dashes, always valid), in one allocation
/// whose clones share it.
pub fn value<const N: usize>(digits: [u8; N]) -> HeaderValue {
    HeaderValue::from_maybe_shared(Bytes::from_owner(digits))
        .unwrap_or(HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_match_the_formatter() {
        for n in [0u64, 1, 0xfe, 0x0123_4567_89ab_cdef, u64::MAX] {
            let mut out = [0; 16];
            write_u64(n, &mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), format!("{n:016x}"));
        }
        let n = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736u128;
        let mut out = [0; 32];
        write_u128(n, &mut out);
        assert_eq!(std::str::from_utf8(&out).unwrap(), format!("{n:032x}"));
        let mut two = [0; 2];
        write_u128(0x1ab, &mut two);
        assert_eq!(&two, b"ab");
        let v = value(out);
        assert_eq!(v.as_bytes(), &out);
        assert_eq!(v.clone(), v);
    }
}
