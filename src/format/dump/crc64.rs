//! CRC-64/REDIS ("Jones"), the checksum in every DUMP trailer.

use crc::{Crc, CRC_64_REDIS};

const REDIS_CRC: Crc<u64> = Crc::<u64>::new(&CRC_64_REDIS);

/// CRC-64/REDIS of `bytes`, as stored (little endian) in a DUMP trailer.
pub fn crc64(bytes: &[u8]) -> u64 {
    REDIS_CRC.checksum(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_check_value() {
        assert_eq!(crc64(b"123456789"), 0xE9C6_D914_C4B8_D9CA);
    }

    #[test]
    fn empty_input_is_zero() {
        assert_eq!(crc64(b""), 0);
    }
}
