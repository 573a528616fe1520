//! Redis DUMP payloads: the envelope (type byte, body, RDB version, CRC64).
