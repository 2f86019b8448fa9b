//! Deterministic CBOR (RFC 8949 §4.2.1, "Core Deterministic Encoding Requirements") for the
//! serde data model, and a decoder that borrows from the input.
//!
//! The log stores every event as deterministic CBOR: any CBOR library can read it (an
//! auditor needs nothing of ours), and one value has exactly one encoding, so the bytes that
//! are hashed follow from the value alone. The encoder here keeps the rules of §4.2.1:
//!
//! - every head (integer, length, count) in its shortest form ("preferred serialization");
//! - definite lengths only (no indefinite-length strings, arrays or maps);
//! - the keys of every map sorted by the bytewise lexicographic order of their encodings
//!   (for text keys: shorter first, then byte by byte); a key never repeats.
//!
//! Mapping of the serde data model: `bool` → simple value true/false; integers → major
//! types 0 and 1; strings and `char` → text strings (major 3); bytes → byte strings (major
//! 2); unit, `None` and unit structs → null; `Some(x)`, newtype structs → `x`; sequences
//! and tuples → arrays; maps and structs → maps (struct field names as text keys); enums
//! as serde_json writes them: a unit variant is its name as text, any other variant a map
//! of one entry, name → content. Floating-point numbers and 128-bit integers are refused
//! (nothing in the log uses them). No tags are written. Serde's own attributes apply as
//! usual (an internally tagged enum is a map holding its tag, a skipped field is absent).
//!
//! The decoder accepts what the encoder writes (and, leniently, non-shortest heads and
//! unsorted maps: what is checked is the hash over the stored bytes, not their form).
//! Text comes out borrowed from the input, so a replay decodes without copying strings.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize};

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, Error>;

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;
const NULL: u8 = 0xf6;

/// Writes a head (major type and argument) in its shortest form.
pub fn write_head(out: &mut Vec<u8>, major: u8, value: u64) {
    let major = major << 5;
    if value < 24 {
        out.push(major | value as u8);
    } else if value <= u64::from(u8::MAX) {
        out.push(major | 24);
        out.push(value as u8);
    } else if value <= u64::from(u16::MAX) {
        out.push(major | 25);
        out.extend_from_slice(&(value as u16).to_be_bytes());
    } else if value <= u64::from(u32::MAX) {
        out.push(major | 26);
        out.extend_from_slice(&(value as u32).to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// Writes a signed integer (major type 0 or 1).
pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    if value >= 0 {
        write_head(out, MAJOR_UNSIGNED, value as u64);
    } else {
        write_head(out, MAJOR_NEGATIVE, !(value as u64));
    }
}

pub fn write_text(out: &mut Vec<u8>, text: &str) {
    write_head(out, MAJOR_TEXT, text.len() as u64);
    out.extend_from_slice(text.as_bytes());
}

pub fn write_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    write_head(out, MAJOR_BYTES, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub fn write_map_head(out: &mut Vec<u8>, entries: usize) {
    write_head(out, MAJOR_MAP, entries as u64);
}

/// The deterministic CBOR encoding of `value`.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    to_writer(&mut out, value)?;
    Ok(out)
}

/// Appends the deterministic CBOR encoding of `value` to `out`.
pub fn to_writer<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<()> {
    value.serialize(&mut Encoder {
        out,
        scratch: &mut Scratch::default(),
    })
}

/// Decodes one value that must fill `bytes` exactly.
pub fn from_slice<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
    let mut decoder = Decoder { input: bytes };
    let value = T::deserialize(&mut decoder)?;
    if !decoder.input.is_empty() {
        return Err(Error(format!(
            "{} bytes after the end of the CBOR value",
            decoder.input.len()
        )));
    }
    Ok(value)
}

/// Offsets the encoder keeps while maps are open, shared by every nested map of one value
/// so that encoding allocates nothing per map.
#[derive(Default)]
struct Scratch {
    /// (start of key, start of value) in the output, for the entries of every open map,
    /// innermost last.
    entries: Vec<(usize, usize)>,
    /// The order of the entries of the map being finished.
    order: Vec<u32>,
    /// A copy of a map's body while its entries are written back in key order.
    body: Vec<u8>,
}

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut Scratch,
}

