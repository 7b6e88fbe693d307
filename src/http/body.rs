//! Streaming chunked-body decoding (RFC 9112 section 7.1) that never buffers a whole body, and chunk framing for re-encoding.
//!
//! The decoder is a byte-at-a-time state machine over the framing and a slice copy over the
//! payload, so where the input is split never changes the output or the error.

use std::fmt::Write as _;

use bytes::{Buf, Bytes, BytesMut};

use super::head::{is_tchar, is_value_byte};

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("malformed chunk size")]
    BadSize,
    #[error("chunk size too large")]
    SizeOverflow,
    #[error("missing CRLF in chunked framing")]
    BadLineEnd,
    #[error("malformed chunk extension")]
    BadExtension,
    #[error("trailer section too large")]
    TrailerTooLarge,
    #[error("malformed trailer field")]
    BadTrailer,
}

/// One step of decoded output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Chunk payload: all or part of one chunk's data, never empty.
    Data(Bytes),
    /// The raw trailer section including its final CRLF (just `b"\r\n"` when there are none).
    Trailers(Bytes),
}

/// Chunk sizes above this are refused: no real body is an exabyte, and it keeps arithmetic
/// on sizes far from overflow.
pub const MAX_CHUNK_SIZE: u64 = 1 << 60;

/// Longest chunk-size line (size, extensions, CRLF) accepted; extensions are otherwise
/// unbounded input that produces no output.
pub const MAX_SIZE_LINE: usize = 4096;

/// The last-chunk line for re-framing; the trailer section (or `\r\n`) follows.
pub const LAST_CHUNK: &[u8] = b"0\r\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of the size; `digits` counts them.
    Size {
        digits: u32,
    },
    /// BWS after the size: only more BWS or `;` may follow.
    SizeWs,
    /// After `;`: the first byte of an extension name (BWS allowed before it).
    ExtStart,
    ExtName,
    /// After `=`: a token or a quoted string.
    ExtValueStart,
    ExtToken,
    Quoted,
    QuotedPair,
    /// After a closing quote, or BWS after a name/value: `;`, BWS, or CR.
    ExtEnd,
    SizeLf,
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// Trailer section: bytes are validated in place and split off once complete.
    TrailerLineStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    TrailerEndLf,
    Done,
}

/// Streaming decoder for a chunked body. Feed it the connection's buffer repeatedly.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    line_len: usize,
    /// Bytes of the trailer section already validated (still in the caller's buffer).
    trailer_len: usize,
    max_trailer_bytes: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder::new(16384)
    }
}

