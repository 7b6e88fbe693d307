//! HTTP/1.1 request and response heads: one httparse scan plus one pass of RFC 9112 strictness checks, as offsets into the head's `Bytes`.
//!
//! Strictness (every rejection is `HeadError::Invalid`, status 400 for requests; the proxy
//! answers 502 for a backend's invalid response): see the README section "HTTP/1.1 parsing" for the table.
//! httparse is lenient in a few places (bare LF line ends, leading bare LF, obs-text in the
//! target); those are closed here.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};

/// Size limits for one head. Both are conf values; the defaults match common servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Request/status line plus headers plus the final CRLF CRLF, in bytes.
    pub max_bytes: usize,
    /// Number of header fields.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_bytes: 16384,
            max_headers: 100,
        }
    }
}

/// Why a head was refused. Small and `Copy`: the proxy maps it to a status and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("head larger than the limit")]
    TooLarge,
    #[error("more header fields than the limit")]
    TooManyHeaders,
    #[error("invalid head: {0}")]
    Invalid(&'static str),
}

impl HeadError {
    /// The status a proxy answers a client with: 431 for size limits, 400 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge | HeadError::TooManyHeaders => 431,
            HeadError::Invalid(_) => 400,
        }
    }
}

/// Byte offsets into a head's `buf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One header field; `value` excludes leading and trailing whitespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub name: Span,
    pub value: Span,
    /// Connection-specific: the proxy must not forward it.
    pub hop_by_hop: bool,
}

/// How the message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    None,
    Length(u64),
    Chunked,
    /// Responses only: the body runs until the backend closes.
    UntilClose,
}

/// The four request-target forms of RFC 9112 section 3.2 (API addition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`
    Origin,
    /// `http://host[:port]/path?query` (http and https only)
    Absolute,
    /// `host:port`, CONNECT only
    Authority,
    /// `*`, OPTIONS only
    Asterisk,
}

/// A parsed, validated request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Exactly the head bytes, request line through the final CRLF CRLF.
    pub buf: Bytes,
    pub method: Span,
    pub target: Span,
    /// 0 or 1.
    pub minor_version: u8,
    pub headers: Vec<Header>,
    pub body: BodyKind,
    pub keep_alive: bool,
    pub upgrade: bool,
    pub expect_continue: bool,
    /// The Host header value.
    pub host: Option<Span>,
    /// Which form the target has (API addition).
    pub form: TargetForm,
}

impl RequestHead {
    pub fn method(&self) -> &[u8] {
        self.slice(self.method)
    }
    pub fn target(&self) -> &[u8] {
        self.slice(self.target)
    }
    pub fn slice(&self, s: Span) -> &[u8] {
        &self.buf[s.range()]
    }
    /// The first header with this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.buf, &self.headers, name)
    }
    /// The value of every field line with this name, in order: a list field
    /// may be split over several lines (RFC 9110 5.3).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        find_headers(&self.buf, &self.headers, name)
    }
    /// The authority of an absolute-form target (`http://AUTHORITY/path`),
    /// without userinfo (which never goes into Host); else empty.
    pub fn absolute_authority(&self) -> &[u8] {
        if self.form != TargetForm::Absolute {
            return b"";
        }
        let t = self.target();
        let after = t
            .windows(3)
            .position(|w| w == b"://")
            .map_or(t, |i| &t[i + 3..]);
        let end = after
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(after.len());
        let auth = &after[..end];
        auth.iter()
            .rposition(|&b| b == b'@')
            .map_or(auth, |i| &auth[i + 1..])
    }

    /// Safe to retry on another server: GET HEAD PUT DELETE OPTIONS TRACE.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method(),
            b"GET" | b"HEAD" | b"PUT" | b"DELETE" | b"OPTIONS" | b"TRACE"
        )
    }
    /// The target without its query; for absolute-form the path part (`/` when empty);
    /// for authority-form and `*` the whole target.
    pub fn path(&self) -> &[u8] {
        let t = self.target();
        let p = match self.form {
            TargetForm::Origin => t,
            TargetForm::Absolute => {
                // validated: scheme "://" authority [path-abempty] ["?" query]
                let after = match t.windows(3).position(|w| w == b"://") {
                    Some(i) => &t[i + 3..],
                    None => t,
                };
                match after.iter().position(|&b| b == b'/' || b == b'?') {
                    Some(i) => &after[i..],
                    None => b"",
                }
            }
            TargetForm::Authority | TargetForm::Asterisk => return t,
        };
        let p = match p.iter().position(|&b| b == b'?') {
            Some(i) => &p[..i],
            None => p,
        };
        if p.is_empty() {
            b"/"
        } else {
            p
        }
    }
    /// A CONNECT request (API addition).
    pub fn is_connect(&self) -> bool {
        self.method() == b"CONNECT"
    }
}

/// A parsed, validated response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub buf: Bytes,
    pub status: u16,
    pub minor_version: u8,
    pub reason: Span,
    pub headers: Vec<Header>,
    pub body: BodyKind,
    pub keep_alive: bool,
}

impl ResponseHead {
    pub fn slice(&self, s: Span) -> &[u8] {
        &self.buf[s.range()]
    }
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        find_header(&self.buf, &self.headers, name)
    }
    /// See [`RequestHead::header_values`].
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> {
        find_headers(&self.buf, &self.headers, name)
    }
}

fn find_header<'a>(buf: &'a [u8], headers: &[Header], name: &str) -> Option<&'a [u8]> {
    find_headers(buf, headers, name).next()
}

fn find_headers<'a, 'h, 'n>(
    buf: &'a [u8],
    headers: &'h [Header],
    name: &'n str,
) -> impl Iterator<Item = &'a [u8]> + use<'a, 'h, 'n> {
    headers
        .iter()
        .filter(move |h| buf[h.name.range()].eq_ignore_ascii_case(name.as_bytes()))
        .map(move |h| &buf[h.value.range()])
}

