//! Access log: one line per HTTP request or TCP connection, written by a background thread; a slow sink drops lines (counted), never stalls traffic.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::conf::{Global, LogFormat, LogSink};

/// Lines queued for the writer thread before new ones are dropped.
pub const QUEUE: usize = 8192;

/// The default text format, close to HAProxy's httplog:
/// `client:port [date] frontend backend/server Tc/Tr/Ta status bytes_out bytes_in "request"`.
pub const DEFAULT_FORMAT: &str = "%ci:%cp [%t] %f %b/%s %Tc/%Tr/%Ta %ST %B %U \"%r\"";

/// One request (HTTP) or connection (TCP), as logged.
#[derive(Debug, Clone)]
pub struct Record {
    pub time: SystemTime,
    pub client: SocketAddr,
    pub frontend: Arc<str>,
    /// `None`: no backend was chosen.
    pub backend: Option<Arc<str>>,
    /// `None`: no server was reached.
    pub server: Option<Arc<str>>,
    /// Milliseconds to connect to the server; -1: none made (reused or failed).
    pub tc: i64,
    /// Milliseconds to the response head; -1: none received (or TCP).
    pub tr: i64,
    /// Milliseconds in total.
    pub ta: u64,
    /// HTTP status sent; `None` for TCP or when the client vanished first.
    pub status: Option<u16>,
    /// Bytes sent to the client.
    pub bytes_out: u64,
    /// Bytes received from the client.
    pub bytes_in: u64,
    /// The request line (HTTP only).
    pub request: Option<String>,
}

pub use crate::conf::logformat::Format;
use crate::conf::logformat::{Part, Var};

/// Writes a record as a `log-format` says.
trait WriteRecord {
    fn write(&self, r: &Record, out: &mut String);
}

impl WriteRecord for Format {
    fn write(&self, r: &Record, out: &mut String) {
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => {
                    let _ = match v {
                        Var::ClientIp => write!(out, "{}", r.client.ip()),
                        Var::ClientPort => write!(out, "{}", r.client.port()),
                        Var::Date => {
                            clf_date(r.time, out);
                            Ok(())
                        }
                        Var::Frontend => write!(out, "{}", r.frontend),
                        Var::Backend => write!(out, "{}", r.backend.as_deref().unwrap_or("-")),
                        Var::Server => write!(out, "{}", r.server.as_deref().unwrap_or("-")),
                        Var::Tc => write!(out, "{}", r.tc),
                        Var::Tr => write!(out, "{}", r.tr),
                        Var::Ta => write!(out, "{}", r.ta),
                        Var::Status => match r.status {
                            Some(s) => write!(out, "{s}"),
                            None => write!(out, "-"),
                        },
                        Var::BytesOut => write!(out, "{}", r.bytes_out),
                        Var::BytesIn => write!(out, "{}", r.bytes_in),
                        Var::Request => {
                            out.push_str(r.request.as_deref().unwrap_or("-"));
                            Ok(())
                        }
                    };
                }
            }
        }
    }
}

/// How records become lines.
#[derive(Debug, Clone)]
pub enum Layout {
    Text(Format),
    Json,
}

impl Layout {
    pub fn of(f: &LogFormat) -> Result<Layout, String> {
        Ok(match f {
            LogFormat::Default => Layout::Text(Format::parse(DEFAULT_FORMAT)?),
            LogFormat::Json => Layout::Json,
            LogFormat::Custom(s) => Layout::Text(Format::parse(s)?),
        })
    }

