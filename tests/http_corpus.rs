//! Runs third-party HTTP/1.1 corpora (read in place from ../shared/corpora, or $LB_CORPORA) through the parsers: every desync-guardian `Severe` case must be refused.
//!
//! Requests are built the way `/work/shared/tools/h1probe.py` builds them (own code): YAML
//! scalars are decoded first, then `\r \n \t \0 \\ \xNN` escapes become raw bytes; guardian
//! cases get `Host: localhost` unless they carry a Host header. When the corpora are absent
//! (e.g. a checkout elsewhere) the tests print a note and pass.

use std::path::{Path, PathBuf};

use bytes::BytesMut;
use lb::http::body::{Chunk, ChunkedDecoder};
use lb::http::head::{parse_request, BodyKind, HeadLimits};

fn corpora() -> Option<PathBuf> {
    let dir = std::env::var_os("LB_CORPORA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // `../shared/corpora` beside the project root.
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora")
        });
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("corpora not found at {}; skipping", dir.display());
        None
    }
}

/// h1probe's second stage: backslash escapes to bytes, everything else as UTF-8.
fn unescape(s: &str) -> Vec<u8> {
    let c: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if c[i] == '\\' && i + 1 < c.len() {
            let esc = match c[i + 1] {
                'r' => Some(b'\r'),
                'n' => Some(b'\n'),
                't' => Some(b'\t'),
                '0' => Some(0),
                '\\' => Some(b'\\'),
                _ => None,
            };
            if let Some(b) = esc {
                out.push(b);
                i += 2;
                continue;
            }
            if c[i + 1] == 'x' {
                let hex: String = c[i + 2..(i + 4).min(c.len())].iter().collect();
                if hex.len() == 2 && hex.chars().all(|h| h.is_ascii_hexdigit()) {
                    out.push(u8::from_str_radix(&hex, 16).expect("hex"));
                    i += 4;
                    continue;
                }
            }
        }
        let mut tmp = [0u8; 4];
        out.extend_from_slice(c[i].encode_utf8(&mut tmp).as_bytes());
        i += 1;
    }
    out
}

/// A YAML scalar as the corpus uses them: plain, 'single' or "double" quoted.
fn yaml_scalar(raw: &str) -> String {
    let raw = raw.trim();
    if let Some(body) = raw.strip_prefix('\'') {
        let mut out = String::new();
        let mut it = body.chars().peekable();
        while let Some(ch) = it.next() {
            if ch == '\'' {
                if it.peek() == Some(&'\'') {
                    it.next();
                    out.push('\'');
                } else {
                    break;
                }
            } else {
                out.push(ch);
            }
        }
        out
    } else if let Some(body) = raw.strip_prefix('"') {
        let c: Vec<char> = body.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < c.len() {
            match c[i] {
                '"' => break,
                '\\' if i + 1 < c.len() => {
                    i += 1;
                    match c[i] {
                        'x' => {
                            let hex: String = c[i + 1..i + 3].iter().collect();
                            let v = u32::from_str_radix(&hex, 16).expect("yaml \\x");
                            out.push(char::from_u32(v).expect("char"));
                            i += 2;
                        }
                        'u' => {
                            let hex: String = c[i + 1..i + 5].iter().collect();
                            let v = u32::from_str_radix(&hex, 16).expect("yaml \\u");
                            out.push(char::from_u32(v).expect("char"));
                            i += 4;
                        }
                        't' => out.push('\t'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        '0' => out.push('\0'),
                        other => out.push(other), // \" \\ \/
                    }
                }
                ch => out.push(ch),
            }
            i += 1;
        }
        out
    } else {
        raw.to_string()
    }
}

struct Case {
    file: String,
    name: String,
    method: String,
    uri: String,
    version: String,
    headers: Vec<(String, String)>,
    tier: String,
}

fn guardian_cases(dir: &Path) -> Vec<Case> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("guardian dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read yaml");
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        let mut section = "";
        for line in text.lines() {
            let t = line.trim_start();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let indent = line.len() - t.len();
            let (key, val) = match t.trim_start_matches("- ").split_once(':') {
                Some((k, v)) => (k.trim(), v),
                None => continue,
            };
            match (indent, t.starts_with("- "), key) {
                (0, true, "name") => cases.push(Case {
                    file: file.clone(),
                    name: yaml_scalar(val),
                    method: "GET".into(),
                    uri: "/".into(),
                    version: "HTTP/1.1".into(),
                    headers: Vec::new(),
                    tier: String::new(),
                }),
                (2, false, k) => {
                    section = match k {
                        "headers" => "headers",
                        "expected" => "expected",
                        _ => "",
                    };
                    let c = cases.last_mut().expect("case");
                    match k {
                        "uri" => c.uri = yaml_scalar(val),
                        "method" => c.method = yaml_scalar(val),
                        "version" => c.version = yaml_scalar(val),
                        _ => {}
                    }
                }
                (4, true, "name") if section == "headers" => {
                    let c = cases.last_mut().expect("case");
                    c.headers.push((yaml_scalar(val), String::new()));
                }
                (6, false, "value") if section == "headers" => {
                    let c = cases.last_mut().expect("case");
                    c.headers.last_mut().expect("header").1 = yaml_scalar(val);
                }
                (4, false, "tier") if section == "expected" => {
                    cases.last_mut().expect("case").tier = yaml_scalar(val);
                }
                _ => {}
            }
        }
    }
    cases
}