thread_local! {
    /// Header lists of dropped heads, reused by the next parse on this thread
    /// (an allocation and a free per head less).
    static SPARE_HEADERS: std::cell::RefCell<Vec<Vec<Header>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty header list, reused when the thread has one.
fn header_list() -> Vec<Header> {
    SPARE_HEADERS
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(32))
}

fn give_header_list(mut v: Vec<Header>) {
    if v.capacity() == 0 || v.capacity() > 1024 {
        return;
    }
    v.clear();
    SPARE_HEADERS.with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < 64 {
            s.push(v);
        }
    });
}

impl Drop for RequestHead {
    fn drop(&mut self) {
        give_header_list(std::mem::take(&mut self.headers));
    }
}

impl Drop for ResponseHead {
    fn drop(&mut self) {
        give_header_list(std::mem::take(&mut self.headers));
    }
}

/// Header arrays up to this size live on the stack; larger limits use the heap.
const STACK_HEADERS: usize = 128;

/// Parses a request head from the front of `buf`.
///
/// `Ok(None)`: incomplete, read more. `Ok(Some)`: the head bytes were split off `buf`; what
/// remains is body or pipelined data. Leading CRLFs before the request line are dropped.
pub fn parse_request(
    buf: &mut BytesMut,
    limits: &HeadLimits,
) -> Result<Option<RequestHead>, HeadError> {
    parse_request_with(buf, limits, Vec::new())
}

/// `parse_request`, reusing `headers` (cleared) for the result's header list (API addition).
pub fn parse_request_with(
    buf: &mut BytesMut,
    limits: &HeadLimits,
    headers: Vec<Header>,
) -> Result<Option<RequestHead>, HeadError> {
    skip_leading_crlf(buf);
    let window = &buf[..buf.len().min(limits.max_bytes)];
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let raw = raw_headers(&mut stack, &mut heap, limits.max_headers);
    let mut req = httparse::Request::new(&mut []);
    let n = match req.parse_with_uninit_headers(window, raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return incomplete(buf.len(), limits),
        Err(e) => return Err(map_httparse(e)),
    };
    let head = &window[..n];
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Invalid("incomplete request line"));
    };
    check_head_bytes(head, req.headers.len())?;
    let method = span_of(head, method.as_bytes());
    let target = span_of(head, target.as_bytes());
    // single SP separators and the exact version token
    if method.start != 0
        || head.get(method.end as usize) != Some(&b' ')
        || target.start != method.end + 1
        || head.get(target.end as usize) != Some(&b' ')
        || head.get(target.end as usize + 1..target.end as usize + 11)
            != Some(if version == 1 {
                b"HTTP/1.1\r\n"
            } else {
                b"HTTP/1.0\r\n"
            })
    {
        return Err(HeadError::Invalid("malformed request line"));
    }
    let method_bytes = &head[method.range()];
    if !method_bytes.iter().all(|&b| is_tchar(b)) {
        return Err(HeadError::Invalid("invalid method"));
    }
    let target_bytes = &head[target.range()];
    let form = target_form(method_bytes, target_bytes)?;

    // Taken only now: an incomplete head (the common partial read) takes none.
    let mut out = if headers.capacity() == 0 {
        header_list()
    } else {
        headers
    };
    out.clear();
    out.reserve_exact(req.headers.len());
    let facts = scan_headers(head, req.headers, &mut out, true)?;

    if facts.te_chunked && version == 0 {
        return Err(HeadError::Invalid("Transfer-Encoding in HTTP/1.0"));
    }
    let body = match (facts.content_length, facts.te_chunked) {
        (Some(_), true) => return Err(HeadError::Invalid("Content-Length with Transfer-Encoding")),
        (Some(n), false) => BodyKind::Length(n),
        (None, true) => BodyKind::Chunked,
        (None, false) => BodyKind::None,
    };
    if facts.host_count > 1 {
        return Err(HeadError::Invalid("several Host headers"));
    }
    if version == 1 && facts.host.is_none() {
        return Err(HeadError::Invalid("HTTP/1.1 without Host"));
    }
    if let Some(h) = facts.host {
        if !valid_authority(&head[h.range()], false) {
            return Err(HeadError::Invalid("invalid Host"));
        }
    }
    if form == TargetForm::Absolute {
        if let Some(h) = facts.host {
            if !same_authority(target_bytes, &head[h.range()]) {
                return Err(HeadError::Invalid(
                    "absolute-form target disagrees with Host",
                ));
            }
        }
    }
    let keep_alive = if version == 1 {
        !facts.conn_close
    } else {
        facts.conn_keep_alive && !facts.conn_close
    };
    let upgrade = version == 1 && facts.conn_upgrade && facts.upgrade_header;
    if !upgrade {
        mark_upgrade_hop(head, &mut out);
    }
    let host = facts.host;
    // RFC 9110 10.1.1: a server ignores 100-continue from an HTTP/1.0 client
    let expect_continue = facts.expect_continue && version == 1;
    let bytes = buf.split_to(n).freeze();
    Ok(Some(RequestHead {
        buf: bytes,
        method,
        target,
        minor_version: version,
        headers: out,
        body,
        keep_alive,
        upgrade,
        expect_continue,
        host,
        form,
    }))
}

/// Parses a response head from the front of `buf`. `request_was_head` makes the body `None`.
pub fn parse_response(
    buf: &mut BytesMut,
    limits: &HeadLimits,
    request_was_head: bool,
) -> Result<Option<ResponseHead>, HeadError> {
    let method: &[u8] = if request_was_head { b"HEAD" } else { b"GET" };
    parse_response_for(buf, limits, method)
}