/// Writes `major`/`value` as a head at `at`, where one placeholder byte was written: in
/// place when one byte suffices, else the bytes after it move up.
fn fix_head(out: &mut Vec<u8>, at: usize, major: u8, value: u64) {
    if value < 24 {
        out[at] = (major << 5) | value as u8;
    } else {
        let (byte, argument): (u8, &[u8]) = if value <= u64::from(u8::MAX) {
            (24, &[value as u8])
        } else if value <= u64::from(u16::MAX) {
            (25, &(value as u16).to_be_bytes())
        } else if value <= u64::from(u32::MAX) {
            (26, &(value as u32).to_be_bytes())
        } else {
            (27, &value.to_be_bytes())
        };
        out[at] = (major << 5) | byte;
        out.splice(at + 1..at + 1, argument.iter().copied());
    }
}

/// A map being encoded: entries are written straight to the output after a placeholder
/// head; at the end the head is set, and entries not already in key order are put in order.
pub struct MapEncoder<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut Scratch,
    /// Where the placeholder head is.
    head_at: usize,
    /// Where this map's entries begin in `scratch.entries`.
    base: usize,
}

impl MapEncoder<'_> {
    fn finish(self) -> Result<()> {
        let MapEncoder {
            out,
            scratch,
            head_at,
            base,
        } = self;
        let entries = &scratch.entries[base..];
        let n = entries.len();
        let key = |i: usize| &out[entries[i].0..entries[i].1];
        let mut ordered = true;
        for i in 1..n {
            match key(i - 1).cmp(key(i)) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    scratch.entries.truncate(base);
                    return Err(Error("a map key repeats".into()));
                }
                std::cmp::Ordering::Greater => ordered = false,
            }
        }
        if !ordered {
            // Sort the entries by their encoded keys and write the body again in that order.
            let body_start = head_at + 1;
            let body_end = out.len();
            scratch.order.clear();
            scratch.order.extend(0..n as u32);
            scratch
                .order
                .sort_unstable_by(|&a, &b| key(a as usize).cmp(key(b as usize)));
            if scratch
                .order
                .windows(2)
                .any(|w| key(w[0] as usize) == key(w[1] as usize))
            {
                scratch.entries.truncate(base);
                return Err(Error("a map key repeats".into()));
            }
            scratch.body.clear();
            scratch.body.extend_from_slice(&out[body_start..body_end]);
            out.truncate(body_start);
            for &i in &scratch.order {
                let i = i as usize;
                let start = entries[i].0 - body_start;
                let end = entries.get(i + 1).map_or(body_end, |e| e.0) - body_start;
                out.extend_from_slice(&scratch.body[start..end]);
            }
        }
        scratch.entries.truncate(base);
        fix_head(out, head_at, MAJOR_MAP, n as u64);
        Ok(())
    }
}

/// An array: with a length serde announced, elements follow its head; without one, they
/// are counted after a placeholder head that is set at the end.
pub struct SeqEncoder<'a> {
    out: &'a mut Vec<u8>,
    scratch: &'a mut Scratch,
    /// Where the placeholder head is, when the length was not announced.
    head_at: Option<usize>,
    count: usize,
}

impl SeqEncoder<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.count += 1;
        value.serialize(&mut Encoder {
            out: self.out,
            scratch: self.scratch,
        })
    }

    fn finish(self) -> Result<()> {
        if let Some(at) = self.head_at {
            fix_head(self.out, at, MAJOR_ARRAY, self.count as u64);
        }
        Ok(())
    }
}

/// A variant with content: a map of one entry, whose value is written by the inner encoder.
pub struct VariantEncoder<'a, Inner> {
    inner: Inner,
    _out: std::marker::PhantomData<&'a ()>,
}

