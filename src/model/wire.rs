//! Protobuf wire-format primitives over byte slices, without allocation.
//!
//! Hand-written rather than using `prost::encoding` because the stages read a
//! handful of fields out of already-encoded messages and must not decode the
//! rest; prost's decoding functions work on whole messages. Writing uses
//! `prost::encoding` where it fits.

use thiserror::Error;

/// Protobuf wire types (groups are not used by OTLP and are refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

/// Why bytes are not a well-formed protobuf message of the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("truncated message")]
    Truncated,
    #[error("invalid varint")]
    BadVarint,
    #[error("invalid field number 0")]
    FieldZero,
    #[error("unsupported wire type {0}")]
    BadWireType(u8),
    #[error("{message}.{field}: wrong wire type {found:?}")]
    WrongWireType {
        message: &'static str,
        field: &'static str,
        found: WireType,
    },
    #[error("{message}.{field}: invalid UTF-8 in string")]
    InvalidUtf8 {
        message: &'static str,
        field: &'static str,
    },
    #[error("nesting deeper than {0} levels")]
    TooDeep(usize),
}

/// One decoded field: its number and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl Value<'_> {
    pub fn wire_type(&self) -> WireType {
        match self {
            Value::Varint(_) => WireType::Varint,
            Value::Fixed64(_) => WireType::Fixed64,
            Value::Len(_) => WireType::Len,
            Value::Fixed32(_) => WireType::Fixed32,
        }
    }
}

/// A field as it sits in the buffer: number, value and the byte range of the
/// whole field (key included), so callers can copy fields verbatim.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
    /// Offset of the field's first key byte in the reader's buffer.
    pub start: usize,
    /// Offset just past the field's last byte.
    pub end: usize,
}

/// Iterates the fields of one encoded message.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The next field, `None` at the end, or an error for malformed bytes.
    #[inline]
    pub fn next_field(&mut self) -> Option<Result<Field<'a>, WireError>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        Some(self.read_field())
    }

    #[inline]
    fn read_field(&mut self) -> Result<Field<'a>, WireError> {
        let start = self.pos;
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| WireError::BadVarint)?;
        if number == 0 {
            return Err(WireError::FieldZero);
        }
        let value = match (key & 7) as u8 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take_array::<8>()?)),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
                let end = self.pos.checked_add(len).ok_or(WireError::Truncated)?;
                let bytes = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
                self.pos = end;
                Value::Len(bytes)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take_array::<4>()?)),
            other => return Err(WireError::BadWireType(other)),
        };
        Ok(Field {
            number,
            value,
            start,
            end: self.pos,
        })
    }

    #[inline]
    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let end = self.pos + N;
        let bytes = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        self.pos = end;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, WireError> {
        let (value, used) = read_varint(&self.buf[self.pos..])?;
        self.pos += used;
        Ok(value)
    }
}

/// Decodes one varint from the front of `buf`; returns it and the bytes used.
#[inline]
pub fn read_varint(buf: &[u8]) -> Result<(u64, usize), WireError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        if i == 9 && byte > 1 {
            return Err(WireError::BadVarint);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok((value, i + 1));
        }
    }
    if buf.len() < 10 {
        Err(WireError::Truncated)
    } else {
        Err(WireError::BadVarint)
    }
}

/// Number of bytes `value` takes as a varint.
#[inline]
pub fn varint_len(value: u64) -> usize {
    prost::encoding::encoded_len_varint(value)
}

/// Appends a varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends the key and length prefix of a length-delimited field of `len` bytes.
#[inline]
pub fn put_len_header(out: &mut Vec<u8>, field: u32, len: usize) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, len as u64);
}

/// Appends a whole length-delimited field.
#[inline]
pub fn put_len_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_len_header(out, field, bytes.len());
    out.extend_from_slice(bytes);
}

/// Size of a length-delimited field with a body of `len` bytes, key included.
#[inline]
pub fn len_field_size(field: u32, len: usize) -> usize {
    varint_len(u64::from(field) << 3) + varint_len(len as u64) + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_wire_type() {
        let mut buf = Vec::new();
        put_varint(&mut buf, 1 << 3); // field 1 varint
        put_varint(&mut buf, 300);
        buf.push((2 << 3) | 1); // field 2 fixed64
        buf.extend_from_slice(&7u64.to_le_bytes());
        put_len_field(&mut buf, 3, b"abc");
        buf.push((4 << 3) | 5); // field 4 fixed32
        buf.extend_from_slice(&9u32.to_le_bytes());
        let fields: Vec<_> = std::iter::from_fn({
            let mut r = Reader::new(&buf);
            move || r.next_field()
        })
        .collect::<Result<_, _>>()
        .unwrap();
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[0].value, Value::Varint(300));
        assert_eq!(fields[1].value, Value::Fixed64(7));
        assert_eq!(fields[2].value, Value::Len(b"abc"));
        assert_eq!(fields[3].value, Value::Fixed32(9));
        assert_eq!(fields[3].end, buf.len());
    }

    #[test]
    fn truncated_and_bad_inputs_are_errors() {
        assert_eq!(
            Reader::new(&[0x0a, 5, 1])
                .next_field()
                .unwrap()
                .unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            Reader::new(&[0x0b]).next_field().unwrap().unwrap_err(),
            WireError::BadWireType(3)
        );
        assert_eq!(
            Reader::new(&[0x00, 1]).next_field().unwrap().unwrap_err(),
            WireError::FieldZero
        );
        assert_eq!(read_varint(&[0xff; 11]).unwrap_err(), WireError::BadVarint);
        assert_eq!(
            read_varint(&[0xff, 0xff]).unwrap_err(),
            WireError::Truncated
        );
    }

    #[test]
    fn varint_roundtrip_matches_prost() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut ours = Vec::new();
            put_varint(&mut ours, v);
            let mut theirs = Vec::new();
            prost::encoding::encode_varint(v, &mut theirs);
            assert_eq!(ours, theirs);
            assert_eq!(read_varint(&ours).unwrap(), (v, ours.len()));
            assert_eq!(varint_len(v), ours.len());
        }
    }
}