/// `parse_response` given the request's method, so that a 2xx to CONNECT has no body
/// (API addition).
pub fn parse_response_for(
    buf: &mut BytesMut,
    limits: &HeadLimits,
    request_method: &[u8],
) -> Result<Option<ResponseHead>, HeadError> {
    skip_leading_crlf(buf);
    let window = &buf[..buf.len().min(limits.max_bytes)];
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let raw = raw_headers(&mut stack, &mut heap, limits.max_headers);
    let mut res = httparse::Response::new(&mut []);
    let n = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, window, raw)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return incomplete(buf.len(), limits),
        Err(e) => return Err(map_httparse(e)),
    };
    let head = &window[..n];
    let (Some(version), Some(status)) = (res.version, res.code) else {
        return Err(HeadError::Invalid("incomplete status line"));
    };
    check_head_bytes(head, res.headers.len())?;
    if !(100..=999).contains(&status) {
        return Err(HeadError::Invalid("invalid status code"));
    }
    // "HTTP/1.x SSS" then either CRLF or SP reason CRLF
    let line_end = head
        .iter()
        .position(|&b| b == b'\r')
        .ok_or(HeadError::Invalid("malformed status line"))?;
    if head.get(8) != Some(&b' ') || line_end < 12 {
        return Err(HeadError::Invalid("malformed status line"));
    }
    let reason = if line_end == 12 {
        span(12, 12)
    } else if head[12] == b' ' {
        span(13, line_end)
    } else {
        return Err(HeadError::Invalid("malformed status line"));
    };
    if !head[reason.range()]
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
    {
        return Err(HeadError::Invalid("invalid reason phrase"));
    }

    let mut out = header_list();
    let facts = scan_headers(head, res.headers, &mut out, false)?;
    if facts.content_length.is_some() && facts.te_present {
        return Err(HeadError::Invalid("Content-Length with Transfer-Encoding"));
    }
    if facts.te_present && version == 0 {
        return Err(HeadError::Invalid("Transfer-Encoding in HTTP/1.0"));
    }
    if facts.te_present && !facts.te_codings {
        return Err(HeadError::Invalid("empty Transfer-Encoding"));
    }
    let no_body = request_method == b"HEAD"
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (request_method == b"CONNECT" && (200..300).contains(&status));
    let body = if no_body {
        BodyKind::None
    } else if facts.te_present && facts.te_chunked {
        BodyKind::Chunked
    } else if facts.te_present {
        // Not ending in chunked: the body ends when the server closes (RFC 9112 6.3).
        BodyKind::UntilClose
    } else if let Some(n) = facts.content_length {
        BodyKind::Length(n)
    } else {
        BodyKind::UntilClose
    };
    let keep_alive = body != BodyKind::UntilClose
        && if version == 1 {
            !facts.conn_close
        } else {
            facts.conn_keep_alive && !facts.conn_close
        };
    if !(status == 101 && facts.conn_upgrade && facts.upgrade_header) {
        mark_upgrade_hop(head, &mut out);
    }
    let bytes = buf.split_to(n).freeze();
    Ok(Some(ResponseHead {
        buf: bytes,
        status,
        minor_version: version,
        reason,
        headers: out,
        body,
        keep_alive,
    }))
}

fn skip_leading_crlf(buf: &mut BytesMut) {
    let mut i = 0;
    while buf.len() >= i + 2 && buf[i] == b'\r' && buf[i + 1] == b'\n' {
        i += 2;
    }
    if i > 0 {
        buf.advance(i);
    }
}

fn raw_headers<'s, 'b>(
    stack: &'s mut [MaybeUninit<httparse::Header<'b>>; STACK_HEADERS],
    heap: &'s mut Vec<MaybeUninit<httparse::Header<'b>>>,
    max: usize,
) -> &'s mut [MaybeUninit<httparse::Header<'b>>] {
    if max <= STACK_HEADERS {
        &mut stack[..max]
    } else {
        heap.resize_with(max, MaybeUninit::uninit);
        &mut heap[..]
    }
}

fn incomplete<T>(have: usize, limits: &HeadLimits) -> Result<Option<T>, HeadError> {
    if have > limits.max_bytes {
        Err(HeadError::TooLarge)
    } else {
        Ok(None)
    }
}

fn map_httparse(e: httparse::Error) -> HeadError {
    use httparse::Error as E;
    HeadError::Invalid(match e {
        E::TooManyHeaders => return HeadError::TooManyHeaders,
        E::HeaderName => "invalid header name (or obs-fold, or space before colon)",
        E::HeaderValue => "invalid byte in header value",
        E::NewLine => "bare CR or invalid line end",
        E::Status => "invalid status",
        E::Token => "invalid method or target",
        E::Version => "unsupported HTTP version",
    })
}

/// One fused, branch-free pass over the whole head (it vectorizes). httparse accepts a bare
/// LF as a line end; it never lets CR or LF into a token, target, value or reason, and it
/// rejects obs-fold, so a head of `headers + 2` lines is all-CRLF exactly when it holds that
/// many CRs and LFs. The same pass refuses every CTL but HTAB, and DEL, wherever they are, so
/// the byte policy for values does not depend on httparse's (identical) value table.
fn check_head_bytes(head: &[u8], headers: usize) -> Result<(), HeadError> {
    let lines = headers + 2;
    // u8 lane counters over fixed 32-byte blocks are what LLVM turns into SIMD
    fn block(bytes: &[u8]) -> (u8, u8, u8) {
        let (mut cr, mut lf, mut bad) = (0u8, 0u8, 0u8);
        for &b in bytes {
            cr += (b == b'\r') as u8;
            lf += (b == b'\n') as u8;
            bad |=
                ((b < 0x20) & (b != b'\t') & (b != b'\r') & (b != b'\n')) as u8 | (b == 0x7f) as u8;
        }
        (cr, lf, bad)
    }
    let (mut cr, mut lf, mut bad) = (0usize, 0usize, 0u8);
    let blocks = head.chunks_exact(32);
    let tail = blocks.remainder();
    for chunk in blocks.chain(std::iter::once(tail)) {
        let (c, l, b) = block(chunk);
        cr += c as usize;
        lf += l as usize;
        bad |= b;
    }
    if bad != 0 {
        return Err(HeadError::Invalid("control byte in head"));
    }
    if lf != lines || cr != lines {
        return Err(HeadError::Invalid("bare LF or CR"));
    }
    Ok(())
}

