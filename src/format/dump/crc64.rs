//! CRC-64/REDIS ("Jones"), the checksum in every DUMP trailer and at the
//! end of every RDB file.
//!
//! Computed with `crc-fast` (carry-less-multiply SIMD with a table
//! fallback), because the RDB reader checksums every byte of a file and
//! every payload it seals: at memory speed this costs a fraction of the
//! parsing, where a byte-at-a-time table would cap reading well below the
//! 300 MB/s goal. The table-driven `crc` crate stays as the test oracle.

use crc_fast::{checksum, CrcAlgorithm};

/// CRC-64/REDIS of `bytes`, as stored (little endian) in a DUMP trailer.
pub fn crc64(bytes: &[u8]) -> u64 {
    checksum(CrcAlgorithm::Crc64Redis, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crc::{Crc, CRC_64_REDIS};
    use proptest::prelude::*;

    /// The table-driven reference implementation.
    fn oracle(bytes: &[u8]) -> u64 {
        Crc::<u64>::new(&CRC_64_REDIS).checksum(bytes)
    }

    #[test]
    fn catalogue_check_value() {
        assert_eq!(crc64(b"123456789"), 0xE9C6_D914_C4B8_D9CA);
    }

    #[test]
    fn empty_input_is_zero() {
        assert_eq!(crc64(b""), 0);
    }

    proptest! {
        /// Lengths on both sides of every SIMD block size and alignment.
        #[test]
        fn simd_matches_the_table(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            prop_assert_eq!(crc64(&bytes), oracle(&bytes));
        }

        /// The streaming digest the RDB reader uses agrees, however the
        /// input is cut.
        #[test]
        fn digest_in_pieces_matches_the_table(
            bytes in proptest::collection::vec(any::<u8>(), 0..3000),
            cut in 0usize..3000,
        ) {
            let cut = cut.min(bytes.len());
            let mut d = crc_fast::Digest::new(CrcAlgorithm::Crc64Redis);
            d.update(&bytes[..cut]);
            d.update(&bytes[cut..]);
            prop_assert_eq!(d.finalize(), oracle(&bytes));
        }
    }
}
