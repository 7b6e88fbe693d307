//! Conf text -> sections of directives, each token tagged with its line; no meaning yet.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// An error or warning tied to a place in a conf file: prints as `FILE:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfError {
    pub file: String,
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, shorten(&self.msg))
    }
}

/// Longest word of an error message shown whole; longer ones (a 10 MB token
/// quoted back) are cut to their start and their length.
const WORD_MAX: usize = 80;
/// What is kept of a word cut.
const WORD_KEPT: usize = 40;

/// `msg` with each word longer than `WORD_MAX` bytes cut to its first
/// `WORD_KEPT` characters, `...`, and its length (and its closing quote).
fn shorten(msg: &str) -> std::borrow::Cow<'_, str> {
    if !msg.split(' ').any(|w| w.len() > WORD_MAX) {
        return msg.into();
    }
    let words: Vec<String> = msg
        .split(' ')
        .map(|w| {
            if w.len() <= WORD_MAX {
                return w.to_string();
            }
            let mut end = WORD_KEPT;
            while !w.is_char_boundary(end) {
                end -= 1;
            }
            let close = match w.chars().last() {
                Some(c @ ('\'' | '"' | ')' | ',' | ':')) => c.to_string(),
                _ => String::new(),
            };
            // The length is the token's own, without the quotes around it.
            let open = usize::from(w.starts_with(['\'', '"', '(']));
            let len = w.len() - open - close.len();
            format!("{}...({len} bytes){close}", &w[..end])
        })
        .collect();
    words.join(" ").into()
}

/// A conf file's bytes as text. Bytes that are not UTF-8 are allowed in
/// comments (a Latin-1 name in a comment), and dropped with them; anywhere
/// else they are an error for their line. Lines keep their numbers.
pub fn decode(bytes: &[u8]) -> (String, Vec<(usize, String)>) {
    let mut text = String::with_capacity(bytes.len());
    let mut errors = Vec::new();
    for (idx, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if idx > 0 {
            text.push('\n');
        }
        match std::str::from_utf8(line) {
            Ok(l) => text.push_str(l),
            Err(e) => {
                let good = e.valid_up_to();
                let prefix = std::str::from_utf8(&line[..good]).unwrap_or_default();
                match comment_start(prefix) {
                    Some(at) => text.push_str(&prefix[..at]),
                    None => errors.push((
                        idx + 1,
                        format!(
                            "byte 0x{:02x} at column {} is not UTF-8 (other encodings are allowed in comments only)",
                            line[good],
                            prefix.chars().count() + 1
                        ),
                    )),
                }
            }
        }
    }
    (text, errors)
}

/// Where a comment begins in `line` (a `#` at a word start, outside quotes,
/// not escaped), by the rules of `split`.
fn comment_start(line: &str) -> Option<usize> {
    let mut in_word = false;
    let mut in_quote = false;
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
                in_word = true;
            }
            '"' => {
                in_quote = !in_quote;
                in_word = true;
            }
            _ if in_quote => {}
            '#' if !in_word => return Some(i),
            c if c.is_whitespace() => in_word = false,
            _ => in_word = true,
        }
    }
    None
}

/// Every error found in one conf file, in line order; prints one `FILE:LINE: message`
/// per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfErrors(pub Vec<ConfError>);

impl fmt::Display for ConfErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl From<ConfError> for ConfErrors {
    fn from(e: ConfError) -> Self {
        ConfErrors(vec![e])
    }
}

/// One directive line: `args[0]` is the keyword.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub line: usize,
    pub args: Vec<String>,
}

impl Directive {
    pub fn keyword(&self) -> &str {
        &self.args[0]
    }

    /// The single argument of a one-argument keyword, or `'kw': ...` saying what is wrong.
    pub fn one_arg(&self) -> Result<&str, String> {
        let kw = self.keyword();
        match self.args.len() {
            1 => Err(format!("'{kw}': missing argument")),
            2 => Ok(&self.args[1]),
            _ => Err(format!(
                "'{kw}': unexpected extra argument '{}'",
                self.args[2]
            )),
        }
    }
}

/// A section header (`frontend www`) and the indented directives under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub line: usize,
    pub kind: String,
    pub args: Vec<String>,
    pub directives: Vec<Directive>,
    /// The header line failed to lex: `kind` and `args` are a best guess, and the
    /// section only holds its lines so they are not taken for the previous section's.
    pub lexed_badly: bool,
}