fn span(start: usize, end: usize) -> Span {
    Span {
        start: start as u32,
        end: end as u32,
    }
}

/// Offset of `part` (a sub-slice of `head`) inside `head`.
fn span_of(head: &[u8], part: &[u8]) -> Span {
    let start = (part.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize);
    debug_assert!(start + part.len() <= head.len());
    span(start, start + part.len())
}

const fn tchar_map() -> [bool; 256] {
    let mut m = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        m[i] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        i += 1;
    }
    m
}
static TCHAR: [bool; 256] = tchar_map();

pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// Header value bytes: HTAB, SP, VCHAR and obs-text (0x80-0xFF, allowed as opaque bytes).
pub(crate) fn is_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

fn target_form(method: &[u8], t: &[u8]) -> Result<TargetForm, HeadError> {
    // httparse admits 0x21-0x7E and 0x80-0xFF here; 0x7F and CTLs fail check_head_bytes
    if !t.is_ascii() || t.contains(&b' ') {
        return Err(HeadError::Invalid("invalid byte in target"));
    }
    if t.contains(&b'#') {
        return Err(HeadError::Invalid("fragment in target"));
    }
    let connect = method == b"CONNECT";
    let form = if t == b"*" {
        if method != b"OPTIONS" {
            return Err(HeadError::Invalid("* target outside OPTIONS"));
        }
        TargetForm::Asterisk
    } else if t[0] == b'/' {
        TargetForm::Origin
    } else if connect {
        if !valid_authority(t, true) {
            return Err(HeadError::Invalid("invalid authority-form target"));
        }
        TargetForm::Authority
    } else {
        let (_, rest) = split_scheme(t).ok_or(HeadError::Invalid("invalid target"))?;
        let auth_end = rest
            .iter()
            .position(|&b| b == b'/' || b == b'?')
            .unwrap_or(rest.len());
        if !valid_authority(&rest[..auth_end], false) {
            return Err(HeadError::Invalid(
                "invalid authority in absolute-form target",
            ));
        }
        TargetForm::Absolute
    };
    if connect && form != TargetForm::Authority {
        return Err(HeadError::Invalid("CONNECT needs authority-form"));
    }
    Ok(form)
}

/// `http://rest` or `https://rest` (scheme case-insensitive) -> (default port, rest).
fn split_scheme(t: &[u8]) -> Option<(u16, &[u8])> {
    if t.len() >= 7 && t[..7].eq_ignore_ascii_case(b"http://") {
        Some((80, &t[7..]))
    } else if t.len() >= 8 && t[..8].eq_ignore_ascii_case(b"https://") {
        Some((443, &t[8..]))
    } else {
        None
    }
}

/// host [":" port] where host is a DNS-style name (ALPHA DIGIT - . _ ~), an IPv4 address, or
/// a bracketed IPv6 literal; port is 1 to 5 digits up to 65535. No userinfo, no pct-encoding.
fn valid_authority(v: &[u8], need_port: bool) -> bool {
    let Some((host, port)) = split_host_port(v) else {
        return false;
    };
    if host.is_empty() {
        return false;
    }
    let host_ok = if host[0] == b'[' {
        host.len() > 2
            && host[host.len() - 1] == b']'
            && host[1..host.len() - 1]
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    } else {
        host.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
    };
    host_ok
        && match port {
            None => !need_port,
            Some(p) => parse_port(p).is_some(),
        }
}

fn split_host_port(v: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    if v.first() == Some(&b'[') {
        let close = v.iter().position(|&b| b == b']')?;
        let (h, rest) = v.split_at(close + 1);
        match rest {
            [] => Some((h, None)),
            [b':', p @ ..] => Some((h, Some(p))),
            _ => None,
        }
    } else {
        match v.iter().position(|&b| b == b':') {
            Some(i) => Some((&v[..i], Some(&v[i + 1..]))),
            None => Some((v, None)),
        }
    }
}

fn parse_port(p: &[u8]) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = p.iter().fold(0u32, |n, &d| n * 10 + (d - b'0') as u32);
    u16::try_from(n).ok()
}

/// Whether an absolute-form target's authority names the same host and port as `host`
/// (case-insensitive; a missing port is the scheme's default).
fn same_authority(target: &[u8], host: &[u8]) -> bool {
    let Some((default_port, rest)) = split_scheme(target) else {
        return false;
    };
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let (Some((th, tp)), Some((hh, hp))) = (split_host_port(&rest[..end]), split_host_port(host))
    else {
        return false;
    };
    let port = |p: Option<&[u8]>| p.map_or(Some(default_port), parse_port);
    th.eq_ignore_ascii_case(hh) && port(tp) == port(hp)
}

/// What the header pass learned about framing and connection management.
#[derive(Default)]
struct Facts {
    content_length: Option<u64>,
    te_present: bool,
    /// Requests: TE is exactly `chunked`. Responses: TE's final coding is `chunked`.
    te_chunked: bool,
    /// Responses: `chunked` is among the codings.
    te_saw_chunked: bool,
    /// Responses: TE names at least one coding.
    te_codings: bool,
    host: Option<Span>,
    host_count: u32,
    conn_close: bool,
    conn_keep_alive: bool,
    conn_upgrade: bool,
    /// Connection names other headers, which must then be dropped too.
    conn_others: bool,
    upgrade_header: bool,
    expect_continue: bool,
}

