//! Static-file rules, pure: request path -> safe relative path, MIME types, HTTP dates, ETags, conditionals and byte ranges (RFC 9110).

use std::time::{SystemTime, UNIX_EPOCH};

/// Why a request path is refused before the file system sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A malformed percent escape, or not an origin-form path.
    #[error("malformed path")]
    Malformed,
    /// `..`/`.` segments, encoded slashes or percent signs, backslashes, NUL or control bytes.
    #[error("path refused")]
    Refused,
}

impl PathError {
    pub fn status(self) -> u16 {
        match self {
            PathError::Malformed => 400,
            PathError::Refused => 403,
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `path` (the target without its query) into `out` as a relative path
/// (no leading slash, segments joined by `/`, empty for the root). Returns
/// whether the path ended with a slash. Everything that could name a file
/// outside the root, or be read differently by another layer, is refused:
/// the decoded path may hold no `..` or `.` segment, no `\`, no NUL or other
/// control byte, and no `/` or `%` that came from an escape (so neither
/// `%2f` nor double encoding like `%252e` survives). Symlinks are the opener's job.
pub fn resolve(path: &[u8], out: &mut Vec<u8>) -> Result<bool, PathError> {
    out.clear();
    if path.first() != Some(&b'/') {
        return Err(PathError::Malformed);
    }
    let mut i = 0;
    let mut seg_start = 0;
    while i < path.len() {
        let mut b = path[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                path.get(i + 1).copied().and_then(hex),
                path.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::Malformed);
            };
            b = h << 4 | l;
            if b == b'/' || b == b'%' {
                return Err(PathError::Refused);
            }
            i += 3;
        } else {
            i += 1;
            if b == b'/' {
                end_segment(out, seg_start)?;
                seg_start = out.len();
                continue;
            }
        }
        if b == b'\\' || b < 0x20 || b == 0x7f {
            return Err(PathError::Refused);
        }
        if out.len() == seg_start && !out.is_empty() {
            out.push(b'/');
            seg_start = out.len();
        }
        out.push(b);
    }
    end_segment(out, seg_start)?;
    Ok(path.last() == Some(&b'/'))
}

/// Checks the segment just written (from `start`); empty segments vanish.
fn end_segment(out: &mut [u8], start: usize) -> Result<(), PathError> {
    match &out[start..] {
        b"." | b".." => Err(PathError::Refused),
        _ => Ok(()),
    }
}

/// The Content-Type for a file name, by extension (case-insensitive).
pub fn mime(name: &[u8]) -> &'static str {
    let ext = match name.iter().rposition(|&b| b == b'.') {
        Some(i) if !name[i..].contains(&b'/') => &name[i + 1..],
        _ => return "application/octet-stream",
    };
    let mut lower = [0u8; 8];
    if ext.len() > lower.len() {
        return "application/octet-stream";
    }
    for (d, s) in lower.iter_mut().zip(ext) {
        *d = s.to_ascii_lowercase();
    }
    match &lower[..ext.len()] {
        b"html" | b"htm" | b"shtml" => "text/html; charset=utf-8",
        b"css" => "text/css; charset=utf-8",
        b"js" | b"mjs" => "text/javascript; charset=utf-8",
        b"json" | b"map" => "application/json",
        b"jsonld" => "application/ld+json",
        b"webmanifest" => "application/manifest+json",
        b"xml" => "text/xml",
        b"txt" | b"text" | b"log" | b"conf" => "text/plain; charset=utf-8",
        b"md" | b"markdown" => "text/markdown; charset=utf-8",
        b"csv" => "text/csv; charset=utf-8",
        b"tsv" => "text/tab-separated-values",
        b"ics" => "text/calendar",
        b"vtt" => "text/vtt",
        b"mml" => "text/mathml",
        b"jad" => "text/vnd.sun.j2me.app-descriptor",
        b"wml" => "text/vnd.wap.wml",
        b"htc" => "text/x-component",
        b"gif" => "image/gif",
        b"jpeg" | b"jpg" | b"jfif" => "image/jpeg",
        b"png" => "image/png",
        b"apng" => "image/apng",
        b"avif" => "image/avif",
        b"webp" => "image/webp",
        b"svg" | b"svgz" => "image/svg+xml",
        b"ico" => "image/x-icon",
        b"bmp" => "image/bmp",
        b"tif" | b"tiff" => "image/tiff",
        b"jng" => "image/x-jng",
        b"wbmp" => "image/vnd.wap.wbmp",
        b"heic" => "image/heic",
        b"jxl" => "image/jxl",
        b"woff" => "font/woff",
        b"woff2" => "font/woff2",
        b"ttf" => "font/ttf",
        b"otf" => "font/otf",
        b"eot" => "application/vnd.ms-fontobject",
        b"wasm" => "application/wasm",
        b"pdf" => "application/pdf",
        b"ps" | b"eps" | b"ai" => "application/postscript",
        b"rtf" => "application/rtf",
        b"zip" => "application/zip",
        b"gz" | b"tgz" => "application/gzip",
        b"bz2" => "application/x-bzip2",
        b"xz" => "application/x-xz",
        b"zst" => "application/zstd",
        b"7z" => "application/x-7z-compressed",
        b"rar" => "application/vnd.rar",
        b"tar" => "application/x-tar",
        b"jar" | b"war" | b"ear" => "application/java-archive",
        b"doc" => "application/msword",
        b"docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        b"xls" => "application/vnd.ms-excel",
        b"xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        b"ppt" => "application/vnd.ms-powerpoint",
        b"pptx" => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        b"odt" => "application/vnd.oasis.opendocument.text",
        b"ods" => "application/vnd.oasis.opendocument.spreadsheet",
        b"odp" => "application/vnd.oasis.opendocument.presentation",
        b"epub" => "application/epub+zip",
        b"atom" => "application/atom+xml",
        b"rss" => "application/rss+xml",
        b"xhtml" => "application/xhtml+xml",
        b"xspf" => "application/xspf+xml",
        b"kml" => "application/vnd.google-earth.kml+xml",
        b"kmz" => "application/vnd.google-earth.kmz",
        b"apk" => "application/vnd.android.package-archive",
        b"deb" => "application/vnd.debian.binary-package",
        b"rpm" => "application/x-redhat-package-manager",
        b"dmg" => "application/x-apple-diskimage",
        b"iso" | b"img" | b"bin" | b"exe" | b"dll" | b"msi" => "application/octet-stream",
        b"swf" => "application/x-shockwave-flash",
        b"pem" | b"crt" | b"der" | b"cer" => "application/x-x509-ca-cert",
        b"sh" => "application/x-sh",
        b"pl" | b"pm" => "application/x-perl",
        b"py" => "text/x-python; charset=utf-8",
        b"rs" => "text/x-rust; charset=utf-8",
        b"c" | b"h" => "text/x-c; charset=utf-8",
        b"yaml" | b"yml" => "application/yaml",
        b"toml" => "application/toml",
        b"mid" | b"midi" | b"kar" => "audio/midi",
        b"mp3" => "audio/mpeg",
        b"ogg" | b"oga" | b"opus" => "audio/ogg",
        b"m4a" => "audio/x-m4a",
        b"aac" => "audio/aac",
        b"flac" => "audio/flac",
        b"wav" => "audio/wav",
        b"weba" => "audio/webm",
        b"ra" => "audio/x-realaudio",
        b"3gpp" | b"3gp" => "video/3gpp",
        b"ts" => "video/mp2t",
        b"mp4" | b"m4v" => "video/mp4",
        b"mpeg" | b"mpg" => "video/mpeg",
        b"mov" => "video/quicktime",
        b"webm" => "video/webm",
        b"ogv" => "video/ogg",
        b"flv" => "video/x-flv",
        b"mng" => "video/x-mng",
        b"asx" | b"asf" => "video/x-ms-asf",
        b"wmv" => "video/x-ms-wmv",
        b"avi" => "video/x-msvideo",
        b"mkv" => "video/x-matroska",
        _ => "application/octet-stream",
    }
}

