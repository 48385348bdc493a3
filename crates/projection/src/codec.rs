//! The binary form of view rows.
//!
//! A rebuild writes tens of thousands of rows per batch, and encoding them as JSON (times
//! printed as RFC 3339, names quoted and escaped) was most of what the applying thread did
//! besides `apply`, while the larger values made every sled insert copy more. Rows are
//! therefore compact binary: a format byte ([`ROW_FORMAT_V1`]), then the fields in a fixed
//! order, integers as LEB128 varints (signed ones zigzag), strings length-prefixed,
//! `Option`s and enums as one tag byte, times as seconds and nanoseconds.
//!
//! The format byte makes a row self-describing: rows written before it existed are JSON
//! objects, which begin with `{`, and [`decode_row`] still reads them, so a data directory
//! of an older plaint restores as it is (its rows become binary as they change; `plaint
//! rebuild` rewrites them all). A later format takes the next byte and keeps reading this
//! one.
//!
//! Each row type implements [`RowCodec`] next to its definition: the field order is the
//! format, so a field is only ever added under a new format byte.

use plaint_events::{
    lifecycle::StreamStatus, AmountAtStake, Channel, EscalationReason, Money, Severity, SlaMetric,
    Timestamp,
};
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// The first byte of a row in the binary format of this version.
pub const ROW_FORMAT_V1: u8 = 1;

/// A value that has a binary row form.
pub trait RowCodec: Sized {
    fn encode(&self, out: &mut RowWriter);
    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError>;
}

/// Why a row could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("byte {at}: {what}")]
pub struct RowError {
    pub at: usize,
    pub what: String,
}

/// The row form of `value`, format byte included.
pub fn encode_row<V: RowCodec>(value: &V) -> Vec<u8> {
    let mut out = RowWriter::new();
    value.encode(&mut out);
    out.finish()
}

/// Reads a row in any format plaint has written: binary (this version's format byte) or
/// JSON (rows of versions before it).
pub fn decode_row<V: RowCodec + DeserializeOwned>(bytes: &[u8]) -> Result<V, RowError> {
    match bytes.first() {
        Some(&ROW_FORMAT_V1) => {
            let mut input = RowReader { bytes, at: 1 };
            let value = V::decode(&mut input)?;
            input.finish()?;
            Ok(value)
        }
        Some(b'{') => serde_json::from_slice(bytes).map_err(|e| RowError {
            at: e.column(),
            what: format!("JSON row: {e}"),
        }),
        Some(other) => Err(RowError {
            at: 0,
            what: format!("unknown row format {other:#04x}"),
        }),
        None => Err(RowError {
            at: 0,
            what: "empty row".into(),
        }),
    }
}

/// Builds one row.
#[derive(Debug)]
pub struct RowWriter {
    buf: Vec<u8>,
}

impl Default for RowWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl RowWriter {
    /// A row with its format byte written.
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.push(ROW_FORMAT_V1);
        RowWriter { buf }
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    pub fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    pub fn bool(&mut self, value: bool) {
        self.buf.push(u8::from(value));
    }

    /// LEB128: small numbers (counts, tiers, lengths) take one byte.
    pub fn uint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    /// Zigzag, so that small negative numbers stay short too.
    pub fn int(&mut self, value: i64) {
        self.uint(((value << 1) ^ (value >> 63)) as u64);
    }

    pub fn str(&mut self, value: &str) {
        self.uint(value.len() as u64);
        self.buf.extend_from_slice(value.as_bytes());
    }

    /// A time given as Unix seconds (projectors that keep times as seconds write them
    /// without making a `Timestamp`); the same bytes as [`Timestamp`]'s encoding.
    pub fn seconds(&mut self, seconds: i64) {
        self.int(seconds);
        self.int(0);
    }

    pub fn put<T: RowCodec>(&mut self, value: &T) {
        value.encode(self);
    }

    /// A sequence: its length, then each item.
    pub fn seq<'a, T: RowCodec + 'a>(&mut self, items: impl ExactSizeIterator<Item = &'a T>) {
        self.uint(items.len() as u64);
        for item in items {
            item.encode(self);
        }
    }
}