impl<'a> Encoder<'a> {
    fn map(self) -> MapEncoder<'a> {
        let head_at = self.out.len();
        self.out.push(0);
        MapEncoder {
            base: self.scratch.entries.len(),
            out: self.out,
            scratch: self.scratch,
            head_at,
        }
    }

    fn seq(self, len: Option<usize>) -> SeqEncoder<'a> {
        let head_at = match len {
            Some(len) => {
                write_head(self.out, MAJOR_ARRAY, len as u64);
                None
            }
            None => {
                self.out.push(0);
                Some(self.out.len() - 1)
            }
        };
        SeqEncoder {
            out: self.out,
            scratch: self.scratch,
            head_at,
            count: 0,
        }
    }

    /// Starts `{variant: …}`; the caller writes the content.
    fn variant(&mut self, variant: &str) {
        write_map_head(self.out, 1);
        write_text(self.out, variant);
    }
}

/// Formats straight into the output ([`ser::Serializer::collect_str`]).
struct TextWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for TextWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

macro_rules! unsupported {
    ($($method:ident($ty:ty)),*) => {$(
        fn $method(self, _: $ty) -> Result<()> {
            Err(Error(concat!("CBOR log encoding does not support ", stringify!($ty)).into()))
        }
    )*};
}

impl<'a, 'b> ser::Serializer for &'b mut Encoder<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = SeqEncoder<'b>;
    type SerializeTuple = SeqEncoder<'b>;
    type SerializeTupleStruct = SeqEncoder<'b>;
    type SerializeTupleVariant = VariantEncoder<'b, SeqEncoder<'b>>;
    type SerializeMap = MapEncoder<'b>;
    type SerializeStruct = MapEncoder<'b>;
    type SerializeStructVariant = VariantEncoder<'b, MapEncoder<'b>>;

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.out.push(if v { TRUE } else { FALSE });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<()> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<()> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<()> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<()> {
        write_i64(self.out, v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<()> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<()> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<()> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<()> {
        write_head(self.out, MAJOR_UNSIGNED, v);
        Ok(())
    }
    unsupported!(serialize_f32(f32), serialize_f64(f64));
    fn serialize_char(self, v: char) -> Result<()> {
        let mut buffer = [0u8; 4];
        write_text(self.out, v.encode_utf8(&mut buffer));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<()> {
        write_text(self.out, v);
        Ok(())
    }
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<()> {
        // The text is formatted after a placeholder head, which is set to its length.
        let at = self.out.len();
        self.out.push(0);
        fmt::write(&mut TextWriter(self.out), format_args!("{value}"))
            .map_err(|_| Error("a value failed to format itself".into()))?;
        let len = self.out.len() - at - 1;
        fix_head(self.out, at, MAJOR_TEXT, len as u64);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        write_bytes(self.out, v);
        Ok(())
    }
    fn serialize_none(self) -> Result<()> {
        self.out.push(NULL);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<()> {
        self.out.push(NULL);
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<()> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<()> {
        write_text(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        self.variant(variant);
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq> {
        Ok(Encoder {
            out: self.out,
            scratch: self.scratch,
        }
        .seq(len))
    }
    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<SeqEncoder<'b>> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        self.variant(variant);
        Ok(VariantEncoder {
            inner: Encoder {
                out: self.out,
                scratch: self.scratch,
            }
            .seq(Some(len)),
            _out: std::marker::PhantomData,
        })
    }
    fn serialize_map(self, _: Option<usize>) -> Result<MapEncoder<'b>> {
        Ok(Encoder {
            out: self.out,
            scratch: self.scratch,
        }
        .map())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<MapEncoder<'b>> {
        Ok(Encoder {
            out: self.out,
            scratch: self.scratch,
        }
        .map())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant> {
        self.variant(variant);
        Ok(VariantEncoder {
            inner: Encoder {
                out: self.out,
                scratch: self.scratch,
            }
            .map(),
            _out: std::marker::PhantomData,
        })
    }
    fn is_human_readable(&self) -> bool {
        // The log keeps the values exactly as their JSON form has them (dates as text), so
        // that the JSON export and the stored CBOR describe the same value.
        true
    }
}

impl ser::SerializeSeq for SeqEncoder<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }
    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl ser::SerializeTuple for SeqEncoder<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }
    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl ser::SerializeTupleStruct for SeqEncoder<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }
    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl ser::SerializeTupleVariant for VariantEncoder<'_, SeqEncoder<'_>> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.inner.element(value)
    }
    fn end(self) -> Result<()> {
        self.inner.finish()
    }
}