/// The non-empty items of one list field value, OWS trimmed (RFC 9110 5.6.1).
pub fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(ows_trim)
        .filter(|t| !t.is_empty())
}

fn ows_trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// The one pass of checks over httparse's headers: spans, hop-by-hop marks, framing facts.
fn scan_headers(
    head: &[u8],
    raw: &[httparse::Header<'_>],
    out: &mut Vec<Header>,
    is_request: bool,
) -> Result<Facts, HeadError> {
    let mut f = Facts::default();
    for h in raw {
        let name_b = h.name.as_bytes();
        if name_b.is_empty() || !name_b.iter().all(|&b| is_tchar(b)) {
            return Err(HeadError::Invalid("invalid header name"));
        }
        let name = span_of(head, name_b);
        let value = span_of(head, h.value);
        // httparse trims OWS and bounds the name with ':' directly (no space before colon
        // for requests and default-config responses); value bytes were checked in
        // check_head_bytes.
        if head.get(name.end as usize) != Some(&b':') {
            return Err(HeadError::Invalid("whitespace before colon"));
        }
        let mut hop = false;
        let v = h.value;
        match name_b.len() {
            4 if name_b.eq_ignore_ascii_case(b"host") => {
                f.host_count += 1;
                if f.host.is_none() {
                    f.host = Some(value);
                }
            }
            2 if name_b.eq_ignore_ascii_case(b"te") => hop = true,
            6 if name_b.eq_ignore_ascii_case(b"expect") => {
                f.expect_continue |= v.eq_ignore_ascii_case(b"100-continue");
            }
            7 if name_b.eq_ignore_ascii_case(b"upgrade") => {
                // marked hop-by-hop afterwards unless the upgrade goes ahead
                f.upgrade_header = true;
            }
            10 if name_b.eq_ignore_ascii_case(b"connection") => {
                hop = true;
                connection_tokens(v, &mut f)?;
            }
            10 if name_b.eq_ignore_ascii_case(b"keep-alive") => hop = true,
            14 if name_b.eq_ignore_ascii_case(b"content-length") => {
                let n = parse_content_length(v)?;
                if f.content_length.is_some_and(|m| m != n) {
                    return Err(HeadError::Invalid("differing Content-Length values"));
                }
                f.content_length = Some(n);
            }
            16 if name_b.eq_ignore_ascii_case(b"proxy-connection") => hop = true,
            17 if name_b.eq_ignore_ascii_case(b"transfer-encoding") => {
                if is_request {
                    // only exactly one `chunked`; any other coding or a repeat is refused
                    if f.te_present || !ows_trim(v).eq_ignore_ascii_case(b"chunked") {
                        return Err(HeadError::Invalid("Transfer-Encoding other than chunked"));
                    }
                    f.te_chunked = true;
                } else {
                    transfer_codings(v, &mut f)?;
                }
                f.te_present = true;
            }
            13.. if lookalike_framing_name(name_b) => {
                return Err(HeadError::Invalid("header name resembles a framing header"));
            }
            _ => {}
        }
        out.push(Header {
            name,
            value,
            hop_by_hop: hop,
        });
    }
    if f.conn_others {
        mark_connection_listed(head, out);
    }
    Ok(f)
}

/// `Transfer_Encoding`, `Content---Length` and the like: not framing headers to us, but some
/// servers fold `_` into `-` or ignore punctuation, and would then frame differently. The
/// exact names never reach here (they match earlier arms).
fn lookalike_framing_name(name: &[u8]) -> bool {
    fn letters_eq(name: &[u8], target: &[u8]) -> bool {
        let mut it = name
            .iter()
            .filter(|&&b| b != b'-' && b != b'_')
            .map(u8::to_ascii_lowercase);
        target.iter().all(|&t| it.next() == Some(t)) && it.next().is_none()
    }
    name.len() <= 40
        && matches!(name[0], b't' | b'T' | b'c' | b'C')
        && (letters_eq(name, b"transferencoding") || letters_eq(name, b"contentlength"))
}

/// Response Transfer-Encoding: a list of token codings in which `chunked`
/// appears at most once (over all TE headers). Sets whether the last coding so
/// far is `chunked`; when it is not, the body runs until the server closes
/// (RFC 9112 section 6.3).
fn transfer_codings(v: &[u8], f: &mut Facts) -> Result<(), HeadError> {
    for item in list_items(v) {
        // parameters (`;q=..`) are not expected on transfer codings from a backend
        if !item.iter().all(|&b| is_tchar(b)) {
            return Err(HeadError::Invalid("invalid transfer coding"));
        }
        let chunked = item.eq_ignore_ascii_case(b"chunked");
        if chunked && f.te_saw_chunked {
            return Err(HeadError::Invalid("chunked applied twice"));
        }
        f.te_saw_chunked |= chunked;
        f.te_chunked = chunked;
        f.te_codings = true;
    }
    Ok(())
}

/// Content-Length: exactly `1*DIGIT` (OWS trimmed by httparse). A comma list, even of
/// identical values ("5, 5"), is refused: http-desync-guardian rates `1000,1000` Severe, and
/// identical repeated headers (accepted by the caller) cover the legitimate duplicate case.
fn parse_content_length(v: &[u8]) -> Result<u64, HeadError> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::Invalid("malformed Content-Length"));
    }
    let mut n: u64 = 0;
    for &d in v {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add((d - b'0') as u64))
            .ok_or(HeadError::Invalid("Content-Length overflow"))?;
    }
    Ok(n)
}

