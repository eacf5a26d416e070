//! Response heads from upstreams and how their bodies are delimited (RFC 9112 §6.3).

use std::mem::MaybeUninit;

use super::{framing_facts, Framing, Header, Version};

/// Largest upstream response head the gateway reads (larger: 502).
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Most header fields an upstream response may have (more: 502), as hyper's client.
pub const MAX_RESPONSE_FIELDS: usize = 100;

/// A parsed upstream response head, borrowing the buffer it was read into.
#[derive(Debug)]
pub struct ResponseHead<'b, 'h> {
    /// The protocol version.
    pub version: Version,
    /// The status code.
    pub status: u16,
    /// The reason phrase, as sent (may be empty).
    pub reason: &'b str,
    /// The header fields, in order.
    pub headers: &'h [Header<'b>],
    /// The same fields as a header map, when the head came as one (from an HTTP/2 upstream):
    /// an HTTP/2 response head written from them shares their names and values.
    pub map: Option<&'b http::HeaderMap>,
    /// Bytes of the head, final empty line included.
    pub len: usize,
}

/// Parses a response head at the start of `buf`. `Ok(None)`: incomplete.
pub fn parse_response<'b, 'h>(
    buf: &'b [u8],
    slots: &'h mut [MaybeUninit<Header<'b>>],
) -> Result<Option<ResponseHead<'b, 'h>>, &'static str> {
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, slots)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD => {
            return Err("response head too large")
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed response head"),
    };
    let (Some(minor), Some(status)) = (res.version, res.code) else {
        return Err("malformed response head");
    };
    if !(100..=599).contains(&status) {
        return Err("invalid response status");
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    Ok(Some(ResponseHead {
        version,
        status,
        reason: res.reason.unwrap_or(""),
        headers: res.headers,
        map: None,
        len,
    }))
}

/// How a response body is delimited, whether the connection can carry another request
/// afterwards, and the `Content-Length` it declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFraming {
    /// How the body is delimited.
    pub framing: Framing,
    /// The connection may be reused once the body is read.
    pub reusable: bool,
    /// `Content-Length`, as declared (also for `HEAD` and `304`, which have no body).
    pub declared: Option<u64>,
}

/// The framing of `head`, the response to a request with method `HEAD` when `head_request`
/// (RFC 9112 §6.3). A transfer coding other than exactly `chunked` is refused (it would reach
/// the client undecoded, under a framing the gateway rewrites), and so is one on HTTP/1.0.
pub fn response_framing(
    head: &ResponseHead<'_, '_>,
    head_request: bool,
) -> Result<ResponseFraming, &'static str> {
    let f = framing_facts(head.headers).map_err(|_| "invalid Content-Length in response")?;
    let mut reusable = head.version == Version::Http11 && !f.close;
    let bodiless = head_request || head.status < 200 || head.status == 204 || head.status == 304;
    if f.chunked.is_some() && head.version == Version::Http10 && !bodiless {
        return Err("Transfer-Encoding in an HTTP/1.0 response");
    }
    let framing = if bodiless {
        Framing::Empty
    } else {
        match (f.chunked, f.length) {
            // RFC 9112 §6.3: chunked wins, and the connection is not reused.
            (Some(true), length) => {
                reusable &= length.is_none();
                Framing::Chunked
            }
            (Some(false), _) => return Err("unsupported transfer coding in response"),
            (None, None) => {
                reusable = false;
                Framing::UntilClose
            }
            (None, Some(n)) => Framing::length(n),
        }
    };
    Ok(ResponseFraming {
        framing,
        reusable,
        declared: f.length,
    })
}

#[cfg(test)]
mod tests {
    use super::super::header_slots;
    use super::*;

    fn response(raw: &str, head_request: bool) -> Result<ResponseFraming, &'static str> {
        let mut slots = header_slots();
        let head = parse_response(raw.as_bytes(), &mut slots[..100])?.unwrap();
        response_framing(&head, head_request)
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let f = |raw: &str| response(raw, false).unwrap();
        let r = f("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Length(3), true));
        let r = f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Chunked, true));
        let r = f("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Chunked, false));
        let r = f("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::UntilClose, false));
        for bad in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: \r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 099 Odd\r\n\r\n",
            "garbage\r\n\r\n",
        ] {
            assert!(response(bad, false).is_err(), "{bad:?}");
        }
        let r = f("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Length(3), false));
        let r = f("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\n");
        assert!(!r.reusable);
        let r = f("HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!((r.framing, r.reusable), (Framing::Empty, true));
        let r = f("HTTP/1.1 304 Not Modified\r\nContent-Length: 30\r\n\r\n");
        assert_eq!((r.framing, r.declared), (Framing::Empty, Some(30)));
        let r = response("HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n", true).unwrap();
        assert_eq!((r.framing, r.declared), (Framing::Empty, Some(30)));
    }
}