impl ser::SerializeMap for MapEncoder<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        let start = self.out.len();
        key.serialize(&mut Encoder {
            out: self.out,
            scratch: self.scratch,
        })?;
        self.scratch.entries.push((start, self.out.len()));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut Encoder {
            out: self.out,
            scratch: self.scratch,
        })
    }
    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl ser::SerializeStruct for MapEncoder<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        let start = self.out.len();
        write_text(self.out, key);
        self.scratch.entries.push((start, self.out.len()));
        value.serialize(&mut Encoder {
            out: self.out,
            scratch: self.scratch,
        })
    }
    fn end(self) -> Result<()> {
        self.finish()
    }
}

impl ser::SerializeStructVariant for VariantEncoder<'_, MapEncoder<'_>> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, value)
    }
    fn end(self) -> Result<()> {
        self.inner.finish()
    }
}

/// A head read from the input: major type and argument.
#[derive(Debug, Clone, Copy)]
struct Head {
    major: u8,
    /// The additional information (low five bits), for major type 7.
    info: u8,
    value: u64,
}

/// Reads CBOR items from a slice.
pub struct Decoder<'de> {
    input: &'de [u8],
}

impl<'de> Decoder<'de> {
    pub fn new(input: &'de [u8]) -> Self {
        Decoder { input }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'de [u8] {
        self.input
    }

    fn eof() -> Error {
        Error("CBOR value cut short".into())
    }

    fn take(&mut self, n: usize) -> Result<&'de [u8]> {
        if self.input.len() < n {
            return Err(Self::eof());
        }
        let (taken, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(taken)
    }

    fn peek(&self) -> Result<u8> {
        self.input.first().copied().ok_or_else(Self::eof)
    }

