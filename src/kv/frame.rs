//! RESP2 framing: parse requests (multibulk arrays and inline lines) within limits; encode replies.

use std::ops::Range;

/// Why a request could not be framed; the client gets `-ERR Protocol error: ...` and is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("invalid multibulk length")]
    MultibulkLength,
    #[error("invalid bulk length")]
    BulkLength,
    #[error("expected '$', got '{}'", Shown(*.0))]
    ExpectedDollar(u8),
    #[error("too big inline request")]
    InlineTooBig,
    #[error("too big mbulk count string")]
    MbulkCountTooBig,
    #[error("too big bulk count string")]
    BulkCountTooBig,
    #[error("expected CRLF after bulk data")]
    BulkTerminator,
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
}

/// A byte shown in an error line without ever breaking the reply framing.
struct Shown(u8);

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_ascii_graphic() || self.0 == b' ' {
            write!(f, "{}", self.0 as char)
        } else {
            write!(f, "\\x{:02x}", self.0)
        }
    }
}

/// Request limits (from the `kv` conf); `authed == false` applies Redis's tighter
/// pre-AUTH limits so an unauthenticated peer cannot make us buffer much.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bulk: usize,
    pub max_array: usize,
    pub max_inline: usize,
    pub authed: bool,
}

/// Before AUTH, Redis accepts at most this many arguments ...
const UNAUTHED_MAX_ARRAY: usize = 10;
/// ... of at most this many bytes each.
const UNAUTHED_MAX_BULK: usize = 16384;

/// One framed request: argument ranges into the parsed buffer.
#[derive(Debug, Default)]
pub struct Args {
    pub ranges: Vec<Range<usize>>,
}

impl Args {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// A request's arguments as slices of the buffer they were parsed from.
#[derive(Clone, Copy)]
pub struct Argv<'a> {
    pub buf: &'a [u8],
    pub ranges: &'a [Range<usize>],
}