fn request_bytes(c: &Case) -> Vec<u8> {
    let mut line = format!("{} {}", c.method, c.uri);
    if !c.version.is_empty() {
        line = format!("{line} {}", c.version);
    }
    let mut head = unescape(&line);
    head.extend_from_slice(b"\r\n");
    if !c.headers.iter().any(|(n, _)| n.to_lowercase() == "host") {
        head.extend_from_slice(b"Host: localhost\r\n");
    }
    for (n, v) in &c.headers {
        head.extend_from_slice(&unescape(n));
        head.extend_from_slice(b": ");
        head.extend_from_slice(&unescape(v));
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// What a strict proxy does with a byte stream from a client.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// A head or a chunked body was refused (400 and close).
    Refused(String),
    /// Every request in the stream parsed, with nothing left over.
    Accepted,
    /// The stream ends inside a head or body: the proxy waits for more (then times out).
    Incomplete,
    /// A request said `Connection: close` (or was HTTP/1.0 without keep-alive); the proxy
    /// answers it and closes, never reading what follows.
    ClosedAfter,
}

fn run_stream(data: &[u8]) -> Verdict {
    let limits = HeadLimits::default();
    let mut buf = BytesMut::from(data);
    loop {
        if buf.iter().all(|&b| b == b'\r' || b == b'\n') && buf.len() % 2 == 0 {
            // only empty lines (or nothing) left
            if buf.chunks(2).all(|c| c == b"\r\n") {
                return Verdict::Accepted;
            }
        }
        let head = match parse_request(&mut buf, &limits) {
            Err(e) => return Verdict::Refused(format!("{e}")),
            Ok(None) => return Verdict::Incomplete,
            Ok(Some(h)) => h,
        };
        match head.body {
            BodyKind::None => {}
            BodyKind::Length(n) => {
                if (buf.len() as u64) < n {
                    return Verdict::Incomplete;
                }
                let _ = buf.split_to(n as usize);
            }
            BodyKind::Chunked => {
                let mut d = ChunkedDecoder::default();
                loop {
                    match d.decode(&mut buf) {
                        Err(e) => return Verdict::Refused(format!("chunked: {e}")),
                        Ok(Some(Chunk::Trailers(_))) => break,
                        Ok(Some(Chunk::Data(_))) => {}
                        Ok(None) => return Verdict::Incomplete,
                    }
                }
            }
            BodyKind::UntilClose => unreachable!("requests are never read until close"),
        }
        if !head.keep_alive || head.upgrade || head.is_connect() {
            return if buf.is_empty() {
                Verdict::Accepted
            } else {
                Verdict::ClosedAfter
            };
        }
    }
}

/// Compliant guardian cases this parser refuses on purpose, each for a documented rule.
const COMPLIANT_REFUSED: &[(&str, &str)] = &[
    // issue 3: requests may carry only `Transfer-Encoding: chunked`, exactly once; other
    // codings, lists and parameters are refused (a backend that disagrees on codings desyncs)
    (
        "more-compliant-tests.yaml:Correct TE OK",
        "TE list gzip, chunked",
    ),
    (
        "more-compliant-tests.yaml:Transfer-Encoding: identity and chunked OK",
        "TE list",
    ),
    (
        "more-compliant-tests.yaml:Multiple transfer encoding headers in a single request OK",
        "TE repeated",
    ),
    (
        "more-compliant-tests.yaml:TE with custom parameters OK",
        "TE parameter",
    ),
    (
        "rfc-compliant.yaml:Different Transfer-Encoding headers",
        "TE repeated",
    ),
    (
        "rfc-compliant.yaml:Different Transfer-Encoding headers combined",
        "TE list",
    ),
    (
        "rfc-compliant.yaml:Transfer-Encoding with a param: chunked;custom_param",
        "TE parameter",
    ),
    // `#` is not part of any request-target form (RFC 9112 3.2); a proxy routing on the path
    // and a backend cutting at `#` would see different paths
    ("rfc-compliant.yaml:Compliant URL", "fragment in target"),
    // issue 3: bytes above 0x7F in the target are refused (clients percent-encode them)
    (
        "rfc-compliant.yaml:International in URI",
        "raw UTF-8 in target",
    ),
    // `GET  HTTP/1.1` has two spaces and no target: not a request line
    ("rfc-compliant.yaml:Empty URI", "empty target"),
];

#[test]
fn guardian_severe_refused_compliant_accepted() {
    let Some(root) = corpora() else { return };
    let cases = guardian_cases(&root.join("http-desync-guardian"));
    assert!(cases.len() >= 150, "parsed only {} cases", cases.len());
    let (mut severe, mut severe_ok, mut compliant, mut compliant_ok) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    let mut tiers = std::collections::BTreeMap::<(String, String), u32>::new();
    for c in &cases {
        let data = request_bytes(c);
        let mut buf = BytesMut::from(&data[..]);
        let got = match parse_request(&mut buf, &HeadLimits::default()) {
            Err(e) => format!("refused ({e})"),
            Ok(None) => "incomplete".to_string(),
            Ok(Some(_)) => "accepted".to_string(),
        };
        let key = if got.starts_with("refused") {
            "refused"
        } else {
            got.as_str()
        };
        *tiers.entry((c.tier.clone(), key.to_string())).or_default() += 1;
        let id = format!("{}:{}", c.file, c.name);
        match c.tier.as_str() {
            "Severe" => {
                severe += 1;
                if got.starts_with("refused") {
                    severe_ok += 1;
                } else {
                    failures.push(format!("SEVERE not refused: {id}: {got} {data:?}"));
                }
            }
            "Compliant" => {
                compliant += 1;
                if got == "accepted" {
                    compliant_ok += 1;
                } else if !COMPLIANT_REFUSED.iter().any(|(n, _)| *n == id) {
                    failures.push(format!(
                        "COMPLIANT not accepted: {id}: {got} {:?}",
                        String::from_utf8_lossy(&data)
                    ));
                }
            }
            _ => {
                if got == "accepted" {
                    eprintln!("guardian {} accepted: {id}", c.tier);
                }
            }
        }
    }
    for ((tier, got), n) in &tiers {
        eprintln!("guardian {tier:>10} -> {got:<10} {n}");
    }
    eprintln!("guardian: Severe refused {severe_ok}/{severe}, Compliant accepted {compliant_ok}/{compliant}");
    for f in &failures {
        eprintln!("{f}");
    }
    assert_eq!(severe, 58, "the corpus has 58 Severe cases");
    assert!(failures.is_empty(), "{} failures", failures.len());
}

struct LlCase {
    id: String,
    data: Vec<u8>,
    error: Option<String>,
}

fn llhttp_cases(dir: &Path) -> Vec<LlCase> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("llhttp dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".md") && !n.starts_with("lenient") && !n.starts_with("pausing")
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let file = f.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&f).expect("read md");
        let lines: Vec<&str> = text.split('\n').collect();
        let mut title = String::new();
        let mut i = 0;
        while i < lines.len() {
            let l = lines[i];
            if let Some(t) = l.strip_prefix("### ") {
                title = t.to_string();
                i += 1;
                continue;
            }
            let Some(meta) = l.trim().strip_prefix("<!-- meta=") else {
                i += 1;
                continue;
            };
            let meta: String = meta.chars().filter(|c| !c.is_whitespace()).collect();
            let wanted = meta.contains("\"type\":\"request\"") && !meta.contains("noScan");
            // ```http block, then ```log block
            let mut j = i + 1;
            while j < lines.len() && lines[j].trim().is_empty() {
                j += 1;
            }
            if j >= lines.len() || lines[j].trim() != "```http" {
                i += 1;
                continue;
            }
            let start = j + 1;
            let mut end = start;
            while end < lines.len() && lines[end] != "```" {
                end += 1;
            }
            let mut k = end + 1;
            while k < lines.len() && lines[k].trim().is_empty() {
                k += 1;
            }
            let log_start = k + 1;
            let mut log_end = log_start;
            while log_end < lines.len() && lines[log_end] != "```" {
                log_end += 1;
            }
            i = log_end + 1;
            if !wanted {
                continue;
            }
            let body = &lines[start..end.min(lines.len())];
            let mut data = Vec::new();
            for l in body {
                data.extend_from_slice(&unescape(l));
                data.extend_from_slice(b"\r\n");
            }
            let log = lines[log_start.min(lines.len())..log_end.min(lines.len())].join("\n");
            let error = log
                .trim()
                .lines()
                .find(|l| l.contains("error code="))
                .map(|l| {
                    l.split("reason=")
                        .nth(1)
                        .unwrap_or("")
                        .trim_matches('"')
                        .to_string()
                });
            if error
                .as_deref()
                .is_some_and(|e| e.to_lowercase().contains("pause"))
            {
                continue;
            }
            out.push(LlCase {
                id: format!("{file}:{title}"),
                data,
                error,
            });
        }
    }
    out
}