    /// Appends one line (with its newline) for `r`.
    pub fn line(&self, r: &Record, out: &mut String) {
        match self {
            Layout::Text(f) => f.write(r, out),
            Layout::Json => {
                out.push_str("{\"time\":\"");
                iso_date(r.time, out);
                let _ = write!(
                    out,
                    "\",\"client_ip\":\"{}\",\"client_port\":{},\"frontend\":",
                    r.client.ip(),
                    r.client.port()
                );
                json_str(&r.frontend, out);
                out.push_str(",\"backend\":");
                json_opt(r.backend.as_deref(), out);
                out.push_str(",\"server\":");
                json_opt(r.server.as_deref(), out);
                let _ = write!(
                    out,
                    ",\"tc_ms\":{},\"tr_ms\":{},\"ta_ms\":{},\"status\":",
                    r.tc, r.tr, r.ta
                );
                match r.status {
                    Some(s) => {
                        let _ = write!(out, "{s}");
                    }
                    None => out.push_str("null"),
                }
                let _ = write!(
                    out,
                    ",\"bytes_out\":{},\"bytes_in\":{},\"request\":",
                    r.bytes_out, r.bytes_in
                );
                json_opt(r.request.as_deref(), out);
                out.push('}');
            }
        }
        out.push('\n');
    }
}

/// Appends `s` as a JSON string literal.
pub fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_opt(s: Option<&str>, out: &mut String) {
    match s {
        Some(s) => json_str(s, out),
        None => out.push_str("null"),
    }
}

/// (year, month 1..12, day, hour, minute, second, millisecond) in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis(),
    )
}

/// `22/Nov/2026:11:20:01.123`, HAProxy's accept date (UTC).
fn clf_date(t: SystemTime, out: &mut String) {
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s, ms) = civil(t);
    let _ = write!(
        out,
        "{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02}.{ms:03}",
        MON[(mo - 1) as usize]
    );
}

/// `2026-11-22T11:20:01.123Z`.
fn iso_date(t: SystemTime, out: &mut String) {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    let _ = write!(out, "{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z");
}

/// The request path's handle: hands records to the writer thread without waiting.
#[derive(Debug)]
pub struct AccessLog {
    tx: SyncSender<Record>,
    /// Lines dropped because the queue was full (the sink is slower than traffic).
    pub dropped: AtomicU64,
    /// Lines handed to the sink.
    pub written: Arc<AtomicU64>,
}

impl AccessLog {
    /// Starts a writer thread over `sink`, queueing at most `queue` records.
    pub fn start(sink: Box<dyn Write + Send>, layout: Layout, queue: usize) -> AccessLog {
        let (tx, rx) = sync_channel(queue);
        let written = Arc::new(AtomicU64::new(0));
        let w = written.clone();
        let spawned = std::thread::Builder::new()
            .name("lb-accesslog".into())
            .spawn(move || write_loop(rx, sink, layout, &w));
        if let Err(e) = spawned {
            tracing::error!("cannot start the access log thread: {e}; lines will be dropped");
        }
        AccessLog {
            tx,
            dropped: AtomicU64::new(0),
            written,
        }
    }

    /// Queues one record; drops (and counts) it when the queue is full.
    pub fn log(&self, r: Record) {
        match self.tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn write_loop(
    rx: Receiver<Record>,
    sink: Box<dyn Write + Send>,
    layout: Layout,
    written: &AtomicU64,
) {
    let mut out = std::io::BufWriter::with_capacity(64 << 10, sink);
    let mut line = String::with_capacity(256);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        // Write what is queued, then flush once the queue is empty.
        while let Some(r) = next {
            line.clear();
            layout.line(&r, &mut line);
            if out.write_all(line.as_bytes()).is_ok() {
                written.fetch_add(1, Ordering::Relaxed);
            }
            next = rx.try_recv().ok();
        }
        let _ = out.flush();
    }
}

static GLOBAL: OnceLock<AccessLog> = OnceLock::new();

/// Opens the sink the conf names (if any) and installs the process's access log.
pub fn install(g: &Global) -> Result<(), String> {
    let Some(sink) = &g.access_log else {
        return Ok(());
    };
    let layout = Layout::of(&g.log_format)?;
    let w: Box<dyn Write + Send> = match sink {
        LogSink::Stdout => Box::new(std::io::stdout()),
        LogSink::File(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("cannot open access log {p}: {e}"))?,
        ),
    };
    let _ = GLOBAL.set(AccessLog::start(w, layout, QUEUE));
    Ok(())
}

/// The process's access log, when `access-log` is configured.
pub fn get() -> Option<&'static AccessLog> {
    GLOBAL.get()
}