    fn head(&mut self) -> Result<Head> {
        let initial = self.take(1)?[0];
        let major = initial >> 5;
        let info = initial & 0x1f;
        let value = match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into().unwrap())),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into().unwrap())),
            27 => u64::from_be_bytes(self.take(8)?.try_into().unwrap()),
            _ => {
                return Err(Error(format!(
                    "CBOR additional information {info} (indefinite lengths are not used)"
                )))
            }
        };
        Ok(Head { major, info, value })
    }

    fn length(value: u64) -> Result<usize> {
        usize::try_from(value).map_err(|_| Error("CBOR length too large".into()))
    }

    /// A text string item.
    pub fn text(&mut self) -> Result<&'de str> {
        let head = self.head()?;
        if head.major != MAJOR_TEXT {
            return Err(Error(format!(
                "expected text, found major type {}",
                head.major
            )));
        }
        let bytes = self.take(Self::length(head.value)?)?;
        std::str::from_utf8(bytes).map_err(|e| Error(format!("text is not UTF-8: {e}")))
    }

    /// A byte string item.
    pub fn bytes(&mut self) -> Result<&'de [u8]> {
        let head = self.head()?;
        if head.major != MAJOR_BYTES {
            return Err(Error(format!(
                "expected bytes, found major type {}",
                head.major
            )));
        }
        self.take(Self::length(head.value)?)
    }

    /// An integer item.
    pub fn i64(&mut self) -> Result<i64> {
        let head = self.head()?;
        match head.major {
            MAJOR_UNSIGNED => {
                i64::try_from(head.value).map_err(|_| Error("integer too large".into()))
            }
            MAJOR_NEGATIVE => i64::try_from(head.value)
                .map(|v| -1 - v)
                .map_err(|_| Error("integer too small".into())),
            major => Err(Error(format!(
                "expected an integer, found major type {major}"
            ))),
        }
    }

    /// The head of a map: its number of entries.
    pub fn map_len(&mut self) -> Result<usize> {
        let head = self.head()?;
        if head.major != MAJOR_MAP {
            return Err(Error(format!(
                "expected a map, found major type {}",
                head.major
            )));
        }
        Self::length(head.value)
    }

    /// Skips one whole item and returns its bytes.
    pub fn item(&mut self) -> Result<&'de [u8]> {
        let start = self.input;
        self.skip()?;
        Ok(&start[..start.len() - self.input.len()])
    }

    fn skip(&mut self) -> Result<()> {
        let head = self.head()?;
        match head.major {
            MAJOR_UNSIGNED | MAJOR_NEGATIVE | 7 => {}
            MAJOR_BYTES | MAJOR_TEXT => {
                self.take(Self::length(head.value)?)?;
            }
            MAJOR_ARRAY => {
                for _ in 0..head.value {
                    self.skip()?;
                }
            }
            MAJOR_MAP => {
                for _ in 0..head.value {
                    self.skip()?;
                    self.skip()?;
                }
            }
            _ => self.skip()?, // a tag: skip the tagged item
        }
        Ok(())
    }
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let head = self.head()?;
        match head.major {
            MAJOR_UNSIGNED => visitor.visit_u64(head.value),
            MAJOR_NEGATIVE => match i64::try_from(head.value) {
                Ok(v) => visitor.visit_i64(-1 - v),
                Err(_) => Err(Error("integer too small".into())),
            },
            MAJOR_BYTES => visitor.visit_borrowed_bytes(self.take(Decoder::length(head.value)?)?),
            MAJOR_TEXT => {
                let bytes = self.take(Decoder::length(head.value)?)?;
                visitor.visit_borrowed_str(
                    std::str::from_utf8(bytes)
                        .map_err(|e| Error(format!("text is not UTF-8: {e}")))?,
                )
            }
            MAJOR_ARRAY => visitor.visit_seq(Items {
                decoder: self,
                left: head.value,
            }),
            MAJOR_MAP => visitor.visit_map(Items {
                decoder: self,
                left: head.value,
            }),
            6 => Err(Error("CBOR tags are not used in the log".into())),
            _ => match head.info {
                20 => visitor.visit_bool(false),
                21 => visitor.visit_bool(true),
                22 | 23 => visitor.visit_unit(),
                info => Err(Error(format!(
                    "CBOR simple value or float (additional information {info}) is not used in the log"
                ))),
            },
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        if self.peek()? == NULL {
            self.input = &self.input[1..];
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        if self.peek()? >> 5 == MAJOR_TEXT {
            let name = self.text()?;
            return visitor.visit_enum(name.into_deserializer());
        }
        if self.map_len()? != 1 {
            return Err(Error("an enum variant is a map of one entry".into()));
        }
        visitor.visit_enum(VariantAccess { decoder: self })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// The elements of an array or the entries of a map.
struct Items<'a, 'de> {
    decoder: &'a mut Decoder<'de>,
    left: u64,
}

impl<'de> SeqAccess<'de> for Items<'_, 'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.decoder).map(Some)
    }
    fn size_hint(&self) -> Option<usize> {
        usize::try_from(self.left).ok().map(|n| n.min(4096))
    }
}

impl<'de> MapAccess<'de> for Items<'_, 'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.decoder).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.decoder)
    }
    fn size_hint(&self) -> Option<usize> {
        usize::try_from(self.left).ok().map(|n| n.min(4096))
    }
}

struct VariantAccess<'a, 'de> {
    decoder: &'a mut Decoder<'de>,
}

impl<'de> de::EnumAccess<'de> for VariantAccess<'_, 'de> {
    type Error = Error;
    type Variant = Self;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let name = seed.deserialize(&mut *self.decoder)?;
        Ok((name, self))
    }
}