/// llhttp "must error" cases a strict proxy still lets through, each with the reason that is
/// right for a proxy (see the README section "HTTP/1.1 parsing").
const LLHTTP_ACCEPTED: &[(&str, &str)] = &[
    // the first request ends the connection (HTTP/1.0 without keep-alive, or
    // `Connection: close`): the proxy answers it and closes without reading the rest, so the
    // trailing bytes never reach anyone
    (
        "connection.md:No restart when keep-alive is off (1.0)",
        "closed after the first request",
    ),
    (
        "connection.md:CRLF between requests, explicit `close`",
        "closed after the first request",
    ),
    (
        "connection.md:CRLF between requests, explicit `close` followed by tab",
        "closed after the first request",
    ),
    // ANNOUNCE is a valid token; RFC 9110 9.1 lets methods be any token and a proxy must
    // forward extension methods (WebDAV, PURGE, ...) it does not know
    (
        "invalid.md:HTTP protocol and ANNOUNCE method",
        "extension method",
    ),
];

#[test]
fn llhttp_error_cases_mostly_refused() {
    let Some(root) = corpora() else { return };
    let cases = llhttp_cases(&root.join("llhttp-request"));
    assert!(cases.len() > 50, "parsed only {} llhttp cases", cases.len());
    let (mut want_err, mut refused) = (0, 0);
    let mut unexpected = Vec::new();
    let mut ok_cases = (0, 0);
    for c in &cases {
        let v = run_stream(&c.data);
        match &c.error {
            Some(reason) => {
                want_err += 1;
                if let Verdict::Refused(_) = v {
                    refused += 1;
                } else {
                    eprintln!("llhttp error case not refused: {} ({reason}): {v:?}", c.id);
                    if !LLHTTP_ACCEPTED.iter().any(|(n, _)| *n == c.id) {
                        unexpected.push(c.id.clone());
                    }
                }
            }
            None => {
                ok_cases.1 += 1;
                if let Verdict::Refused(why) = &v {
                    eprintln!("llhttp valid case refused: {}: {why}", c.id);
                } else {
                    ok_cases.0 += 1;
                }
            }
        }
    }
    eprintln!(
        "llhttp: error cases refused {refused}/{want_err}; valid cases not refused {}/{}",
        ok_cases.0, ok_cases.1
    );
    assert!(unexpected.is_empty(), "undocumented: {unexpected:#?}");
}