fn connection_tokens(v: &[u8], f: &mut Facts) -> Result<(), HeadError> {
    for t in list_items(v) {
        if !t.iter().all(|&b| is_tchar(b)) {
            return Err(HeadError::Invalid("invalid Connection token"));
        }
        if t.eq_ignore_ascii_case(b"close") {
            f.conn_close = true;
        } else if t.eq_ignore_ascii_case(b"keep-alive") {
            f.conn_keep_alive = true;
        } else if t.eq_ignore_ascii_case(b"upgrade") {
            f.conn_upgrade = true;
        } else if t.eq_ignore_ascii_case(b"content-length")
            || t.eq_ignore_ascii_case(b"transfer-encoding")
            || t.eq_ignore_ascii_case(b"host")
        {
            // dropping these hop-by-hop would change framing or routing downstream
            return Err(HeadError::Invalid("Connection names a framing header"));
        } else {
            f.conn_others = true;
        }
    }
    Ok(())
}

/// Marks every header named by a Connection token. Rare, so quadratic is fine.
fn mark_connection_listed(head: &[u8], out: &mut [Header]) {
    for i in 0..out.len() {
        let c = out[i];
        if !head[c.name.range()].eq_ignore_ascii_case(b"connection") {
            continue;
        }
        for t in list_items(&head[c.value.range()]) {
            for h in out.iter_mut() {
                if head[h.name.range()].eq_ignore_ascii_case(t) {
                    h.hop_by_hop = true;
                }
            }
        }
    }
}