/// Reads one row, field by field, in the order it was written.
#[derive(Debug)]
pub struct RowReader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> RowReader<'a> {
    /// An error at the current position.
    pub fn error(&self, what: impl Into<String>) -> RowError {
        RowError {
            at: self.at,
            what: what.into(),
        }
    }

    /// Fails unless every byte was read: a longer row is not the format it claims.
    pub fn finish(&self) -> Result<(), RowError> {
        if self.at == self.bytes.len() {
            Ok(())
        } else {
            Err(self.error(format!(
                "{} bytes after the last field",
                self.bytes.len() - self.at
            )))
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RowError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.error(format!("row ends inside a field of {n} bytes")))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    pub fn u8(&mut self) -> Result<u8, RowError> {
        Ok(self.take(1)?[0])
    }

    pub fn bool(&mut self) -> Result<bool, RowError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.error(format!("{other} is not a boolean"))),
        }
    }

    pub fn uint(&mut self) -> Result<u64, RowError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.u8()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error("varint longer than 64 bits"))
    }

    pub fn int(&mut self) -> Result<i64, RowError> {
        let raw = self.uint()?;
        Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
    }

    /// An unsigned number that must fit `T` (a count, a tier).
    pub fn uint_as<T: TryFrom<u64>>(&mut self) -> Result<T, RowError> {
        let value = self.uint()?;
        T::try_from(value).map_err(|_| self.error(format!("{value} is out of range")))
    }

    pub fn str(&mut self) -> Result<&'a str, RowError> {
        let len = self.uint_as::<usize>()?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|e| self.error(format!("string is not UTF-8: {e}")))
    }

    pub fn string(&mut self) -> Result<String, RowError> {
        self.str().map(str::to_owned)
    }

    /// A time written by [`RowWriter::seconds`], as Unix seconds.
    pub fn seconds(&mut self) -> Result<i64, RowError> {
        Ok(self.get::<Timestamp>()?.as_second())
    }

    pub fn get<T: RowCodec>(&mut self) -> Result<T, RowError> {
        T::decode(self)
    }

    /// A sequence written by [`RowWriter::seq`].
    pub fn seq<T: RowCodec>(&mut self) -> Result<Vec<T>, RowError> {
        let len = self.uint_as::<usize>()?;
        // Every item takes at least a byte: a damaged length cannot reserve more than the
        // row holds.
        let mut items = Vec::with_capacity(len.min(self.bytes.len() - self.at));
        for _ in 0..len {
            items.push(T::decode(self)?);
        }
        Ok(items)
    }

    /// A one-byte enum tag mapped through `from`, which names the values it knows.
    pub fn tag<T>(
        &mut self,
        what: &str,
        from: impl FnOnce(u8) -> Option<T>,
    ) -> Result<T, RowError> {
        let at = self.at;
        let tag = self.u8()?;
        from(tag).ok_or_else(|| RowError {
            at,
            what: format!("{tag} is not a {what}"),
        })
    }
}

macro_rules! uint_codec {
    ($($t:ty),*) => {$(
        impl RowCodec for $t {
            fn encode(&self, out: &mut RowWriter) {
                out.uint(u64::from(*self));
            }
            fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
                input.uint_as()
            }
        }
    )*};
}

uint_codec!(u8, u16, u32, u64);

impl RowCodec for i64 {
    fn encode(&self, out: &mut RowWriter) {
        out.int(*self);
    }
    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        input.int()
    }
}

impl RowCodec for bool {
    fn encode(&self, out: &mut RowWriter) {
        out.bool(*self);
    }
    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        input.bool()
    }
}

impl RowCodec for String {
    fn encode(&self, out: &mut RowWriter) {
        out.str(self);
    }
    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        input.string()
    }
}

impl<T: RowCodec> RowCodec for Option<T> {
    fn encode(&self, out: &mut RowWriter) {
        match self {
            None => out.u8(0),
            Some(value) => {
                out.u8(1);
                value.encode(out);
            }
        }
    }
    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        match input.u8()? {
            0 => Ok(None),
            1 => T::decode(input).map(Some),
            other => Err(input.error(format!("{other} is not an option tag"))),
        }
    }
}

impl<T: RowCodec> RowCodec for Vec<T> {
    fn encode(&self, out: &mut RowWriter) {
        out.seq(self.iter());
    }
    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        input.seq()
    }
}

impl RowCodec for Timestamp {
    fn encode(&self, out: &mut RowWriter) {
        out.int(self.as_second());
        out.int(i64::from(self.subsec_nanosecond()));
    }
    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        let seconds = input.int()?;
        let nanos = input.int()?;
        i32::try_from(nanos)
            .ok()
            .and_then(|nanos| Timestamp::new(seconds, nanos).ok())
            .ok_or_else(|| input.error(format!("{seconds}s {nanos}ns is not a time")))
    }
}

impl RowCodec for Uuid {
    fn encode(&self, out: &mut RowWriter) {
        out.buf.extend_from_slice(self.as_bytes());
    }
    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        let bytes = input.take(16)?;
        Ok(Uuid::from_bytes(bytes.try_into().expect("16 bytes")))
    }
}

impl RowCodec for Money {
    fn encode(&self, out: &mut RowWriter) {
        out.int(self.ten_thousandths());
    }
    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        input.int().map(Money::from_ten_thousandths)
    }
}

impl RowCodec for AmountAtStake {
    fn encode(&self, out: &mut RowWriter) {
        out.put(&self.value);
        out.str(&self.currency);
    }
    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(AmountAtStake {
            value: input.get()?,
            currency: input.string()?,
        })
    }
}