impl ChunkedDecoder {
    pub fn new(max_trailer_bytes: usize) -> Self {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            size: 0,
            line_len: 0,
            trailer_len: 0,
            max_trailer_bytes,
        }
    }

    /// True once the trailer section has been returned.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes what it can from the front of `buf`. `Ok(None)`: need more bytes. After it
    /// returns `Trailers`, `is_done()` is true and nothing more is consumed (pipelined bytes
    /// stay in `buf`). After an error the decoder must not be used again.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, ChunkError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Data { remaining } => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = remaining.min(buf.len() as u64) as usize;
                    let data = buf.split_to(n).freeze();
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining: left }
                    };
                    return Ok(Some(Chunk::Data(data)));
                }
                State::TrailerLineStart
                | State::TrailerName
                | State::TrailerValue
                | State::TrailerLf
                | State::TrailerEndLf => return self.trailers(buf),
                _ => {
                    let mut i = 0;
                    let mut framing_done = false;
                    while i < buf.len() {
                        let b = buf[i];
                        i += 1;
                        self.line_byte(b)?;
                        if matches!(self.state, State::Data { .. } | State::TrailerLineStart) {
                            framing_done = true;
                            break;
                        }
                    }
                    buf.advance(i);
                    if !framing_done {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// One byte of a chunk-size line or of the CRLF after chunk data.
    fn line_byte(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        if matches!(self.state, DataCr | DataLf) {
            self.state = match (self.state, b) {
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => Size { digits: 0 },
                _ => return Err(ChunkError::BadLineEnd),
            };
            if self.state == (Size { digits: 0 }) {
                self.size = 0;
                self.line_len = 0;
            }
            return Ok(());
        }
        self.line_len += 1;
        if self.line_len > MAX_SIZE_LINE {
            return Err(match self.state {
                Size { .. } => ChunkError::BadSize,
                _ => ChunkError::BadExtension,
            });
        }
        let ws = b == b' ' || b == b'\t';
        self.state = match self.state {
            Size { digits } => {
                if let Some(d) = hex_value(b) {
                    self.size = self
                        .size
                        .checked_mul(16)
                        .map(|v| v + d as u64)
                        .filter(|&v| v <= MAX_CHUNK_SIZE)
                        .ok_or(ChunkError::SizeOverflow)?;
                    Size { digits: digits + 1 }
                } else if digits == 0 {
                    return Err(ChunkError::BadSize);
                } else if b == b'\r' {
                    SizeLf
                } else if b == b';' {
                    ExtStart
                } else if ws {
                    SizeWs
                } else {
                    return Err(ChunkError::BadSize);
                }
            }
            SizeWs => match b {
                b' ' | b'\t' => SizeWs,
                b';' => ExtStart,
                // whitespace after the size must lead to an extension
                _ => return Err(ChunkError::BadSize),
            },
            ExtStart => match b {
                b' ' | b'\t' => ExtStart,
                _ if is_tchar(b) => ExtName,
                _ => return Err(ChunkError::BadExtension),
            },
            ExtName => match b {
                _ if is_tchar(b) => ExtName,
                b'=' => ExtValueStart,
                b';' => ExtStart,
                b'\r' => SizeLf,
                b' ' | b'\t' => ExtEnd,
                _ => return Err(ChunkError::BadExtension),
            },
            ExtValueStart => match b {
                b'"' => Quoted,
                _ if is_tchar(b) => ExtToken,
                _ => return Err(ChunkError::BadExtension),
            },
            ExtToken => match b {
                _ if is_tchar(b) => ExtToken,
                b';' => ExtStart,
                b'\r' => SizeLf,
                b' ' | b'\t' => ExtEnd,
                _ => return Err(ChunkError::BadExtension),
            },
            Quoted => match b {
                b'"' => ExtEnd,
                b'\\' => QuotedPair,
                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => Quoted,
                _ => return Err(ChunkError::BadExtension),
            },
            QuotedPair => match b {
                b'\t' | b' '..=0x7e | 0x80..=0xff => Quoted,
                _ => return Err(ChunkError::BadExtension),
            },
            ExtEnd => match b {
                b' ' | b'\t' => ExtEnd,
                b';' => ExtStart,
                b'\r' => SizeLf,
                _ => return Err(ChunkError::BadExtension),
            },
            SizeLf => {
                if b != b'\n' {
                    return Err(ChunkError::BadLineEnd);
                }
                if self.size == 0 {
                    self.trailer_len = 0;
                    TrailerLineStart
                } else {
                    Data {
                        remaining: self.size,
                    }
                }
            }
            // handled in decode()
            other => other,
        };
        Ok(())
    }

    /// Validates the trailer section in place; splits it off `buf` once the empty line is in.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Option<Chunk>, ChunkError> {
        use State::*;
        while self.trailer_len < buf.len() {
            let b = buf[self.trailer_len];
            self.trailer_len += 1;
            if self.trailer_len > self.max_trailer_bytes {
                return Err(ChunkError::TrailerTooLarge);
            }
            self.state = match (self.state, b) {
                (TrailerLineStart, b'\r') => TrailerEndLf,
                (TrailerLineStart, _) if is_tchar(b) => TrailerName,
                (TrailerName, _) if is_tchar(b) => TrailerName,
                (TrailerName, b':') => TrailerValue,
                (TrailerValue, b'\r') => TrailerLf,
                (TrailerValue, _) if is_value_byte(b) => TrailerValue,
                (TrailerLf, b'\n') => TrailerLineStart,
                (TrailerEndLf, b'\n') => {
                    self.state = Done;
                    let t = buf.split_to(self.trailer_len).freeze();
                    return Ok(Some(Chunk::Trailers(t)));
                }
                _ => return Err(ChunkError::BadTrailer),
            };
        }
        Ok(None)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Writes the chunk-size line for re-framing: `{len:x}\r\n`.
pub fn write_chunk_header(out: &mut BytesMut, len: usize) {
    // fmt::Write for BytesMut cannot fail
    let _ = write!(out, "{len:x}\r\n");
}

/// Flush re-framed chunked output once it holds this much.
pub const FLUSH_AT: usize = 64 << 10;

#[cfg(test)]
mod tests {
    use super::*;

    type Decoded = (Vec<u8>, Option<Vec<u8>>, Option<ChunkError>, Vec<u8>, bool);

    /// Decodes `input` fed in pieces of the given sizes (cycled); returns (payload, trailers,
    /// error, leftover, done).
    pub(crate) fn run(input: &[u8], pieces: &[usize]) -> Decoded {
        let mut d = ChunkedDecoder::new(64);
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut trailers = None;
        let mut pos = 0;
        let mut k = 0;
        loop {
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(Chunk::Data(b))) => {
                        assert!(!b.is_empty());
                        data.extend_from_slice(&b)
                    }
                    Ok(Some(Chunk::Trailers(t))) => trailers = Some(t.to_vec()),
                    Ok(None) => break,
                    Err(e) => return (data, trailers, Some(e), Vec::new(), false),
                }
            }
            if pos >= input.len() {
                break;
            }
            let n = pieces[k % pieces.len()].max(1).min(input.len() - pos);
            k += 1;
            buf.extend_from_slice(&input[pos..pos + n]);
            pos += n;
        }
        (data, trailers, None, buf.to_vec(), d.is_done())
    }

    fn whole(input: &[u8]) -> Decoded {
        run(input, &[usize::MAX])
    }

    fn err(input: &[u8]) -> ChunkError {
        whole(input)
            .2
            .unwrap_or_else(|| panic!("{input:?} should fail"))
    }

    #[test]
    fn basic_with_pipelined_rest() {
        let (data, tr, e, rest, done) = whole(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /");
        assert_eq!(data, b"hello world");
        assert_eq!(tr.as_deref(), Some(&b"\r\n"[..]));
        assert_eq!((e, done), (None, true));
        assert_eq!(rest, b"GET /");
    }

    #[test]
    fn trailers_and_extensions() {
        let input =
            b"A;name=val;q=\"a \\\" b\" ; x\r\n0123456789\r\n0;last\r\nX-Sum: 1\r\nY:\r\n\r\n";
        let (data, tr, e, _, done) = whole(input);
        assert_eq!((e, done), (None, true));
        assert_eq!(data, b"0123456789");
        assert_eq!(tr.as_deref(), Some(&b"X-Sum: 1\r\nY:\r\n\r\n"[..]));
        // BWS before ';' is tolerated
        assert_eq!(
            whole(b"3 \t;a\r\nabc\r\n0\r\n\r\n").1.as_deref(),
            Some(&b"\r\n"[..])
        );
    }

    #[test]
    fn split_invariance() {
        let input: &[u8] =
            b"1f\r\n0123456789abcdef0123456789abcde\r\n3;e=\"q\"\r\nxyz\r\n0\r\nT: v\r\n\r\nrest";
        let expect = whole(input);
        assert!(expect.4);
        assert_eq!(run(input, &[1]), expect);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200 {
            let pieces: Vec<usize> = (0..8)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 9) as usize + 1
                })
                .collect();
            assert_eq!(run(input, &pieces), expect, "{pieces:?}");
        }
        // an error is the same wherever the input is split
        let bad = b"3\r\nabc\r\n4\r\nab";
        assert_eq!(run(bad, &[1]), whole(bad));
        let bad = b"3\r\nabcX\r\n";
        assert_eq!(run(bad, &[1]).2, Some(ChunkError::BadLineEnd));
    }

    #[test]
    fn incomplete_needs_more() {
        let (data, tr, e, _, done) = whole(b"5\r\nhel");
        assert_eq!(
            (data.as_slice(), tr, e, done),
            (&b"hel"[..], None, None, false)
        );
        assert!(!whole(b"0\r\nX: 1\r\n").4);
    }

    #[test]
    fn bad_sizes() {
        for s in [
            &b"\r\n"[..],
            b"x\r\n",
            b"-1\r\n",
            b"+1\r\n",
            b"0x5\r\n",
            b" 5\r\n",
            b"5 \r\n",
            b"5\t\r\n",
            b";a\r\n",
            b"5\n",
        ] {
            let e = err(s);
            assert!(
                matches!(e, ChunkError::BadSize | ChunkError::BadLineEnd),
                "{s:?}: {e:?}"
            );
        }
        assert_eq!(err(b"5\n"), ChunkError::BadSize);
        assert_eq!(err(b"5\rx"), ChunkError::BadLineEnd);
        assert_eq!(err(b"fffffffffffffffff\r\n"), ChunkError::SizeOverflow);
        assert_eq!(err(b"1000000000000001\r\n"), ChunkError::SizeOverflow);
        // 2^60 itself is allowed; leading zeros are just digits
        assert_eq!(whole(b"1000000000000000\r\n").2, None);
        assert_eq!(whole(b"0000000000000000000001\r\nx\r\n").0, b"x");
        let long = [b'0'; MAX_SIZE_LINE + 1];
        assert_eq!(err(&long), ChunkError::BadSize);
    }

    #[test]
    fn bad_line_ends() {
        assert_eq!(err(b"3\r\nabc0\r\n\r\n"), ChunkError::BadLineEnd);
        assert_eq!(err(b"3\r\nabc\n0\r\n\r\n"), ChunkError::BadLineEnd);
        assert_eq!(err(b"3\r\nabc\r\r\n"), ChunkError::BadLineEnd);
        assert_eq!(err(b"3\r\nabc\r\n0\r\n\n"), ChunkError::BadTrailer);
    }

    #[test]
    fn bad_extensions() {
        for s in [
            &b"3;\r\n"[..],
            b"3;=a\r\n",
            b"3;a=\r\n",
            b"3;a=b c\r\n",
            b"3;a=\"unterminated\r\n",
            b"3;a=\"x\"y\r\n",
            b"3;a\x00\r\n",
            b"3;a=\x01\r\n",
            b"3;a b\r\n",
        ] {
            assert_eq!(err(s), ChunkError::BadExtension, "{s:?}");
        }
        let mut long = b"3;a=".to_vec();
        long.extend(std::iter::repeat_n(b'b', MAX_SIZE_LINE));
        assert_eq!(err(&long), ChunkError::BadExtension);
    }

    #[test]
    fn bad_trailers() {
        for s in [
            &b"0\r\n X: 1\r\n\r\n"[..],
            b"0\r\nX : 1\r\n\r\n",
            b"0\r\nX\r\n\r\n",
            b"0\r\nX: a\x00\r\n\r\n",
            b"0\r\nX: 1\n\r\n",
            b"0\r\nX: 1\r\n\rx",
        ] {
            assert_eq!(err(s), ChunkError::BadTrailer, "{s:?}");
        }
        // the limit is 64 in run()
        let mut big = b"0\r\nX: ".to_vec();
        big.extend([b'a'; 80]);
        assert_eq!(err(&big), ChunkError::TrailerTooLarge);
    }

    #[test]
    fn done_consumes_nothing_more() {
        let mut d = ChunkedDecoder::default();
        let mut buf = BytesMut::from(&b"0\r\n\r\nNEXT"[..]);
        assert_eq!(
            d.decode(&mut buf).unwrap(),
            Some(Chunk::Trailers(Bytes::from_static(b"\r\n")))
        );
        assert!(d.is_done());
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert_eq!(&buf[..], b"NEXT");
    }

    #[test]
    fn chunk_header_round_trip() {
        let mut out = BytesMut::new();
        write_chunk_header(&mut out, 0x1a2b);
        out.extend_from_slice(&[b'z'; 0x1a2b]);
        out.extend_from_slice(b"\r\n");
        write_chunk_header(&mut out, 1);
        out.extend_from_slice(b"!\r\n");
        out.extend_from_slice(LAST_CHUNK);
        out.extend_from_slice(b"\r\n");
        assert!(out.starts_with(b"1a2b\r\n"));
        let (data, _, e, rest, done) = whole(&out);
        assert_eq!((e, done, rest.len()), (None, true, 0));
        assert_eq!(data.len(), 0x1a2b + 1);
        assert_eq!(data.last(), Some(&b'!'));
    }
}