fn mark_upgrade_hop(head: &[u8], out: &mut [Header]) {
    for h in out.iter_mut() {
        if h.name.len() == 7 && head[h.name.range()].eq_ignore_ascii_case(b"upgrade") {
            h.hop_by_hop = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        let mut b = BytesMut::from(s);
        parse_request(&mut b, &HeadLimits::default())
    }
    fn ok(s: &str) -> RequestHead {
        match req(s.as_bytes()) {
            Ok(Some(h)) => h,
            other => panic!("{s:?}: {other:?}"),
        }
    }
    fn bad(s: &[u8]) -> &'static str {
        match req(s) {
            Err(HeadError::Invalid(r)) => r,
            other => panic!(
                "{:?} should be invalid: {other:?}",
                String::from_utf8_lossy(s)
            ),
        }
    }
    fn res(s: &[u8], head: bool) -> Result<Option<ResponseHead>, HeadError> {
        let mut b = BytesMut::from(s);
        parse_response(&mut b, &HeadLimits::default(), head)
    }

    #[test]
    fn simple_get_with_spans_and_rest() {
        let mut b = BytesMut::from(
            &b"\r\n\r\nGET /a/b?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nX-Y:  z \r\n\r\nNEXT"[..],
        );
        let h = parse_request(&mut b, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(&b[..], b"NEXT");
        assert!(h.buf.starts_with(b"GET "));
        assert!(h.buf.ends_with(b"\r\n\r\n"));
        assert_eq!(h.method(), b"GET");
        assert_eq!(h.target(), b"/a/b?x=1");
        assert_eq!(h.path(), b"/a/b");
        assert_eq!(h.minor_version, 1);
        assert_eq!(h.header("x-y"), Some(&b"z"[..]));
        assert_eq!(h.slice(h.host.unwrap()), b"example.com:8080");
        assert_eq!(h.body, BodyKind::None);
        assert!(h.keep_alive && !h.upgrade && !h.expect_continue && h.is_idempotent());
        assert_eq!(h.form, TargetForm::Origin);
    }

    #[test]
    fn incomplete_then_too_large() {
        assert!(req(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
        assert!(req(b"GE").unwrap().is_none());
        let limits = HeadLimits {
            max_bytes: 64,
            max_headers: 100,
        };
        let mut b = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nX: "[..]);
        b.extend_from_slice(&[b'a'; 80]);
        assert_eq!(
            parse_request(&mut b, &limits).unwrap_err(),
            HeadError::TooLarge
        );
        assert_eq!(HeadError::TooLarge.status(), 431);
        // a complete head over the limit is too large as well
        let mut b = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nX: "[..]);
        b.extend_from_slice(&[b'a'; 80]);
        b.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            parse_request(&mut b, &limits).unwrap_err(),
            HeadError::TooLarge
        );
    }

    #[test]
    fn too_many_headers() {
        let limits = HeadLimits {
            max_bytes: 16384,
            max_headers: 3,
        };
        let mut b =
            BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"[..]);
        let e = parse_request(&mut b, &limits).unwrap_err();
        assert_eq!(e, HeadError::TooManyHeaders);
        assert_eq!(e.status(), 431);
        // more than the stack array holds goes through the heap path
        let limits = HeadLimits {
            max_bytes: 1 << 20,
            max_headers: 300,
        };
        let mut s = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..200 {
            s.push_str(&format!("X-{i}: {i}\r\n"));
        }
        s.push_str("\r\n");
        let mut b = BytesMut::from(s.as_bytes());
        let h = parse_request(&mut b, &limits).unwrap().unwrap();
        assert_eq!(h.headers.len(), 201);
        assert_eq!(h.header("x-199"), Some(&b"199"[..]));
    }

    #[test]
    fn content_length_rules() {
        let h = ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(42));
        let h = ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(0));
        // identical duplicates are one value
        let h = ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(7));
        for v in [
            "5, 5",
            "5,5",
            "5, 6",
            "+5",
            "-5",
            "5 5",
            "0x10",
            "",
            "5,",
            ",5",
            "1.0",
            "5a",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            bad(format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {v}\r\n\r\n").as_bytes());
        }
        bad(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n");
        let h = ok("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(u64::MAX));
    }

    #[test]
    fn transfer_encoding_rules() {
        let h = ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(h.body, BodyKind::Chunked);
        let h = ok("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ChUnKeD\r\n\r\n");
        assert_eq!(h.body, BodyKind::Chunked);
        // not hop-by-hop: the proxy re-frames chunked and keeps the header
        assert!(!h.headers.iter().any(|x| x.hop_by_hop));
        for v in [
            "gzip, chunked",
            "chunked, gzip",
            "chunked, chunked",
            "identity",
            "xchunked",
            "chunked;q=1",
            "",
            "\"chunked\"",
        ] {
            bad(format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {v}\r\n\r\n").as_bytes());
        }
        bad(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "Content-Length with Transfer-Encoding"
        );
        assert_eq!(
            bad(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            "Transfer-Encoding in HTTP/1.0"
        );
    }

    #[test]
    fn header_syntax_rules() {
        // obs-fold
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n\t2\r\n\r\n");
        // names that some servers would read as framing headers
        for n in [
            "Transfer_Encoding",
            "Transfer---Encoding",
            "content_length",
            "Content--Length",
        ] {
            bad(format!("POST / HTTP/1.1\r\nHost: a\r\n{n}: chunked\r\n\r\n").as_bytes());
        }
        ok("GET / HTTP/1.1\r\nHost: a\r\nContent-Type: x\r\nContent-Lengthy: 1\r\nTE-x: 1\r\n\r\n");
        // whitespace between name and colon
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX : 1\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nX\t: 1\r\n\r\n");
        // whitespace before the first header
        bad(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n");
        // bad bytes in names
        for n in ["X Y", "X\x01", "X(Y)", "\x7fX", "X/Y", ""] {
            bad(format!("GET / HTTP/1.1\r\nHost: a\r\n{n}: 1\r\n\r\n").as_bytes());
        }
        // bad bytes in values: NUL, CTLs, DEL, bare CR, bare LF
        for v in [&b"a\x00b"[..], b"a\x01", b"a\x7f", b"a\rb", b"\x1b[0m"] {
            let mut s = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
            s.extend_from_slice(v);
            s.extend_from_slice(b"\r\n\r\n");
            bad(&s);
        }
        bad(b"GET / HTTP/1.1\nHost: a\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\n\n");
        bad(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\rX: 1\r\n\r\n");
        // HTAB and obs-text in values are fine
        let h = ok("GET / HTTP/1.1\r\nHost: a\r\nX: a\tb \u{e9}\r\nEmpty:\r\n\r\n");
        assert_eq!(h.header("x"), Some("a\tb \u{e9}".as_bytes()));
        assert_eq!(h.header("empty"), Some(&b""[..]));
    }

    #[test]
    fn request_line_rules() {
        for l in [
            "GET  / HTTP/1.1",
            "GET /  HTTP/1.1",
            "GET\t/ HTTP/1.1",
            "GET / HTTP/1.1 ",
            " GET / HTTP/1.1",
            "GET / HTTP/2.0",
            "GET / HTTP/0.9",
            "GET / HTTP/1.2",
            "GET / http/1.1",
            "GET /",
            "G(T / HTTP/1.1",
            "GET / HTTP/1.1\r\nHost: a\r\nX: \u{e9}\u{e9}\r\n\r\nGET /\u{e9} HTTP/1.1",
            "GET /\u{e9} HTTP/1.1",
            "GET /a#frag HTTP/1.1",
            "GET a/b HTTP/1.1",
            "GET * HTTP/1.1",
            "OPTIONS *x HTTP/1.1",
            "CONNECT / HTTP/1.1",
            "CONNECT example.com HTTP/1.1",
            "CONNECT http://example.com:443/ HTTP/1.1",
            "GET example.com:80 HTTP/1.1",
            "GET ftp://a/ HTTP/1.1",
            "GET http://user@a/ HTTP/1.1",
            "GET http:/a HTTP/1.1",
        ] {
            let s = format!("{l}\r\nHost: a\r\n\r\n");
            if l.contains("\r\n\r\n") {
                // only the second request is bad; the first parses
                let mut b = BytesMut::from(s.as_bytes());
                assert!(parse_request(&mut b, &HeadLimits::default())
                    .unwrap()
                    .is_some());
                assert!(parse_request(&mut b, &HeadLimits::default()).is_err());
                continue;
            }
            assert!(
                matches!(req(s.as_bytes()), Err(HeadError::Invalid(_))),
                "{l:?} should be invalid"
            );
        }
        let h = ok("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!((h.form, h.path()), (TargetForm::Asterisk, &b"*"[..]));
        let h = ok("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n");
        assert_eq!(h.form, TargetForm::Authority);
        assert!(h.is_connect() && !h.is_idempotent());
        let h = ok("POST /x HTTP/1.0\r\n\r\n");
        assert_eq!(h.minor_version, 0);
        assert!(!h.keep_alive && !h.is_idempotent());
        // custom method tokens are fine
        ok("PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n");
    }

    #[test]
    fn absolute_form_and_host() {
        let h = ok("GET http://Example.COM/p/q?x HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(h.form, TargetForm::Absolute);
        assert_eq!(h.path(), b"/p/q");
        let h = ok("GET http://example.com:80?x HTTP/1.1\r\nHost: example.com\r\n\r\n");
        assert_eq!(h.path(), b"/");
        ok("GET https://example.com/ HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
        bad(b"GET http://example.com/ HTTP/1.1\r\nHost: other.com\r\n\r\n");
        bad(b"GET http://example.com:8080/ HTTP/1.1\r\nHost: example.com\r\n\r\n");
        bad(b"GET http://example.com/ HTTP/1.1\r\n\r\n");
        // Host presence and count
        bad(b"GET / HTTP/1.1\r\n\r\n");
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n");
        bad(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n");
        ok("GET / HTTP/1.0\r\n\r\n");
        // Host syntax
        for v in [
            "",
            "a b",
            "a,b",
            "a/b",
            "a@b",
            "a:",
            "a:99999",
            "a:8x",
            "[::1",
            "[zz]",
            "a:1:2",
            "\u{e9}.com",
        ] {
            bad(format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n").as_bytes());
        }
        for v in [
            "a",
            "a.b-c_d",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:443",
            "xn--bcher-kva.example",
        ] {
            ok(&format!("GET / HTTP/1.1\r\nHost: {v}\r\n\r\n"));
        }
    }

    #[test]
    fn connection_and_hop_by_hop() {
        let h = ok("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        assert!(!h.keep_alive);
        let h = ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nKeep-Alive: timeout=5\r\n\r\n");
        assert!(h.keep_alive);
        let h = ok(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Foo, keep-alive\r\nX-Foo: 1\r\nX-Bar: 2\r\n\
             TE: trailers\r\nProxy-Connection: x\r\nTrailer: X-T\r\nUpgrade: h2c\r\n\r\n",
        );
        let hop: Vec<&[u8]> = h
            .headers
            .iter()
            .filter(|x| x.hop_by_hop)
            .map(|x| h.slice(x.name))
            .collect();
        assert_eq!(
            hop,
            [
                &b"Connection"[..],
                b"X-Foo",
                b"TE",
                b"Proxy-Connection",
                b"Upgrade"
            ]
        );
        assert!(!h.upgrade);
        // an actual upgrade keeps Upgrade forwardable
        let h =
            ok("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(h.upgrade);
        let up = h
            .headers
            .iter()
            .find(|x| h.slice(x.name) == b"Upgrade")
            .unwrap();
        assert!(!up.hop_by_hop);
        let h = ok("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n");
        assert!(!h.upgrade);
        // Upgrade and Connection each split over two lines are still an upgrade,
        // and every line of the list is there to read.
        let h = ok(
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nUpgrade: h2c\r\n\
             Connection: upgrade\r\nUPGRADE: websocket\r\n\r\n",
        );
        assert!(h.upgrade);
        let all: Vec<&[u8]> = h.header_values("upgrade").collect();
        assert_eq!(all, [&b"h2c"[..], b"websocket"]);
        assert_eq!(h.header("upgrade"), Some(&b"h2c"[..]));
        bad(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 1\r\n\r\n",
        );
        bad(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n");
        let h =
            ok("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n");
        assert!(h.expect_continue);
        let h = ok("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(!h.expect_continue);
    }

    #[test]
    fn byte_by_byte_is_incomplete_until_the_end() {
        let full: &[u8] =
            b"\r\nPOST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let head_end = full.len() - 5;
        let mut b = BytesMut::new();
        for (i, &byte) in full.iter().enumerate() {
            b.extend_from_slice(&[byte]);
            let r = parse_request(&mut b, &HeadLimits::default()).unwrap();
            if i + 1 < head_end {
                assert!(r.is_none(), "complete too early at {i}");
            } else {
                let h = r.unwrap();
                assert_eq!(h.body, BodyKind::Chunked);
                assert!(h.buf.starts_with(b"POST"));
                break;
            }
        }
        assert!(b.is_empty());
    }

    #[test]
    fn header_reuse() {
        let mut v = Vec::with_capacity(100);
        v.push(Header {
            name: Span::default(),
            value: Span::default(),
            hop_by_hop: true,
        });
        let mut b = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..]);
        let h = parse_request_with(&mut b, &HeadLimits::default(), v)
            .unwrap()
            .unwrap();
        assert_eq!(h.headers.len(), 1);
        assert!(h.headers.capacity() >= 100);
    }

    #[test]
    fn responses() {
        let r = res(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false)
            .unwrap()
            .unwrap();
        assert_eq!(
            (r.status, r.body, r.keep_alive),
            (200, BodyKind::Length(5), true)
        );
        assert_eq!(r.slice(r.reason), b"OK");
        let r = res(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(r.body, BodyKind::None);
        for s in [100u16, 101, 204, 304] {
            let r = res(
                format!("HTTP/1.1 {s} X\r\nContent-Length: 5\r\n\r\n").as_bytes(),
                false,
            )
            .unwrap()
            .unwrap();
            assert_eq!(r.body, BodyKind::None, "{s}");
        }
        let r = res(b"HTTP/1.1 200 OK\r\n\r\n", false).unwrap().unwrap();
        assert_eq!((r.body, r.keep_alive), (BodyKind::UntilClose, false));
        let r = res(
            b"HTTP/1.1 200\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.body, BodyKind::Chunked);
        assert!(r.reason.is_empty());
        // A final coding other than chunked: read until close (RFC 9112 6.3).
        for te in [
            "chunked, gzip",
            "gzip",
            "chunked\r\nTransfer-Encoding: gzip",
        ] {
            let r = res(
                format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n").as_bytes(),
                false,
            )
            .unwrap()
            .unwrap();
            assert_eq!(
                (r.body, r.keep_alive),
                (BodyKind::UntilClose, false),
                "{te}"
            );
        }
        let r = res(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false)
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
        let r = res(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(r.keep_alive);
        let mut b = BytesMut::from(&b"HTTP/1.1 200 OK\r\n\r\n"[..]);
        let r = parse_response_for(&mut b, &HeadLimits::default(), b"CONNECT")
            .unwrap()
            .unwrap();
        assert_eq!(r.body, BodyKind::None);
        let r = res(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert!(!r.headers[1].hop_by_hop && r.headers[0].hop_by_hop);
        assert!(res(b"HTTP/1.1 200 OK\r\nContent-Le", false)
            .unwrap()
            .is_none());
        // invalid framing
        for s in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: 1\r\n 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX : 1\r\n\r\n",
            b"HTTP/1.1 099 OK\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 200 O\x01K\r\n\r\n",
        ] {
            assert!(
                matches!(res(s, false), Err(HeadError::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
    }
}