/// Lines dropped so far by the process's access log.
pub fn dropped() -> u64 {
    get().map_or(0, |l| l.dropped.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    fn record() -> Record {
        Record {
            // 2026-11-22 11:20:01.123 UTC
            time: UNIX_EPOCH + Duration::from_millis(1_795_346_401_123),
            client: "127.0.0.1:5555".parse().unwrap(),
            frontend: "www".into(),
            backend: Some("web".into()),
            server: Some("s1".into()),
            tc: 1,
            tr: 3,
            ta: 4,
            status: Some(200),
            bytes_out: 120,
            bytes_in: 40,
            request: Some("GET /a\"b HTTP/1.1".into()),
        }
    }

    #[test]
    fn default_format() {
        let mut s = String::new();
        Layout::of(&LogFormat::Default)
            .unwrap()
            .line(&record(), &mut s);
        assert_eq!(
            s,
            "127.0.0.1:5555 [22/Nov/2026:11:20:01.123] www web/s1 1/3/4 200 120 40 \"GET /a\"b HTTP/1.1\"\n"
        );
    }

    #[test]
    fn json_format_escapes() {
        let mut s = String::new();
        let mut r = record();
        r.server = None;
        r.status = None;
        Layout::Json.line(&r, &mut s);
        assert_eq!(
            s,
            "{\"time\":\"2026-11-22T11:20:01.123Z\",\"client_ip\":\"127.0.0.1\",\"client_port\":5555,\"frontend\":\"www\",\"backend\":\"web\",\"server\":null,\"tc_ms\":1,\"tr_ms\":3,\"ta_ms\":4,\"status\":null,\"bytes_out\":120,\"bytes_in\":40,\"request\":\"GET /a\\\"b HTTP/1.1\"}\n"
        );
    }

    #[test]
    fn custom_format_and_errors() {
        let f = Format::parse("%%%ST %f%%").unwrap();
        let mut s = String::new();
        f.write(&record(), &mut s);
        assert_eq!(s, "%200 www%");
        assert!(Format::parse("%x").unwrap_err().contains("'%x'"));
        assert!(Format::parse("trailing %").is_err());
    }

    #[test]
    fn dates() {
        let mut s = String::new();
        iso_date(UNIX_EPOCH, &mut s);
        assert_eq!(s, "1970-01-01T00:00:00.000Z");
        s.clear();
        // 2024-02-29 23:59:59 UTC, a leap day.
        iso_date(UNIX_EPOCH + Duration::from_secs(1_709_251_199), &mut s);
        assert_eq!(s, "2024-02-29T23:59:59.000Z");
    }

    /// A sink that blocks every write until the test lets it go.
    struct Stuck(mpsc::Receiver<()>);

    impl Write for Stuck {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn slow_sink_drops_and_counts_instead_of_blocking() {
        let (release, gate) = mpsc::channel();
        let log = Arc::new(AccessLog::start(Box::new(Stuck(gate)), Layout::Json, 4));
        // 1000 records against a sink that accepts nothing: if logging waited
        // for the sink, this thread would never finish.
        let (done_tx, done) = mpsc::channel();
        let l2 = log.clone();
        std::thread::spawn(move || {
            for _ in 0..1000 {
                l2.log(record());
            }
            let _ = done_tx.send(());
        });
        done.recv_timeout(Duration::from_secs(20))
            .expect("logging blocked on a stuck sink");
        let dropped = log.dropped.load(Ordering::Relaxed);
        // The queue holds 4; the writer holds at most a 64 KiB buffer's worth
        // (about 200 lines) before its first write blocks.
        assert!(dropped >= 500, "dropped {dropped}");
        assert!(dropped < 1000);
        // Once the sink moves again, what was queued is written.
        drop(release);
        let deadline = Instant::now() + Duration::from_secs(20);
        while log.written.load(Ordering::Relaxed) + dropped < 1000 {
            assert!(Instant::now() < deadline, "queued lines never written");
            std::thread::yield_now();
        }
        assert_eq!(log.written.load(Ordering::Relaxed) + dropped, 1000);
    }
}
