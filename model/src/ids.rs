//! Trace and span ids.
//!
//! Input follows Jaeger's lenient parser: 1 to 32 hex digits in any case, shorter ids
//! meaning leading zeros, so `abc`, `0000000000000abc` and a 32-digit id ending in `abc`
//! name one trace. Output follows Jaeger's renderer: lowercase, 16 digits when the high
//! 64 bits are zero, 32 otherwise. Span ids are always 16 digits.

use std::fmt;

use crate::Error;

/// A 128-bit trace id, stored big-endian as OTLP carries it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

/// A 64-bit span id, stored big-endian as OTLP carries it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    /// Parses a Jaeger-style hex trace id (1..=32 hex digits, any case).
    pub fn parse_hex(text: &str) -> Result<Self, Error> {
        if text.is_empty() {
            return Err(Error::EmptyId);
        }
        if text.len() > 32 {
            return Err(Error::IdTooLong(text.to_string()));
        }
        let mut bytes = [0u8; 16];
        let digits = text.as_bytes();
        let offset = 32 - digits.len();
        for (i, d) in digits.iter().enumerate() {
            let v = hex_value(*d).ok_or_else(|| Error::IdNotHex(text.to_string()))?;
            let pos = offset + i;
            if pos.is_multiple_of(2) {
                bytes[pos / 2] |= v << 4;
            } else {
                bytes[pos / 2] |= v;
            }
        }
        Ok(TraceId(bytes))
    }

    /// Takes an OTLP trace id (exactly 16 bytes).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let arr: [u8; 16] = bytes.try_into().map_err(|_| Error::IdWrongLength {
            expected: 16,
            got: bytes.len(),
        })?;
        Ok(TraceId(arr))
    }

    /// True when all bits are zero (invalid in OTLP).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 16]
    }

    /// The high 64 bits.
    pub fn high(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }

    /// The low 64 bits.
    pub fn low(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[8..]);
        u64::from_be_bytes(b)
    }

    /// The full 32-digit lowercase hex form (OTLP JSON style).
    pub fn to_hex32(&self) -> String {
        hex::encode(self.0)
    }
}

/// Renders as Jaeger does: 16 digits when the high half is zero, else 32.
impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.high() == 0 {
            write!(f, "{:016x}", self.low())
        } else {
            write!(f, "{:016x}{:016x}", self.high(), self.low())
        }
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl SpanId {
    /// Takes an OTLP span id (exactly 8 bytes).
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let arr: [u8; 8] = bytes.try_into().map_err(|_| Error::IdWrongLength {
            expected: 8,
            got: bytes.len(),
        })?;
        Ok(SpanId(arr))
    }

    /// Parses 1..=16 hex digits (shorter means leading zeros).
    pub fn parse_hex(text: &str) -> Result<Self, Error> {
        if text.is_empty() {
            return Err(Error::EmptyId);
        }
        if text.len() > 16 {
            return Err(Error::IdTooLong(text.to_string()));
        }
        let v = u64::from_str_radix(text, 16).map_err(|_| Error::IdNotHex(text.to_string()))?;
        Ok(SpanId(v.to_be_bytes()))
    }

    /// True when all bits are zero (no span).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 8]
    }
}

/// Always 16 lowercase hex digits.
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", u64::from_be_bytes(self.0))
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

/// The value of one hex digit (either case), or `None`.
pub fn hex_value(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