impl RowCodec for EscalationReason {
    fn encode(&self, out: &mut RowWriter) {
        out.str(&self.rule);
        out.u8(self.tier);
        out.str(&self.detail);
    }
    fn decode(input: &mut RowReader<'_>) -> Result<Self, RowError> {
        Ok(EscalationReason {
            rule: input.string()?,
            tier: input.u8()?,
            detail: input.string()?,
        })
    }
}

/// Implements [`RowCodec`] for a fieldless enum with an explicit tag per variant (not
/// its declaration order), so that reordering a declaration cannot change what stored
/// rows mean: `crate::enum_codec!(Severity, "severity", { Severity::Low = 0, ... })`.
#[macro_export]
macro_rules! enum_codec {
    ($t:ty, $what:literal, { $($variant:path = $tag:literal),* $(,)? }) => {
        impl $crate::codec::RowCodec for $t {
            fn encode(&self, out: &mut $crate::codec::RowWriter) {
                out.u8(match self { $($variant => $tag),* });
            }
            fn decode(
                input: &mut $crate::codec::RowReader<'_>,
            ) -> Result<Self, $crate::codec::RowError> {
                input.tag($what, |tag| match tag { $($tag => Some($variant),)* _ => None })
            }
        }
    };
}

crate::enum_codec!(Severity, "severity", {
    Severity::Low = 0,
    Severity::Medium = 1,
    Severity::High = 2,
    Severity::Critical = 3,
});

crate::enum_codec!(Channel, "channel", {
    Channel::Email = 0,
    Channel::Phone = 1,
    Channel::Web = 2,
    Channel::Chat = 3,
    Channel::Letter = 4,
    Channel::Social = 5,
    Channel::Other = 6,
});

crate::enum_codec!(SlaMetric, "metric", {
    SlaMetric::FirstResponse = 0,
    SlaMetric::Resolution = 1,
    SlaMetric::PeriodicUpdate = 2,
    SlaMetric::Callback = 3,
});

crate::enum_codec!(StreamStatus, "status", {
    StreamStatus::Open = 1,
    StreamStatus::Resolved = 2,
    StreamStatus::Closed = 3,
    StreamStatus::Withdrawn = 4,
});

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: RowCodec + serde::de::DeserializeOwned + std::fmt::Debug + PartialEq>(
        value: T,
    ) {
        assert_eq!(decode_row::<T>(&encode_row(&value)).unwrap(), value);
    }

    #[test]
    fn values_read_back_as_written() {
        for n in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            round_trip(n);
        }
        for n in [0i64, -1, 1, -64, 64, i64::MIN, i64::MAX] {
            round_trip(n);
        }
        round_trip(String::from("région ✓"));
        round_trip(Some(Severity::Critical));
        round_trip(None::<Channel>);
        round_trip(vec![SlaMetric::Callback, SlaMetric::FirstResponse]);
        round_trip(
            "2024-05-01T09:30:00.123456789Z"
                .parse::<Timestamp>()
                .unwrap(),
        );
        round_trip("1969-12-31T23:59:59.5Z".parse::<Timestamp>().unwrap());
        round_trip(Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef));
        round_trip(AmountAtStake {
            value: "1250.50".parse().unwrap(),
            currency: "EUR".into(),
        });
        round_trip(StreamStatus::Withdrawn);
    }

    #[test]
    fn seconds_are_a_timestamp_without_nanoseconds() {
        let mut a = RowWriter::new();
        a.seconds(1_714_555_800);
        let mut b = RowWriter::new();
        b.put(&Timestamp::from_second(1_714_555_800).unwrap());
        assert_eq!(a.finish(), b.finish());
    }

    #[test]
    fn damaged_rows_are_errors_not_panics() {
        let row = encode_row(&vec![String::from("abc"), String::from("def")]);
        for cut in 0..row.len() {
            assert!(
                decode_row::<Vec<String>>(&row[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = row.clone();
        longer.push(0);
        let error = decode_row::<Vec<String>>(&longer).unwrap_err();
        assert!(error.what.contains("after the last field"), "{error}");
        let error = decode_row::<Vec<String>>(&[9, 1, 2]).unwrap_err();
        assert!(error.what.contains("unknown row format 0x09"), "{error}");
        let huge_length = [ROW_FORMAT_V1, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(decode_row::<Vec<String>>(&huge_length).is_err());
        let bad_tag = [ROW_FORMAT_V1, 7];
        let error = decode_row::<Severity>(&bad_tag).unwrap_err();
        assert_eq!(error.to_string(), "byte 1: 7 is not a severity");
    }

    #[test]
    fn json_rows_of_older_versions_still_read() {
        let row = br#"{"rule":"vip","tier":2,"detail":"VIP customer"}"#;
        let reason: EscalationReason = decode_row(row).unwrap();
        assert_eq!(reason.rule, "vip");
        assert_eq!(reason.tier, 2);
    }
}
