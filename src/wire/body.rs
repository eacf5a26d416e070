//! Reading a message body by its framing: the one decoder both sides use (a client's request
//! body, an upstream's response body).

use std::ops::Range;

use super::{Chunk, ChunkError, ChunkedDecoder, Framing};

/// What [`BodyDecoder::decode`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Body bytes at this range of the input.
    Data(Range<usize>),
    /// The input is used up; more is needed.
    More,
    /// The body is complete.
    End,
}

/// Where a body being read is.
#[derive(Debug, Clone)]
pub enum BodyDecoder {
    /// This many bytes are still to come.
    Length(u64),
    /// Chunked.
    Chunked(ChunkedDecoder),
    /// Until the connection closes (see [`BodyDecoder::eof`]).
    UntilClose,
    /// The body is complete.
    Done,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> BodyDecoder {
        match framing {
            Framing::Empty | Framing::Length(0) => BodyDecoder::Done,
            Framing::Length(n) => BodyDecoder::Length(n),
            Framing::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new()),
            Framing::UntilClose => BodyDecoder::UntilClose,
        }
    }

    /// True once the whole body was read.
    pub fn is_done(&self) -> bool {
        matches!(self, BodyDecoder::Done)
    }

    /// Decodes from the start of `input`: how many bytes were used, and what they held. Bytes
    /// after the body are never used.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Piece), ChunkError> {
        match self {
            BodyDecoder::Done => Ok((0, Piece::End)),
            BodyDecoder::Length(_) | BodyDecoder::UntilClose if input.is_empty() => {
                Ok((0, Piece::More))
            }
            BodyDecoder::Length(left) => {
                let n = input
                    .len()
                    .min(usize::try_from(*left).unwrap_or(usize::MAX));
                *left -= n as u64;
                if *left == 0 {
                    *self = BodyDecoder::Done;
                }
                Ok((n, Piece::Data(0..n)))
            }
            BodyDecoder::UntilClose => Ok((input.len(), Piece::Data(0..input.len()))),
            BodyDecoder::Chunked(dec) => {
                let mut at = 0;
                loop {
                    let (used, chunk) = dec.decode(&input[at..])?;
                    let start = at;
                    at += used;
                    match chunk {
                        Chunk::Data(r) => {
                            return Ok((at, Piece::Data(start + r.start..start + r.end)))
                        }
                        Chunk::End => {
                            *self = BodyDecoder::Done;
                            return Ok((at, Piece::End));
                        }
                        Chunk::More if at == input.len() => return Ok((at, Piece::More)),
                        Chunk::More => {}
                    }
                }
            }
        }
    }

    /// The connection closed: the end of a body read until close, an error for any other
    /// body not yet complete.
    pub fn eof(&mut self) -> Result<(), ChunkError> {
        match self {
            BodyDecoder::Done => Ok(()),
            BodyDecoder::UntilClose => {
                *self = BodyDecoder::Done;
                Ok(())
            }
            _ => Err(ChunkError("body cut short")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(framing: Framing, input: &[u8]) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = BodyDecoder::new(framing);
        let (mut body, mut at) = (Vec::new(), 0);
        loop {
            let (used, piece) = d.decode(&input[at..])?;
            match piece {
                Piece::Data(r) => body.extend_from_slice(&input[at..][r]),
                Piece::End => return Ok((body, at + used)),
                Piece::More => {
                    d.eof()?;
                    return Ok((body, at + used));
                }
            }
            at += used;
        }
    }

    #[test]
    fn every_framing() {
        assert_eq!(read_all(Framing::Empty, b"xyz").unwrap(), (vec![], 0));
        assert_eq!(
            read_all(Framing::Length(2), b"xyz").unwrap(),
            (b"xy".to_vec(), 2)
        );
        assert!(read_all(Framing::Length(4), b"xyz").is_err());
        assert_eq!(
            read_all(Framing::UntilClose, b"xyz").unwrap(),
            (b"xyz".to_vec(), 3)
        );
        assert_eq!(
            read_all(Framing::Chunked, b"1\r\nx\r\n0\r\n\r\nNEXT").unwrap(),
            (b"x".to_vec(), 11)
        );
        assert!(read_all(Framing::Chunked, b"1\r\nx\r\n").is_err());
    }
}