impl<'a> Argv<'a> {
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i`; callers check the arity first, out of range yields an empty slice.
    pub fn get(&self, i: usize) -> &'a [u8] {
        match self.ranges.get(i) {
            Some(r) => self.buf.get(r.clone()).unwrap_or(&[]),
            None => &[],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        (0..self.len()).map(move |i| self.get(i))
    }
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = buf[from..].iter().position(|&b| b == b'\r') {
        let at = from + i;
        if buf.get(at + 1) == Some(&b'\n') {
            return Some(at);
        }
        if at + 1 >= buf.len() {
            return None;
        }
        from = at + 1;
    }
    None
}

/// Parses Redis's strict decimal integers (`string2ll`): optional `-`, no `+`,
/// no leading zeros or spaces, fits an i64.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] if !neg => return Some(0),
        [b'0', ..] => return None,
        _ if digits.len() > 19 => return None,
        _ => {}
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        let d = (c - b'0') as i64;
        v = if neg {
            v.checked_mul(10)?.checked_sub(d)?
        } else {
            v.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(v)
}

/// Parses one request at the start of `buf` into `args`.
/// `Ok(None)`: incomplete, read more. `Ok(Some(n))`: `n` bytes consumed
/// (an empty `args` means an empty request that gets no reply).
pub fn parse(buf: &[u8], lim: &Limits, args: &mut Args) -> Result<Option<usize>, FrameError> {
    args.ranges.clear();
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, lim, args),
        Some(_) => parse_inline(buf, lim, args),
    }
}

fn parse_multibulk(buf: &[u8], lim: &Limits, args: &mut Args) -> Result<Option<usize>, FrameError> {
    let Some(eol) = find_crlf(buf) else {
        if buf.len() > lim.max_inline {
            return Err(FrameError::MbulkCountTooBig);
        }
        return Ok(None);
    };
    if eol > lim.max_inline {
        return Err(FrameError::MbulkCountTooBig);
    }
    let n = parse_i64(&buf[1..eol]).ok_or(FrameError::MultibulkLength)?;
    let max_array = if lim.authed {
        lim.max_array
    } else {
        lim.max_array.min(UNAUTHED_MAX_ARRAY)
    };
    if n > max_array as i64 {
        return Err(FrameError::MultibulkLength);
    }
    let mut pos = eol + 2;
    if n <= 0 {
        return Ok(Some(pos));
    }
    let max_bulk = if lim.authed {
        lim.max_bulk
    } else {
        lim.max_bulk.min(UNAUTHED_MAX_BULK)
    };
    for _ in 0..n {
        let rest = &buf[pos..];
        match rest.first() {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&c) => return Err(FrameError::ExpectedDollar(c)),
        }
        let Some(eol) = find_crlf(rest) else {
            if rest.len() > lim.max_inline {
                return Err(FrameError::BulkCountTooBig);
            }
            return Ok(None);
        };
        if eol > lim.max_inline {
            return Err(FrameError::BulkCountTooBig);
        }
        let len = parse_i64(&rest[1..eol]).ok_or(FrameError::BulkLength)?;
        if len < 0 || len as u64 > max_bulk as u64 {
            return Err(FrameError::BulkLength);
        }
        let len = len as usize;
        let start = pos + eol + 2;
        let end = start + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(FrameError::BulkTerminator);
        }
        args.ranges.push(start..end);
        pos = end + 2;
    }
    Ok(Some(pos))
}

/// Inline commands: one line split on blanks, with Redis's double and single quotes.
/// Quoted arguments must not contain escapes (they would need a copy); a backslash
/// inside quotes is kept literally.
fn parse_inline(buf: &[u8], lim: &Limits, args: &mut Args) -> Result<Option<usize>, FrameError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > lim.max_inline {
            return Err(FrameError::InlineTooBig);
        }
        return Ok(None);
    };
    if nl > lim.max_inline {
        return Err(FrameError::InlineTooBig);
    }
    let mut end = nl;
    if end > 0 && buf[end - 1] == b'\r' {
        end -= 1;
    }
    let mut i = 0;
    while i < end {
        let c = buf[i];
        if c == b' ' || c == b'\t' {
            i += 1;
            continue;
        }
        if c == b'"' || c == b'\'' {
            let start = i + 1;
            let close = buf[start..end]
                .iter()
                .position(|&b| b == c)
                .ok_or(FrameError::UnbalancedQuotes)?;
            let stop = start + close;
            // Redis requires a blank (or the end) after the closing quote.
            if stop + 1 < end && !matches!(buf[stop + 1], b' ' | b'\t') {
                return Err(FrameError::UnbalancedQuotes);
            }
            args.ranges.push(start..stop);
            i = stop + 1;
        } else {
            let start = i;
            while i < end && !matches!(buf[i], b' ' | b'\t') {
                i += 1;
            }
            args.ranges.push(start..i);
        }
        if args.ranges.len() > lim.max_array {
            return Err(FrameError::MultibulkLength);
        }
    }
    Ok(Some(nl + 1))
}

/// Writes the decimal form of `v` into `buf`, returning the used tail.
pub fn fmt_i64(v: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut n = v.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// Reply encoders: append one RESP2 value to `out`, or its RESP3 form while
/// a HELLO 3 connection's batch runs (`Resp3Guard`): nulls, maps, sets, doubles.
pub mod reply {
    use super::fmt_i64;
    use std::cell::Cell;

    thread_local! {
        static RESP3: Cell<bool> = const { Cell::new(false) };
    }

    /// Sets the protocol of the replies built on this thread until dropped.
    /// Batches run synchronously on one thread, so the flag never leaks
    /// between connections.
    pub struct Resp3Guard(bool);

    impl Resp3Guard {
        pub fn new(on: bool) -> Resp3Guard {
            Resp3Guard(RESP3.with(|c| c.replace(on)))
        }
    }

    impl Drop for Resp3Guard {
        fn drop(&mut self) {
            RESP3.with(|c| c.set(self.0));
        }
    }

    /// HELLO switching protocol mid-batch (the batch's guard restores the old value).
    pub fn set_resp3(on: bool) {
        RESP3.with(|c| c.set(on));
    }

    pub fn resp3() -> bool {
        RESP3.with(|c| c.get())
    }

    /// The null array (EXEC aborted, LPOP with a count on no key).
    pub fn nil_array(out: &mut Vec<u8>) {
        out.extend_from_slice(if resp3() { b"_\r\n" } else { b"*-1\r\n" });
    }

    /// A map of `n` pairs (a flat array of 2n in RESP2).
    pub fn map(out: &mut Vec<u8>, n: usize) {
        if resp3() {
            let mut b = [0u8; 20];
            out.push(b'%');
            out.extend_from_slice(fmt_i64(n as i64, &mut b));
            out.extend_from_slice(b"\r\n");
        } else {
            array(out, n * 2);
        }
    }

    /// A set of `n` members (an array in RESP2).
    pub fn set(out: &mut Vec<u8>, n: usize) {
        if resp3() {
            let mut b = [0u8; 20];
            out.push(b'~');
            out.extend_from_slice(fmt_i64(n as i64, &mut b));
            out.extend_from_slice(b"\r\n");
        } else {
            array(out, n);
        }
    }

    /// A score, already formatted as Redis's `%.17g` (a bulk string in RESP2).
    pub fn double(out: &mut Vec<u8>, repr: &str) {
        if resp3() {
            out.push(b',');
            out.extend_from_slice(repr.as_bytes());
            out.extend_from_slice(b"\r\n");
        } else {
            bulk(out, repr.as_bytes());
        }
    }

    pub fn ok(out: &mut Vec<u8>) {
        out.extend_from_slice(b"+OK\r\n");
    }

    pub fn simple(out: &mut Vec<u8>, s: &str) {
        out.push(b'+');
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// `msg` carries its own prefix (`ERR ...`, `WRONGPASS ...`); CR/LF are blanked
    /// so a message quoting client bytes cannot break the framing.
    pub fn err(out: &mut Vec<u8>, msg: &str) {
        out.push(b'-');
        out.extend(
            msg.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.extend_from_slice(b"\r\n");
    }

    pub fn int(out: &mut Vec<u8>, v: i64) {
        let mut b = [0u8; 20];
        out.push(b':');
        out.extend_from_slice(fmt_i64(v, &mut b));
        out.extend_from_slice(b"\r\n");
    }

    pub fn bulk(out: &mut Vec<u8>, v: &[u8]) {
        let mut b = [0u8; 20];
        out.push(b'$');
        out.extend_from_slice(fmt_i64(v.len() as i64, &mut b));
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }

    pub fn nil(out: &mut Vec<u8>) {
        out.extend_from_slice(if resp3() { b"_\r\n" } else { b"$-1\r\n" });
    }

    pub fn array(out: &mut Vec<u8>, n: usize) {
        let mut b = [0u8; 20];
        out.push(b'*');
        out.extend_from_slice(fmt_i64(n as i64, &mut b));
        out.extend_from_slice(b"\r\n");
    }

    /// A request as a RESP array of bulk strings (the replication stream format).
    pub fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
        array(out, args.len());
        for a in args {
            bulk(out, a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: Limits = Limits {
        max_bulk: 100,
        max_array: 8,
        max_inline: 64,
        authed: true,
    };

    fn words(buf: &[u8]) -> Result<Option<(usize, Vec<String>)>, FrameError> {
        let mut a = Args::default();
        Ok(parse(buf, &LIM, &mut a)?.map(|n| {
            let v = Argv {
                buf,
                ranges: &a.ranges,
            };
            (
                n,
                v.iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            )
        }))
    }

    #[test]
    fn multibulk_and_partial() {
        let req = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n";
        assert_eq!(
            words(req).unwrap(),
            Some((20, vec!["GET".into(), "k".into()]))
        );
        for cut in 0..20 {
            assert_eq!(words(&req[..cut]).unwrap(), None, "cut {cut}");
        }
    }

    #[test]
    fn inline_with_quotes() {
        assert_eq!(
            words(b"SET  k \"a b\" 'c'\r\n").unwrap(),
            Some((18, vec!["SET".into(), "k".into(), "a b".into(), "c".into()]))
        );
        assert_eq!(words(b"\r\n").unwrap(), Some((2, vec![])));
        assert_eq!(words(b"SET \"a\r\n"), Err(FrameError::UnbalancedQuotes));
        assert_eq!(words(b"PING"), Ok(None));
    }

    #[test]
    fn limits() {
        assert_eq!(words(b"*9\r\n"), Err(FrameError::MultibulkLength));
        assert_eq!(words(b"*x\r\n"), Err(FrameError::MultibulkLength));
        assert_eq!(words(b"*1\r\n$101\r\n"), Err(FrameError::BulkLength));
        assert_eq!(words(b"*1\r\n$-1\r\n"), Err(FrameError::BulkLength));
        assert_eq!(
            words(b"*1\r\n+x\r\n"),
            Err(FrameError::ExpectedDollar(b'+'))
        );
        assert_eq!(
            words(b"*1\r\n$1\r\nab\r\n"),
            Err(FrameError::BulkTerminator)
        );
        assert_eq!(words(&[b'a'; 65]), Err(FrameError::InlineTooBig));
        assert_eq!(words(&[b'*'; 65]), Err(FrameError::MbulkCountTooBig));
        assert_eq!(words(b"*0\r\n").unwrap(), Some((4, vec![])));
        assert_eq!(words(b"*-1\r\n").unwrap(), Some((5, vec![])));
        let unauthed = Limits {
            authed: false,
            ..LIM
        };
        let mut a = Args::default();
        assert_eq!(
            parse(
                b"*1\r\n$20000\r\n",
                &Limits {
                    max_bulk: 1 << 20,
                    ..unauthed
                },
                &mut a
            ),
            Err(FrameError::BulkLength)
        );
    }

    #[test]
    fn expected_dollar_never_breaks_framing() {
        let e = FrameError::ExpectedDollar(b'\r').to_string();
        assert_eq!(e, "expected '$', got '\\x0d'");
    }

    #[test]
    fn strict_integers() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b"9223372036854775808"[..],
            b"01",
            b"-0",
            b"+1",
            b" 1",
            b"",
            b"-",
            b"1a",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn integers_format() {
        let mut b = [0u8; 20];
        assert_eq!(fmt_i64(i64::MIN, &mut b), b"-9223372036854775808");
        assert_eq!(fmt_i64(0, &mut b), b"0");
        assert_eq!(fmt_i64(42, &mut b), b"42");
    }
}