/// Splits text into sections. A line that cannot be split is reported (line
/// number and message; the caller adds the file name), so that every such line
/// is found in one pass, and left out; a header line still starts a section
/// (`lexed_badly`) that takes the lines under it.
pub fn sections(text: &str) -> (Vec<Section>, Vec<(usize, String)>) {
    let mut out: Vec<Section> = Vec::new();
    let mut errors = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let line = idx + 1;
        let indented = raw.starts_with([' ', '\t']);
        let (args, err) = split(raw);
        let lexed_badly = err.is_some();
        if let Some(m) = err {
            errors.push((line, m.to_string()));
            if indented {
                continue;
            }
        }
        if !indented && (lexed_badly || !args.is_empty()) {
            // A bad header still starts a section, so that its lines are not
            // taken for the previous section's.
            let mut words = args.into_iter();
            out.push(Section {
                line,
                kind: words.next().unwrap_or_default(),
                args: words.collect(),
                directives: Vec::new(),
                lexed_badly,
            });
        } else if !args.is_empty() {
            match out.last_mut() {
                Some(s) => s.directives.push(Directive { line, args }),
                None => errors.push((
                    line,
                    format!(
                        "directive '{}' outside of any section (sections start at column 0)",
                        args[0]
                    ),
                )),
            }
        }
    }
    (out, errors)
}

/// Splits one line into words: whitespace separates, `#` at a word start begins a
/// comment, double quotes group, backslash escapes the next character.
pub fn tokenize(line: &str) -> Result<Vec<String>, String> {
    match split(line) {
        (words, None) => Ok(words),
        (_, Some(m)) => Err(m.into()),
    }
}

/// The words of a line as far as they can be told, and what is wrong with it:
/// an unterminated quote ends the line, a lone final backslash is dropped.
fn split(line: &str) -> (Vec<String>, Option<&'static str>) {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut in_quote = false;
    let mut lone_backslash = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                // HAProxy's escapes: \r \n \t and \xHH are bytes, any other
                // character stands for itself.
                Some(n) => {
                    match n {
                        'r' => cur.push('\r'),
                        'n' => cur.push('\n'),
                        't' => cur.push('\t'),
                        'x' => {
                            let hex: String = chars.clone().take(2).collect();
                            match u8::from_str_radix(&hex, 16) {
                                Ok(b) if hex.len() == 2 => {
                                    cur.push(char::from(b));
                                    chars.nth(1);
                                }
                                _ => cur.push('x'),
                            }
                        }
                        n => cur.push(n),
                    }
                    in_word = true;
                }
                None => {
                    lone_backslash = true;
                    break;
                }
            },
            '"' => {
                in_quote = !in_quote;
                in_word = true;
            }
            c if in_quote => cur.push(c),
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    let err = if lone_backslash {
        Some("line ends with a lone backslash")
    } else {
        in_quote.then_some("unterminated double quote")
    };
    (out, err)
}

/// `10s`, `500ms`, `2m`, `1h`, `1d`; a bare number is milliseconds, as in HAProxy.
pub fn duration(s: &str) -> Result<Duration, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = s.split_at(digits);
    let bad = || format!("invalid duration '{s}' (expected a number with ms, s, m, h or d)");
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit {
        "" | "ms" => Some(n),
        "us" => return Ok(Duration::from_micros(n)),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => return Err(bad()),
    };
    ms.map(Duration::from_millis).ok_or_else(bad)
}

/// Byte sizes: `16384`, `16k`, `64m`, `1g` (powers of 1024).
pub fn size(s: &str) -> Result<u64, String> {
    let lower = s.to_ascii_lowercase();
    let digits = lower.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = lower.split_at(digits);
    let bad = || format!("invalid size '{s}' (expected a number with optional k, m or g)");
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mul = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mul).ok_or_else(bad)
}

/// A non-negative integer within `lo..=hi`.
pub fn number(s: &str, lo: u64, hi: u64) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("invalid number '{s}' (expected {lo}..={hi})")),
    }
}

/// A listening address: `IP:PORT`, `[IPv6]:PORT`, `*:PORT` or `:PORT` (all IPv4 addresses).
pub fn bind_addr(s: &str) -> Result<SocketAddr, String> {
    let bad = || format!("invalid address '{s}' (expected IP:PORT, [IPv6]:PORT or :PORT)");
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    match host {
        "" | "*" | "0.0.0.0" => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
        _ => Err(bad()),
    }
}

/// A peer address `HOST:PORT`; host names are resolved once, here (first address wins).
pub fn peer_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bad = || format!("invalid address '{s}' (expected HOST:PORT)");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let _: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    match s.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("host '{host}' resolves to no address")),
        Err(e) => Err(format!("cannot resolve '{host}': {e}")),
    }
}

/// The nearest candidate by edit distance, if close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(word, c);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    let limit = (word.len().max(c.len()) / 3).max(2);
    (d <= limit).then_some(c)
}

