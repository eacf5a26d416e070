//! The chunked transfer coding (RFC 9112 §7.1): an incremental decoder, strict about every
//! line end, and the encoder the gateway frames bodies with.

use std::ops::Range;

use super::hex;

/// Most bytes of chunk extensions in one body (hyper allows 16 KiB), and of trailer fields.
const MAX_EXTENSIONS: usize = 4096;
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Most trailer fields (hyper allows as many as header fields, 100 by default).
const MAX_TRAILER_FIELDS: usize = 64;

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

/// What [`ChunkedDecoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Body bytes at this range of the input.
    Data(Range<usize>),
    /// The input is used up; more is needed.
    More,
    /// The body ended (last chunk and trailers read).
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    SizeStart,
    Size,
    /// Spaces or tabs after the size: only more of them, `;` or CR may follow.
    SizeLws,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    EndLf,
    Done,
}

/// An incremental decoder of the chunked coding.
#[derive(Debug, Default, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the current chunk still to come (in `Data`), or the size being read.
    size: u64,
    digits: u8,
    extensions: usize,
    trailer_bytes: usize,
    trailer_fields: usize,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder::default()
    }

    /// True once the last chunk and the trailers were read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `input`: returns how many bytes were used and what they held.
    /// Data is returned as soon as there is some, so a caller can pass it on before reading
    /// more. Bytes after the end are not used: they belong to the next message.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Chunk), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::SizeStart | State::Size => match hex(b) {
                    Some(d) => {
                        self.digits += 1;
                        if self.digits > 16 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        self.size = self.size << 4 | u64::from(d);
                        self.state = State::Size;
                    }
                    None if self.state == State::SizeStart => {
                        return Err(ChunkError("invalid chunk size"))
                    }
                    None => self.after_size(b)?,
                },
                State::SizeLws => match b {
                    b' ' | b'\t' => {}
                    _ => self.after_size(b)?,
                },
                State::Extension => {
                    self.extensions += 1;
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        _ if self.extensions > MAX_EXTENSIONS => {
                            return Err(ChunkError("chunk extensions too long"))
                        }
                        b'\t' | 0x20..=0x7e | 0x80..=0xff => {}
                        _ => return Err(ChunkError("invalid chunk extension")),
                    }
                }
                State::SizeLf => {
                    expect(b, b'\n', "chunk size line not ended by CRLF")?;
                    self.digits = 0;
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let n = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    self.size -= n as u64;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    return Ok((i + n, Chunk::Data(i..i + n)));
                }
                State::DataCr => {
                    expect(b, b'\r', "chunk data not followed by CRLF")?;
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    expect(b, b'\n', "chunk data not followed by CRLF")?;
                    self.state = State::SizeStart;
                }
                State::TrailerStart if b == b'\r' => self.state = State::EndLf,
                State::TrailerStart | State::TrailerName => {
                    self.trailer_byte()?;
                    self.state = match b {
                        b':' if self.state == State::TrailerName => State::TrailerValue,
                        _ if is_tchar(b) => State::TrailerName,
                        _ => return Err(ChunkError("invalid trailer field")),
                    };
                }
                State::TrailerValue => {
                    self.trailer_byte()?;
                    match b {
                        b'\r' => self.state = State::TrailerLf,
                        b'\t' | 0x20..=0x7e | 0x80..=0xff => {}
                        _ => return Err(ChunkError("invalid trailer field")),
                    }
                }
                State::TrailerLf => {
                    expect(b, b'\n', "trailer line not ended by CRLF")?;
                    self.trailer_fields += 1;
                    if self.trailer_fields > MAX_TRAILER_FIELDS {
                        return Err(ChunkError("too many trailer fields"));
                    }
                    self.state = State::TrailerStart;
                }
                State::EndLf => {
                    expect(b, b'\n', "chunked body not ended by CRLF")?;
                    self.state = State::Done;
                    return Ok((i + 1, Chunk::End));
                }
                State::Done => return Ok((i, Chunk::End)),
            }
            i += 1;
        }
        Ok((
            i,
            if self.state == State::Done {
                Chunk::End
            } else {
                Chunk::More
            },
        ))
    }

    /// A byte after at least one size digit that is not one: white space, an extension, or
    /// the line's end; anything else (another digit after white space included) is refused.
    fn after_size(&mut self, b: u8) -> Result<(), ChunkError> {
        self.state = match b {
            b'\r' => State::SizeLf,
            b';' => State::Extension,
            b' ' | b'\t' => State::SizeLws,
            _ => return Err(ChunkError("invalid chunk size")),
        };
        Ok(())
    }

    fn trailer_byte(&mut self) -> Result<(), ChunkError> {
        self.trailer_bytes += 1;
        if self.trailer_bytes > MAX_TRAILER_BYTES {
            return Err(ChunkError("trailers too large"));
        }
        Ok(())
    }
}