/// Seconds since the epoch of a `SystemTime` (0 before the epoch).
pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Days since 1970-01-01 -> (year, month 1..=12, day 1..=31) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
pub const HTTP_DATE_LEN: usize = 29;

/// Formats `secs` since the epoch as an IMF-fixdate.
pub fn http_date(secs: i64) -> [u8; HTTP_DATE_LEN] {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let y = y.clamp(0, 9999) as u32;
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[days.rem_euclid(7) as usize]);
    let two = |o: &mut [u8], v: u32| {
        o[0] = b'0' + (v / 10) as u8;
        o[1] = b'0' + (v % 10) as u8;
    };
    two(&mut out[5..7], d);
    out[8..11].copy_from_slice(MONTHS[(m - 1) as usize]);
    two(&mut out[12..14], y / 100);
    two(&mut out[14..16], y % 100);
    two(&mut out[17..19], (rem / 3600) as u32);
    two(&mut out[20..22], (rem / 60 % 60) as u32);
    two(&mut out[23..25], (rem % 60) as u32);
    out
}

/// Parses an IMF-fixdate; the obsolete RFC 850 and asctime forms give `None`
/// (the condition is then ignored, as RFC 9110 allows for invalid dates).
pub fn parse_http_date(v: &[u8]) -> Option<i64> {
    if v.len() != HTTP_DATE_LEN || &v[3..5] != b", " || &v[25..] != b" GMT" {
        return None;
    }
    let num = |s: &[u8]| -> Option<u32> {
        s.iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + (b - b'0') as u32)
        })
    };
    let d = num(&v[5..7])?;
    let m = MONTHS.iter().position(|mo| mo[..] == v[8..11])? as u32 + 1;
    let y = num(&v[12..16])?;
    let (hh, mm, ss) = (num(&v[17..19])?, num(&v[20..22])?, num(&v[23..25])?);
    if v[7] != b' ' || v[11] != b' ' || v[16] != b' ' || v[19] != b':' || v[22] != b':' {
        return None;
    }
    if !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    Some(days_from_civil(y as i64, m, d) * 86_400 + (hh * 3600 + mm * 60 + ss) as i64)
}