/// Formats the "did you mean" tail of an unknown-word message.
pub fn did_you_mean(word: &str, candidates: &[&str]) -> String {
    match suggest(word, candidates) {
        Some(s) => format!(" (did you mean '{s}'?)"),
        None => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_comments_quotes_escapes() {
        assert_eq!(
            tokenize("  bind 1.2.3.4:80 # x").unwrap(),
            ["bind", "1.2.3.4:80"]
        );
        assert_eq!(tokenize("a \"b c\" d\\ e").unwrap(), ["a", "b c", "d e"]);
        assert_eq!(
            tokenize("send PING\\r\\n \\x41").unwrap(),
            ["send", "PING\r\n", "A"]
        );
        assert_eq!(tokenize("a#b").unwrap(), ["a#b"]);
        assert!(tokenize("a \"b").is_err());
        assert!(tokenize("a \\").is_err());
        assert!(tokenize("   # only").unwrap().is_empty());
    }

    #[test]
    fn splits_sections() {
        let (s, e) = sections("global\n  nbthread 2\n\nfrontend f\n  bind :80\n");
        assert!(e.is_empty());
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].kind, "frontend");
        assert_eq!(s[1].args, ["f"]);
        assert_eq!(s[1].directives[0].line, 5);
    }

    #[test]
    fn directive_before_section_is_an_error() {
        let (_, e) = sections("  bind :80\n  mode http\nglobal\n  nbthread \"2\n");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].0, 1);
        assert!(e[0].1.contains("outside of any section"));
        assert_eq!(e[2].0, 4);
    }

    #[test]
    fn bad_header_starts_a_section_of_its_own() {
        let (s, e) = sections("frontend f\n  bind :80\nbackend \"b\n  server s :1\n\"\n  x\n");
        assert_eq!(
            e,
            [
                (3, "unterminated double quote".to_string()),
                (5, "unterminated double quote".to_string())
            ]
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].directives.len(), 1);
        assert!(!s[0].lexed_badly);
        assert_eq!(
            (s[1].kind.as_str(), s[1].args.as_slice()),
            ("backend", ["b".to_string()].as_slice())
        );
        assert!(s[1].lexed_badly);
        assert_eq!(s[1].directives[0].args, ["server", "s", ":1"]);
        // No words at all: still a section, with no kind.
        assert!(s[2].lexed_badly && s[2].kind.is_empty());
        assert_eq!(s[2].directives[0].line, 6);
        let (s, e) = sections("backend b\\\n  server s :1\n");
        assert_eq!(e[0].1, "line ends with a lone backslash");
        assert_eq!(s[0].args, ["b"]);
    }

    #[test]
    fn durations() {
        assert_eq!(duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(duration("250").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(duration("10x").is_err());
        assert!(duration("s").is_err());
        assert!(duration("-1s").is_err());
        assert!(duration("99999999999999999999d").is_err());
    }

    #[test]
    fn sizes_and_numbers() {
        assert_eq!(size("16k").unwrap(), 16384);
        assert_eq!(size("2M").unwrap(), 2 << 20);
        assert!(size("1t").is_err());
        assert_eq!(number("5", 1, 10).unwrap(), 5);
        assert!(number("0", 1, 10).is_err());
        assert!(number("x", 1, 10).is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(bind_addr(":80").unwrap().to_string(), "0.0.0.0:80");
        assert_eq!(bind_addr("*:80").unwrap().to_string(), "0.0.0.0:80");
        assert_eq!(bind_addr("[::1]:0").unwrap().to_string(), "[::1]:0");
        assert!(bind_addr("example.com:80").is_err());
        assert!(bind_addr("1.2.3.4").is_err());
        assert!(bind_addr("1.2.3.4:99999").is_err());
        assert_eq!(peer_addr("127.0.0.1:9").unwrap().port(), 9);
        assert!(peer_addr("localhost:9").unwrap().ip().is_loopback());
        assert!(peer_addr(":9").is_err());
        assert!(peer_addr("nohost").is_err());
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("bnd", &["bind", "mode"]), Some("bind"));
        assert_eq!(
            suggest("default_backnd", &["default_backend"]),
            Some("default_backend")
        );
        assert_eq!(suggest("zzzzzz", &["bind", "mode"]), None);
    }
}

#[cfg(test)]
mod limits_tests {
    use super::*;

    #[test]
    fn comments_may_hold_any_bytes() {
        let (text, errs) = decode(b"a b # \xe9\xff\n\"q # \xe9\"\nc\\#d \xe9\n#\xe9");
        assert_eq!(text, "a b \n\n\n");
        assert_eq!(
            errs.iter().map(|e| e.0).collect::<Vec<_>>(),
            vec![2, 3],
            "{errs:?}"
        );
    }

    #[test]
    fn long_words_are_cut() {
        let long = "y".repeat(1000);
        let m = format!("invalid size '{long}' (expected k)");
        let s = shorten(&m);
        assert!(s.len() < 120, "{s}");
        assert!(s.contains("...(1000 bytes)'"), "{s}");
        assert_eq!(shorten("short 'word'"), "short 'word'");
    }
}