/// A `tchar` (RFC 9110 §5.6.2): what a field name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `b` must be `want` (the CR or LF of a chunked body's line ends).
fn expect(b: u8, want: u8, why: &'static str) -> Result<(), ChunkError> {
    if b == want {
        Ok(())
    } else {
        Err(ChunkError(why))
    }
}

/// The line that starts a chunk of `len` bytes: `{len:x}\r\n`, written into `out`.
pub fn chunk_header(len: usize, out: &mut [u8; 18]) -> &[u8] {
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, digit) in out[..digits].iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[(len >> (4 * (digits - 1 - i))) & 0xf];
    }
    out[digits] = b'\r';
    out[digits + 1] = b'\n';
    &out[..digits + 2]
}

/// Appends `data` as one chunk to `out`.
pub fn push_chunk(out: &mut Vec<u8>, data: &[u8]) {
    let mut header = [0u8; 18];
    out.extend_from_slice(chunk_header(data.len(), &mut header));
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The end of a chunked body (last chunk, no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns the body or the error.
    fn dechunk(input: &[u8], step: usize) -> Result<Vec<u8>, ChunkError> {
        let mut dec = ChunkedDecoder::new();
        let mut body = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        for piece in input.chunks(step) {
            pending.extend_from_slice(piece);
            let mut pos = 0;
            loop {
                let (n, chunk) = dec.decode(&pending[pos..])?;
                match chunk {
                    Chunk::Data(r) => body.extend_from_slice(&pending[pos..][r]),
                    Chunk::End => return Ok(body),
                    Chunk::More => {}
                }
                pos += n;
                if pos == pending.len() || n == 0 {
                    break;
                }
            }
            pending.drain(..pos);
        }
        Err(ChunkError("incomplete"))
    }

    #[test]
    fn chunked_decoding() {
        let body =
            b"5\r\nhello\r\n6;ext=1\r\n world\r\nA \t;x\r\n0123456789\r\n0\r\nX-T: 1\r\nY:\r\n\r\n";
        for step in [1, 2, 3, 7, body.len()] {
            assert_eq!(
                dechunk(body, step).unwrap(),
                b"hello world0123456789",
                "step {step}"
            );
        }
        assert_eq!(dechunk(b"0\r\n\r\n", 1).unwrap(), b"");
        assert_eq!(dechunk(b"3 \r\nabc\r\n0\r\n\r\n", 1).unwrap(), b"abc");
        let many_trailers = format!("0\r\n{}\r\n", "a:b\r\n".repeat(65));
        let long_extensions = "1;".to_owned() + &"x".repeat(2500) + "\r\na\r\n";
        for bad in [
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
            b"3x\r\nabc\r\n0\r\n\r\n",
            b"3 x\r\nabc\r\n0\r\n\r\n",
            b"3 3\r\nabc\r\n0\r\n\r\n",
            b" 3\r\nabc\r\n0\r\n\r\n",
            b"ffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"3\r\nabcd\r\n0\r\n\r\n",
            b"3\r\nabc\n0\r\n\r\n",
            b"\r\n",
            b"-1\r\n",
            b"0\r\n\r\r\n",
            b"3;\x00\r\nabc\r\n0\r\n\r\n",
            b"3;a\nb\r\nabc\r\n0\r\n\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"0\r\n: empty name\r\n\r\n",
            b"0\r\nX : space before colon\r\n\r\n",
            b"0\r\nX: a\x01b\r\n\r\n",
            b"0\r\nX: a\nY: b\r\n\r\n",
            many_trailers.as_bytes(),
            (long_extensions.repeat(2) + "0\r\n\r\n").as_bytes(),
        ] {
            assert!(
                dechunk(bad, 1).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut dec = ChunkedDecoder::new();
        // Bytes after the end are not consumed: they belong to the next message.
        assert_eq!(dec.decode(b"0\r\n\r\nGET"), Ok((5, Chunk::End)));
        assert!(dec.is_done());
    }

    #[test]
    fn chunk_headers() {
        let mut buf = [0u8; 18];
        assert_eq!(chunk_header(0, &mut buf), b"0\r\n");
        assert_eq!(chunk_header(10, &mut buf), b"a\r\n");
        assert_eq!(chunk_header(0x1234f, &mut buf), b"1234f\r\n");
        assert_eq!(chunk_header(usize::MAX, &mut buf), b"ffffffffffffffff\r\n");
    }
}