/// A strong validator from modification time and size, as nginx makes it: `"mtime-size"` in hex.
pub fn etag(mtime: i64, size: u64, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let _ = write!(out, "\"{mtime:x}-{size:x}\"");
}

/// Does an `If-Match` / `If-None-Match` list match `tag`? `weak` selects the
/// weak comparison (If-None-Match), else strong (If-Match: a `W/` tag never matches).
pub fn etag_matches(list: &[u8], tag: &[u8], weak: bool) -> bool {
    if list.iter().all(|b| b.is_ascii_whitespace() || *b == b'*') && list.contains(&b'*') {
        return true;
    }
    list.split(|&b| b == b',').any(|item| {
        let item = item.trim_ascii();
        let (is_weak, opaque) = match item.strip_prefix(b"W/") {
            Some(rest) => (true, rest),
            None => (false, item),
        };
        (weak || !is_weak) && opaque == tag
    })
}

/// What a `Range` header asks of a representation of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// No usable range: send everything with 200 (absent, invalid, another
    /// unit, or several ranges, which RFC 9110 lets a server ignore).
    Full,
    /// Bytes `start..=end`, with 206.
    Part { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Parses `Range: bytes=...` for a representation of `len` bytes.
pub fn range(v: &[u8], len: u64) -> Range {
    let v = v.trim_ascii();
    if v.len() < 6 || !v[..6].eq_ignore_ascii_case(b"bytes=") {
        return Range::Full;
    }
    let spec = v[6..].trim_ascii();
    if spec.contains(&b',') {
        return Range::Full;
    }
    let Some(dash) = spec.iter().position(|&b| b == b'-') else {
        return Range::Full;
    };
    let num = |s: &[u8]| -> Option<u64> {
        if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    let (a, b) = (spec[..dash].trim_ascii(), spec[dash + 1..].trim_ascii());
    if a.is_empty() {
        // suffix-range: the last N bytes.
        let Some(n) = num(b) else {
            return Range::Full;
        };
        if n == 0 || len == 0 {
            return Range::Unsatisfiable;
        }
        return Range::Part {
            start: len.saturating_sub(n),
            end: len - 1,
        };
    }
    let Some(first) = num(a) else {
        return Range::Full;
    };
    let last = if b.is_empty() {
        None
    } else {
        match num(b) {
            Some(l) if l >= first => Some(l),
            _ => return Range::Full,
        }
    };
    if first >= len {
        return Range::Unsatisfiable;
    }
    Range::Part {
        start: first,
        end: last.map_or(len - 1, |l| l.min(len - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(p: &str) -> Result<String, PathError> {
        let mut out = Vec::new();
        resolve(p.as_bytes(), &mut out).map(|_| String::from_utf8(out).unwrap())
    }

    #[test]
    fn paths_resolve_or_are_refused() {
        assert_eq!(res("/").unwrap(), "");
        assert_eq!(res("/a/b.txt").unwrap(), "a/b.txt");
        assert_eq!(res("//a///b/").unwrap(), "a/b");
        assert_eq!(res("/hello%20world.txt").unwrap(), "hello world.txt");
        assert_eq!(res("/..a/b..").unwrap(), "..a/b..");
        for bad in [
            "/..",
            "/../x",
            "/a/../../x",
            "/a/..",
            "/./x",
            "/%2e%2e/x",
            "/%2E%2e/x",
            "/.%2e/x",
            "/a%2f..%2fx",
            "/a%2Fb",
            "/%252e%252e/x",
            "/%25",
            "/a\\..\\x",
            "/a%5c..%5cx",
            "/x%00.txt",
            "/x%0a",
            "/x\x7f",
        ] {
            assert_eq!(res(bad), Err(PathError::Refused), "{bad}");
        }
        for bad in ["x", "", "/%", "/%2", "/%zz", "*"] {
            assert_eq!(res(bad), Err(PathError::Malformed), "{bad}");
        }
        let mut out = Vec::new();
        assert!(resolve(b"/dir/", &mut out).unwrap());
        assert!(!resolve(b"/dir", &mut out).unwrap());
    }

    #[test]
    fn mime_types() {
        assert_eq!(mime(b"index.html"), "text/html; charset=utf-8");
        assert_eq!(mime(b"a/B.PNG"), "image/png");
        assert_eq!(mime(b"x.woff2"), "font/woff2");
        assert_eq!(mime(b"x.wasm"), "application/wasm");
        assert_eq!(mime(b"x.svg"), "image/svg+xml");
        assert_eq!(mime(b"noext"), "application/octet-stream");
        assert_eq!(mime(b"dir.d/noext"), "application/octet-stream");
        assert_eq!(mime(b"x.verylongextension"), "application/octet-stream");
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(1_795_000_000), b"Wed, 18 Nov 2026 11:06:40 GMT");
        for t in [0, 784_111_777, 951_782_400, 1_795_000_000, 4_102_444_799] {
            assert_eq!(parse_http_date(&http_date(t)), Some(t), "{t}");
        }
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), None);
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 25:49:37 GMT"), None);
        assert_eq!(parse_http_date(b"Sun, 06 Xyz 1994 08:49:37 GMT"), None);
    }

    #[test]
    fn etags_compare() {
        let t = b"\"5f-400\"";
        assert!(etag_matches(b"\"5f-400\"", t, false));
        assert!(etag_matches(b"\"a\", \"5f-400\"", t, false));
        assert!(etag_matches(b"W/\"5f-400\"", t, true));
        assert!(!etag_matches(b"W/\"5f-400\"", t, false));
        assert!(etag_matches(b"*", t, false));
        assert!(!etag_matches(b"\"5f-401\"", t, true));
        let mut e = Vec::new();
        etag(0x5f, 0x400, &mut e);
        assert_eq!(e, t);
    }

    #[test]
    fn ranges() {
        use Range::*;
        let p = |s, e| Part { start: s, end: e };
        let cases: &[(&str, u64, Range)] = &[
            ("bytes=0-0", 10, p(0, 0)),
            ("bytes=0-9", 10, p(0, 9)),
            ("bytes=0-99", 10, p(0, 9)),
            ("bytes=5-", 10, p(5, 9)),
            ("bytes=-3", 10, p(7, 9)),
            ("bytes=-30", 10, p(0, 9)),
            ("BYTES=2-3", 10, p(2, 3)),
            ("bytes= 2 - 3 ", 10, p(2, 3)),
            ("bytes=10-", 10, Unsatisfiable),
            ("bytes=10-20", 10, Unsatisfiable),
            ("bytes=-0", 10, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-1", 0, Unsatisfiable),
            ("bytes=5-2", 10, Full),
            ("bytes=a-b", 10, Full),
            ("bytes=-", 10, Full),
            ("bytes=1", 10, Full),
            ("bytes=0-1,3-4", 10, Full),
            ("items=0-1", 10, Full),
            ("bytes=99999999999999999999-", 10, Full),
            ("bytes=+1-2", 10, Full),
        ];
        for (h, len, want) in cases {
            assert_eq!(range(h.as_bytes(), *len), *want, "{h} of {len}");
        }
    }
}