impl<'de> de::VariantAccess<'de> for VariantAccess<'_, 'de> {
    type Error = Error;
    fn unit_variant(self) -> Result<()> {
        de::Deserialize::deserialize(&mut *self.decoder)
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(&mut *self.decoder)
    }
    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_any(&mut *self.decoder, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        de::Deserializer::deserialize_any(&mut *self.decoder, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type")]
    enum Sample {
        Unit,
        Fields {
            zeta: u32,
            alpha: String,
            list: Vec<i64>,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            maybe: Option<Inner>,
            kind: Kind,
        },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Inner(String);

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Plain,
        Wrapped(u8),
        Named { x: bool },
    }

    #[test]
    fn heads_are_shortest() {
        let cases: [(u64, &[u8]); 6] = [
            (0, &[0x00]),
            (23, &[0x17]),
            (24, &[0x18, 24]),
            (256, &[0x19, 1, 0]),
            (65_536, &[0x1a, 0, 1, 0, 0]),
            (1 << 32, &[0x1b, 0, 0, 0, 1, 0, 0, 0, 0]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            write_head(&mut out, 0, value);
            assert_eq!(out, bytes, "{value}");
        }
        assert_eq!(to_vec(&-1i64).unwrap(), [0x20]);
        assert_eq!(to_vec(&-500i32).unwrap(), [0x39, 0x01, 0xf3]);
    }

    #[test]
    fn map_keys_are_sorted_bytewise_and_values_round_trip() {
        let value = Sample::Fields {
            zeta: 1,
            alpha: "ё".into(),
            list: vec![-2, 300],
            maybe: Some(Inner("x".into())),
            kind: Kind::Named { x: true },
        };
        let bytes = to_vec(&value).unwrap();
        // Six entries; keys in encoded order: "kind", "list", "type", "zeta", "alpha", "maybe".
        assert_eq!(bytes[0], 0xa6);
        let mut decoder = Decoder::new(&bytes[1..]);
        let mut keys = Vec::new();
        for _ in 0..6 {
            keys.push(decoder.text().unwrap().to_owned());
            decoder.item().unwrap();
        }
        assert_eq!(keys, ["kind", "list", "type", "zeta", "alpha", "maybe"]);
        assert_eq!(from_slice::<Sample>(&bytes).unwrap(), value);
        assert_eq!(
            from_slice::<Sample>(&to_vec(&Sample::Unit).unwrap()).unwrap(),
            Sample::Unit
        );
        for kind in [Kind::Plain, Kind::Wrapped(7)] {
            assert_eq!(from_slice::<Kind>(&to_vec(&kind).unwrap()).unwrap(), kind);
        }
    }

    #[test]
    fn the_json_value_of_a_type_encodes_to_the_same_bytes() {
        let value = Sample::Fields {
            zeta: 70_000,
            alpha: "a".into(),
            list: vec![i64::MIN, i64::MAX, 0],
            maybe: None,
            kind: Kind::Wrapped(3),
        };
        let json = serde_json::to_value(&value).unwrap();
        assert_eq!(to_vec(&json).unwrap(), to_vec(&value).unwrap());
        let back: serde_json::Value = from_slice(&to_vec(&value).unwrap()).unwrap();
        assert_eq!(back, json);
    }

    /// Checks the deterministic form independently of the encoder: shortest heads, definite
    /// lengths, map keys strictly ascending bytewise; returns the bytes after the item.
    fn assert_canonical(bytes: &[u8]) -> &[u8] {
        let initial = bytes[0];
        let (major, info) = (initial >> 5, initial & 0x1f);
        let (value, rest) = match info {
            0..=23 => (u64::from(info), &bytes[1..]),
            24 => (u64::from(bytes[1]), &bytes[2..]),
            25 => (
                u64::from(u16::from_be_bytes([bytes[1], bytes[2]])),
                &bytes[3..],
            ),
            26 => (
                u64::from(u32::from_be_bytes(bytes[1..5].try_into().unwrap())),
                &bytes[5..],
            ),
            27 => (
                u64::from_be_bytes(bytes[1..9].try_into().unwrap()),
                &bytes[9..],
            ),
            _ if major == 7 => (0, &bytes[1..]),
            _ => panic!("indefinite or reserved head {initial:#x}"),
        };
        if major != 7 {
            let shortest = match info {
                24 => value >= 24,
                25 => value > 0xff,
                26 => value > 0xffff,
                27 => value > 0xffff_ffff,
                _ => true,
            };
            assert!(shortest, "head {initial:#x} of {value} is not the shortest");
        }
        match major {
            0 | 1 | 7 => rest,
            2 | 3 => &rest[value as usize..],
            4 => {
                let mut rest = rest;
                for _ in 0..value {
                    rest = assert_canonical(rest);
                }
                rest
            }
            5 => {
                let mut rest = rest;
                let mut previous: Option<&[u8]> = None;
                for _ in 0..value {
                    let after_key = assert_canonical(rest);
                    let key = &rest[..rest.len() - after_key.len()];
                    if let Some(previous) = previous {
                        assert!(previous < key, "map keys out of order or repeated");
                    }
                    previous = Some(key);
                    rest = assert_canonical(after_key);
                }
                rest
            }
            _ => panic!("major type {major} is not written by the encoder"),
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<u64>().prop_map(serde_json::Value::from),
            ".{0,40}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 200, 30, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..30).prop_map(serde_json::Value::from),
                proptest::collection::btree_map("[a-z]{0,30}|.{0,3}", inner, 0..30)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_value_encodes_canonically_and_round_trips(value in json_value()) {
            let bytes = to_vec(&value).unwrap();
            proptest::prop_assert!(assert_canonical(&bytes).is_empty());
            let back: serde_json::Value = from_slice(&bytes).unwrap();
            proptest::prop_assert_eq!(back, value);
        }
    }

    /// Maps of 24 entries and more, text of 24 bytes and more made by `collect_str`, and
    /// arrays and maps whose length serde does not announce, nested in each other.
    #[test]
    fn long_heads_and_unannounced_lengths_are_set_at_the_end() {
        struct Odd(u32);
        impl Serialize for Odd {
            fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_seq((0..self.0).filter(|i| i % 2 == 1))
            }
        }
        struct Entries(u32);
        impl Serialize for Entries {
            fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                // Descending keys, so the encoder must sort; values nest the other cases.
                s.collect_map(
                    (0..self.0)
                        .rev()
                        .filter(|_| true)
                        .map(|i| (format!("k{i:03}"), (Odd(i), Text(i as usize)))),
                )
            }
        }
        struct Text(usize);
        impl Serialize for Text {
            fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(&format_args!("{}", "й".repeat(self.0)))
            }
        }
        for n in [0, 1, 23, 24, 25, 300] {
            let bytes = to_vec(&Entries(n)).unwrap();
            assert!(assert_canonical(&bytes).is_empty(), "{n}");
            let back: serde_json::Value = from_slice(&bytes).unwrap();
            let expected: serde_json::Map<String, serde_json::Value> = (0..n)
                .map(|i| {
                    let odd: Vec<u32> = (0..i).filter(|i| i % 2 == 1).collect();
                    (
                        format!("k{i:03}"),
                        serde_json::json!([odd, "й".repeat(i as usize)]),
                    )
                })
                .collect();
            assert_eq!(back, serde_json::Value::Object(expected), "{n}");
        }
    }

    #[test]
    fn a_repeated_map_key_is_an_error() {
        struct Twice;
        impl Serialize for Twice {
            fn serialize<S: ser::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.collect_map([("b", 1), ("a", 2), ("b", 3)])
            }
        }
        assert!(to_vec(&Twice).is_err());
        // The encoder is usable again afterwards: a fresh value encodes canonically.
        let bytes = to_vec(&serde_json::json!({"b": 1, "a": {"d": 2, "c": 3}})).unwrap();
        assert!(assert_canonical(&bytes).is_empty());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(from_slice::<Sample>(&[]).is_err());
        assert!(from_slice::<Sample>(&[0xa1]).is_err());
        assert!(from_slice::<u32>(&[0x1f]).is_err());
        assert!(from_slice::<String>(&[0x62, 0xff, 0xfe]).is_err());
        assert!(from_slice::<u8>(&[0x01, 0x02]).is_err());
        assert!(to_vec(&1.5f64).is_err());
    }
}
