//! CRC-32 (IEEE 802.3, the zlib one), the hash pingora-ketama puts its points and keys on the
//! ring with (through the `crc32fast` crate).
//!
//! Slicing-by-8 over tables built at compile time, kept instead of `crc32fast::hash` for
//! `consistent`'s default key, the client's IP: 4 bytes for IPv4, where `crc32fast` pays for
//! choosing its implementation on every call. With `cargo bench --bench twins` on this
//! project's 2-core shared machine (2026-12-02, two runs), a 4-byte key took 2.4 and 5.1 ns
//! here against 4.4 and 7.6 ns with `crc32fast`, a 14-byte one about the same (5.6 against
//! 5.7, 11.5 against 10.8), and a 40-byte path 9.2 and 18.8 ns against 6.8 and 9.5 (its SIMD
//! folding wins on long keys). A `consistent` pick at 3 backends takes about 18 ns.

/// `TABLES[k][b]`: the CRC of byte `b` followed by `k` zero bytes (slicing-by-8).
const TABLES: [[u32; 256]; 8] = tables();

const fn tables() -> [[u32; 256]; 8] {
    let mut t = [[0u32; 256]; 8];
    let mut b = 0;
    while b < 256 {
        let mut crc = b as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        t[0][b] = crc;
        b += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut b = 0;
        while b < 256 {
            let prev = t[k - 1][b];
            t[k][b] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            b += 1;
        }
        k += 1;
    }
    t
}

/// Continue a CRC: `update(hash(a), b) == hash(a ++ b)`, and `update(0, a) == hash(a)`, as
/// `crc32fast::Hasher` does.
pub fn update(crc: u32, bytes: &[u8]) -> u32 {
    let mut crc = !crc;
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let lo = u32::from_le_bytes([c[0], c[1], c[2], c[3]]) ^ crc;
        crc = TABLES[7][(lo & 0xFF) as usize]
            ^ TABLES[6][((lo >> 8) & 0xFF) as usize]
            ^ TABLES[5][((lo >> 16) & 0xFF) as usize]
            ^ TABLES[4][(lo >> 24) as usize]
            ^ TABLES[3][c[4] as usize]
            ^ TABLES[2][c[5] as usize]
            ^ TABLES[1][c[6] as usize]
            ^ TABLES[0][c[7] as usize];
    }
    for &b in chunks.remainder() {
        crc = (crc >> 8) ^ TABLES[0][((crc ^ b as u32) & 0xFF) as usize];
    }
    !crc
}

/// The CRC-32 of `bytes`.
pub fn hash(bytes: &[u8]) -> u32 {
    update(0, bytes)
}

/// Four bytes whose CRC-32 is `target` (CRC is invertible over four bytes), to aim a test key
/// at an exact point of a ring.
#[cfg(test)]
pub(crate) fn four_bytes_hashing_to(target: u32) -> [u8; 4] {
    // Working back from the final state, each table entry's top byte names it uniquely.
    let mut rest = !target;
    let mut idx = [0usize; 4];
    for k in (0..4).rev() {
        let shift = 8 * (3 - k);
        let top = (rest << shift) >> 24;
        let i = (0..256)
            .find(|&i| TABLES[0][i] >> 24 == top)
            .expect("a permutation");
        idx[k] = i;
        rest ^= TABLES[0][i] >> shift;
    }
    let mut state = !0u32;
    let mut out = [0u8; 4];
    for (o, &i) in out.iter_mut().zip(&idx) {
        *o = ((state ^ i as u32) & 0xFF) as u8;
        state = TABLES[0][i] ^ (state >> 8);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-at-a-time CRC-32, the definition.
    fn reference(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn matches_the_check_value_and_the_definition() {
        assert_eq!(hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(hash(b""), 0);
        let data: Vec<u8> = (0..100u32).map(|i| (i * 37 % 251) as u8).collect();
        for len in 0..data.len() {
            assert_eq!(hash(&data[..len]), reference(&data[..len]), "len {len}");
            let (a, b) = data[..len].split_at(len / 3);
            assert_eq!(
                update(hash(a), b),
                hash(&data[..len]),
                "split at {}",
                len / 3
            );
        }
    }

    #[test]
    fn four_bytes_can_aim_at_any_hash() {
        for target in [0, 1, 0xFFFF_FFFF, 0xCBF4_3926, 0x8000_0000, 0x1234_5678] {
            assert_eq!(hash(&four_bytes_hashing_to(target)), target);
        }
    }
}
