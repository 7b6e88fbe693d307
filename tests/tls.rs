//! HTTPS: SNI certificate choice, default and strict-sni, redirect to https,
//! X-Forwarded-Proto, certificate reload, bad material at `lb check`, TLS to servers.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use common::client::Client;
use common::servers::http_server;
use common::{Lb, TempDir};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

/// A test certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A leaf signed by `ca` for `names`: (PEM with chain and key, leaf DER).
fn leaf(ca: &Ca, names: &[&str]) -> (String, Vec<u8>) {
    let p = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (
        format!("{}{}", cert.pem(), key.serialize_pem()),
        cert.der().to_vec(),
    )
}

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection: SNI `Some(name)` verified against `ca`, or `None`: no SNI
/// (an IP server name) and any certificate accepted.
fn tls_connect(addr: SocketAddr, sni: Option<&str>, ca: Option<&Ca>) -> Result<Tls, String> {
    tls_connect_with(addr, sni, client_config(ca, rustls::DEFAULT_VERSIONS))
}

/// A client configuration: certificates verified against `ca`, or any accepted.
/// Connections made with one configuration share its session store, so a later
/// one may resume an earlier one's session.
fn client_config(
    ca: Option<&Ca>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap();
    Arc::new(match ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.cert.der().clone()).unwrap();
            b.with_root_certificates(roots).with_no_client_auth()
        }
        None => b
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
    })
}

fn tls_connect_with(
    addr: SocketAddr,
    sni: Option<&str>,
    config: Arc<rustls::ClientConfig>,
) -> Result<Tls, String> {
    let name = match sni {
        Some(n) => ServerName::try_from(n.to_string()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let sock = common::connect(addr);
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| e.to_string())?;
    }
    Ok(tls)
}

fn peer_der(t: &Tls) -> Vec<u8> {
    t.conn.peer_certificates().unwrap()[0].to_vec()
}

/// GET over an established TLS connection; returns (status, headers+body text).
fn tls_get(t: &mut Tls, path: &str) -> (u16, String) {
    t.write_all(format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes())
        .unwrap();
    let mut r = BufReader::new(t);
    let mut head = String::new();
    let mut cl = 0usize;
    loop {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        if l == "\r\n" {
            break;
        }
        if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
            cl = v.trim().parse().unwrap();
        }
        head.push_str(&l);
    }
    let mut body = vec![0u8; cl];
    r.read_exact(&mut body).unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, format!("{head}{}", String::from_utf8_lossy(&body)))
}

struct Setup {
    _dir: TempDir,
    ca: Ca,
    certs: std::path::PathBuf,
    default_der: Vec<u8>,
    a_der: Vec<u8>,
    wild_der: Vec<u8>,
}

fn setup() -> Setup {
    let dir = TempDir::new("tls");
    let ca = ca("lb test CA");
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (d, default_der) = leaf(&ca, &["default.test"]);
    let (a, a_der) = leaf(&ca, &["a.test"]);
    let (w, wild_der) = leaf(&ca, &["*.wild.test"]);
    std::fs::write(certs.join("1-default.pem"), d).unwrap();
    std::fs::write(certs.join("2-a.pem"), a).unwrap();
    std::fs::write(certs.join("3-wild.pem"), w).unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
    Setup {
        _dir: dir,
        ca,
        certs,
        default_der,
        a_der,
        wild_der,
    }
}

fn https_conf(s: &Setup, backend: SocketAddr, extra_bind: &str) -> String {
    format!(
        "defaults\n    mode http\nfrontend f\n    bind 127.0.0.1:0 ssl crt {} {extra_bind}\n    default_backend b\nbackend b\n    server s {backend}\n",
        s.certs.display()
    )
}

#[test]
fn sni_picks_certificate_and_default_serves_the_rest() {
    let s = setup();
    let be = http_server("be");
    let lb = Lb::start(&https_conf(&s, be.addr, ""), 1);
    let fe = lb.addr("frontend", "f");
    let t = tls_connect(fe, Some("a.test"), Some(&s.ca)).unwrap();
    assert_eq!(peer_der(&t), s.a_der);
    let t = tls_connect(fe, Some("x.wild.test"), Some(&s.ca)).unwrap();
    assert_eq!(peer_der(&t), s.wild_der);
    // No SNI, or an unknown name: the first certificate loaded.
    let t = tls_connect(fe, None, None).unwrap();
    assert_eq!(peer_der(&t), s.default_der);
    let t = tls_connect(fe, Some("unknown.test"), None).unwrap();
    assert_eq!(peer_der(&t), s.default_der);
    // And the request goes through, with X-Forwarded-Proto: https.
    let mut t = tls_connect(fe, Some("a.test"), Some(&s.ca)).unwrap();
    let (status, text) = tls_get(&mut t, "/");
    assert_eq!(status, 200);
    assert!(text.contains("x-forwarded-proto: https"), "{text}");
    // Keep-alive over TLS.
    assert_eq!(tls_get(&mut t, "/again").0, 200);
}

#[test]
fn strict_sni_refuses_clients_without_a_match() {
    let s = setup();
    let be = http_server("be");
    let lb = Lb::start(&https_conf(&s, be.addr, "strict-sni"), 1);
    let fe = lb.addr("frontend", "f");
    assert!(tls_connect(fe, None, None).is_err());
    assert!(tls_connect(fe, Some("unknown.test"), None).is_err());
    let mut t = tls_connect(fe, Some("a.test"), Some(&s.ca)).unwrap();
    assert_eq!(tls_get(&mut t, "/").0, 200);
}

#[test]
fn garbage_instead_of_client_hello_costs_only_its_connection() {
    let s = setup();
    let be = http_server("be");
    let lb = Lb::start(&https_conf(&s, be.addr, ""), 1);
    let fe = lb.addr("frontend", "f");
    let mut g = common::connect(fe);
    g.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    // lb closes (maybe after a TLS alert); it never answers in plain HTTP.
    let n = g.read(&mut buf).unwrap_or(0);
    assert!(!String::from_utf8_lossy(&buf[..n]).contains("HTTP/1.1"));
    let mut t = tls_connect(fe, Some("a.test"), Some(&s.ca)).unwrap();
    assert_eq!(tls_get(&mut t, "/").0, 200);
}

#[test]
fn plain_http_is_redirected_to_https() {
    let s = setup();
    let be = http_server("be");
    let c = format!(
        "defaults\n    mode http\nfrontend f\n    bind 127.0.0.1:0\n    bind 127.0.0.1:0 ssl crt {}\n    http-request redirect scheme https code 301 unless ssl_fc\n    default_backend b\nbackend b\n    server s {}\n",
        s.certs.display(),
        be.addr
    );
    let lb = Lb::start(&c, 2);
    let addrs = &lb.listeners[&("frontend".to_string(), "f".to_string())];
    let (plain, tls) = (addrs[0], addrs[1]);
    let mut cl = Client::connect(plain);
    cl.send(b"GET /path?q=1 HTTP/1.1\r\nHost: www.a.test:8080\r\n\r\n");
    let r = cl.read(false).unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some(format!("https://www.a.test:{}/path?q=1", tls.port()).as_str())
    );
    // Over TLS, no redirect.
    let mut t = tls_connect(tls, Some("a.test"), Some(&s.ca)).unwrap();
    assert_eq!(tls_get(&mut t, "/").0, 200);
}

#[test]
fn reload_swaps_certificate_and_keeps_established_connections() {
    let s = setup();
    let be = http_server("be");
    let conf = https_conf(&s, be.addr, "");
    let lb = Lb::start(&conf, 1);
    let fe = lb.addr("frontend", "f");
    let mut old = tls_connect(fe, Some("a.test"), Some(&s.ca)).unwrap();
    assert_eq!(tls_get(&mut old, "/").0, 200);
    // A new certificate for a.test, then SIGHUP.
    let (a2, a2_der) = leaf(&s.ca, &["a.test"]);
    std::fs::write(s.certs.join("2-a.pem"), a2).unwrap();
    lb.reload(&conf);
    lb.wait_log("reloaded:");
    let t = tls_connect(fe, Some("a.test"), Some(&s.ca)).unwrap();
    assert_eq!(peer_der(&t), a2_der);
    assert_ne!(a2_der, s.a_der);
    // The connection made before the reload keeps working.
    assert_eq!(tls_get(&mut old, "/after").0, 200);
    // A broken certificate on reload: the old ones stay.
    std::fs::write(s.certs.join("2-a.pem"), "not a pem").unwrap();
    lb.reload(&conf);
    let line = lb.wait_log("reload failed:");
    assert!(line.contains("2-a.pem"), "{line}");
    let t = tls_connect(fe, Some("a.test"), Some(&s.ca)).unwrap();
    assert_eq!(peer_der(&t), a2_der);
}

/// Whether a second connection with the same client configuration resumes the
/// first one's session. The first makes a request, so that the client reads the
/// TLS 1.3 tickets sent after the handshake.
fn resumes(fe: SocketAddr, config: &Arc<rustls::ClientConfig>) -> bool {
    let mut t = tls_connect_with(fe, Some("a.test"), config.clone()).unwrap();
    assert_eq!(tls_get(&mut t, "/").0, 200);
    let mut t = tls_connect_with(fe, Some("a.test"), config.clone()).unwrap();
    assert_eq!(tls_get(&mut t, "/").0, 200);
    t.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

#[test]
fn sessions_resume_by_ticket_or_cache_and_across_a_reload() {
    let s = setup();
    let be = http_server("be");
    let tls13 = || client_config(Some(&s.ca), &[&rustls::version::TLS13]);
    let tls12 = || client_config(Some(&s.ca), &[&rustls::version::TLS12]);
    // Default: tickets and a cache, TLS 1.3 and 1.2.
    let conf = https_conf(&s, be.addr, "");
    let lb = Lb::start(&conf, 1);
    let fe = lb.addr("frontend", "f");
    assert!(resumes(fe, &tls13()));
    assert!(resumes(fe, &tls12()));
    // A reload that leaves the bind alone keeps the sessions.
    let (c13, c12) = (tls13(), tls12());
    let mut t = tls_connect_with(fe, Some("a.test"), c13.clone()).unwrap();
    assert_eq!(tls_get(&mut t, "/").0, 200);
    let mut t = tls_connect_with(fe, Some("a.test"), c12.clone()).unwrap();
    assert_eq!(tls_get(&mut t, "/").0, 200);
    lb.reload(&format!("global\n    maxconn 5000\n{conf}"));
    lb.wait_log("reloaded:");
    for c in [&c13, &c12] {
        let t = tls_connect_with(fe, Some("a.test"), c.clone()).unwrap();
        assert_eq!(
            t.conn.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        );
    }
    // New certificates: sessions start afresh.
    let (a2, _) = leaf(&s.ca, &["a.test"]);
    std::fs::write(s.certs.join("2-a.pem"), a2).unwrap();
    lb.reload(&conf);
    lb.wait_log("reloaded:");
    let t = tls_connect_with(fe, Some("a.test"), c13.clone()).unwrap();
    assert_eq!(t.conn.handshake_kind(), Some(rustls::HandshakeKind::Full));
    drop(lb);
    // The cache alone, tickets alone, neither: TLS 1.3 and 1.2 alike.
    for (global, bind, resumed) in [
        ("", "no-tls-tickets", true),
        ("    tune.ssl.cachesize 0\n", "", true),
        ("    tune.ssl.cachesize 0\n", "no-tls-tickets", false),
    ] {
        let c = format!("global\n{global}{}", https_conf(&s, be.addr, bind));
        let lb = Lb::start(&c, 1);
        let fe = lb.addr("frontend", "f");
        assert_eq!(resumes(fe, &tls13()), resumed, "{c}");
        assert_eq!(resumes(fe, &tls12()), resumed, "{c}");
    }
}

#[test]
fn lb_check_rejects_bad_material() {
    let s = setup();
    let dir = TempDir::new("tlsbad");
    let (a, _) = leaf(&s.ca, &["a.test"]);
    let (b, _) = leaf(&s.ca, &["b.test"]);
    // a's certificate with b's key.
    let cert_a = &a[..a.find("-----BEGIN PRIVATE KEY").unwrap()];
    let key_b = &b[b.find("-----BEGIN PRIVATE KEY").unwrap()..];
    let bad = dir.path().join("mismatch.pem");
    std::fs::write(&bad, format!("{cert_a}{key_b}")).unwrap();
    let check = |crt: &Path| {
        common::check(&format!(
            "frontend f\n    mode http\n    bind 127.0.0.1:0 ssl crt {}\n",
            crt.display()
        ))
    };
    let (code, _, err, path, _d) = check(&bad);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("{}:3:", path.display()))
            && err.contains("does not match its certificate"),
        "{err}"
    );
    let (code, _, err, _, _d) = check(&dir.path().join("missing.pem"));
    assert_eq!(code, 1);
    assert!(err.contains("cannot read crt"), "{err}");
    let (code, _, err, _, _d) = common::check("frontend f\n    bind 127.0.0.1:0 ssl\n");
    assert_eq!(code, 1);
    assert!(
        err.contains("'ssl' needs 'crt PATH' or 'self-signed NAME...'"),
        "{err}"
    );
}

#[test]
fn tls_to_servers_with_and_without_verification() {
    let s = setup();
    let origin = http_server("origin");
    // The HTTPS server: a second lb terminating TLS for "backend.test".
    let (bcert, _) = leaf(&s.ca, &["backend.test"]);
    let bdir = TempDir::new("tlsbe");
    let bpem = bdir.path().join("backend.pem");
    std::fs::write(&bpem, bcert).unwrap();
    let backend = Lb::start(
        &format!(
            "defaults\n    mode http\nfrontend tls\n    bind 127.0.0.1:0 ssl crt {}\n    default_backend o\nbackend o\n    server o {}\n",
            bpem.display(),
            origin.addr
        ),
        1,
    );
    let baddr = backend.addr("frontend", "tls");
    let ca_file = s.certs.parent().unwrap().join("ca.pem");
    let other = ca("another CA");
    let other_file = bdir.path().join("other-ca.pem");
    std::fs::write(&other_file, other.cert.pem()).unwrap();
    let front = |opts: &str| {
        Lb::start(
            &format!(
                "defaults\n    mode http\n    retries 0\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server s {baddr} {opts}\n"
            ),
            1,
        )
    };
    let ok = front(&format!(
        "ssl verify required ca-file {} sni backend.test",
        ca_file.display()
    ));
    let mut c = Client::connect(ok.addr("frontend", "f"));
    let r = c.get("/");
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("origin GET /"));
    // Pooled TLS connection reused for the next request.
    assert_eq!(c.get("/2").status, 200);
    // Wrong CA: the handshake fails, no server accepted: 503.
    let bad = front(&format!(
        "ssl verify required ca-file {} sni backend.test",
        other_file.display()
    ));
    assert_eq!(
        Client::connect(bad.addr("frontend", "f")).get("/").status,
        503
    );
    // verify none accepts it.
    let none = front("ssl verify none");
    assert_eq!(
        Client::connect(none.addr("frontend", "f")).get("/").status,
        200
    );
    // Health checks over TLS.
    let chk = front(&format!(
        "ssl verify required ca-file {} sni backend.test check check-ssl inter 100ms",
        ca_file.display()
    ));
    chk.wait_log("server b/s is UP");
}

/// An HTTPS server (an lb) with a certificate for each of `names` that refuses
/// any other SNI (strict-sni): which requests it answers shows which name
/// reached it.
struct StrictSniServer {
    _origin: common::servers::HttpServer,
    /// Holds the CA file the front lb reads.
    setup: Setup,
    lb: Lb,
}

impl StrictSniServer {
    fn start(names: &[&str]) -> StrictSniServer {
        let s = setup();
        let origin = http_server("origin");
        let mut crts = String::new();
        for n in names {
            let (cert, _) = leaf(&s.ca, &[n]);
            let p = s.certs.with_file_name(format!("sni-{n}.pem"));
            std::fs::write(&p, cert).unwrap();
            crts.push_str(&format!(" crt {}", p.display()));
        }
        let lb = Lb::start(
            &format!(
                "defaults\n    mode http\nfrontend tls\n    bind 127.0.0.1:0 ssl{crts} strict-sni\n    default_backend o\nbackend o\n    server o {}\n",
                origin.addr
            ),
            1,
        );
        StrictSniServer {
            _origin: origin,
            setup: s,
            lb,
        }
    }

    /// An lb in front, with `routing` in its frontend and one backend per
    /// (name, sni option) reaching this server over verified TLS.
    fn front(&self, routing: &str, backends: &[(&str, &str)]) -> Lb {
        let addr = self.lb.addr("frontend", "tls");
        let mut conf = format!(
            "global\n    nbthread 1\ndefaults\n    mode http\n    retries 0\nfrontend f\n    bind 127.0.0.1:0\n    {routing}\n"
        );
        for (name, sni) in backends {
            conf.push_str(&format!(
                "backend {name}\n    server s {addr} ssl verify required ca-file {} {sni}\n",
                self.setup.certs.with_file_name("ca.pem").display()
            ));
        }
        Lb::start(&conf, 1)
    }
}

/// Idle server connections are shared only by servers that would have made
/// the same handshake: a connection opened with one SNI is not reused for a
/// server at the same address configured with another.
#[test]
fn pooled_tls_connections_keep_to_their_sni() {
    // The HTTPS server knows only a.test and refuses other names (strict-sni).
    let b = StrictSniServer::start(&["a.test"]);
    let front = b.front(
        "acl to_b path_beg /b\n    use_backend b if to_b\n    default_backend a",
        &[("a", "sni a.test"), ("b", "sni b.test")],
    );
    let mut c = Client::connect(front.addr("frontend", "f"));
    assert_eq!(c.get("/a").status, 200);
    // The a.test connection is idle in the pool; b's handshake must still happen,
    // and the server refuses b.test.
    assert_eq!(c.get("/b").status, 503);
    // The 503 closed that client connection; a's pooled connection still serves.
    let mut c = Client::connect(front.addr("frontend", "f"));
    assert_eq!(c.get("/a").status, 200);
}

/// `sni` takes HAProxy's expression forms: `str(NAME)` sends NAME, and
/// `req.hdr(host)` sends each request's Host without its port. The HTTPS
/// server refuses names it has no certificate for (strict-sni), so a 200 shows
/// which name reached it.
#[test]
fn server_sni_expressions_reach_the_server() {
    let b = StrictSniServer::start(&["a.test", "b.test"]);
    let front = b.front(
        "acl by_host path_beg /h\n    use_backend h if by_host\n    default_backend c",
        &[("c", "sni str(b.test)"), ("h", "sni req.hdr(host)")],
    );
    let fe = front.addr("frontend", "f");
    assert_eq!(Client::connect(fe).get("/").status, 200);
    let get = |host: &str| {
        let mut c = Client::connect(fe);
        c.send(format!("GET /h HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        c.read(false).expect("response").status
    };
    assert_eq!(get("a.test:8443"), 200);
    assert_eq!(get("B.test"), 200);
    // A pooled a.test connection is not reused for another name.
    assert_eq!(get("c.test"), 503);
    assert_eq!(get("a.test"), 200);
}

/// A response that ends at close (no length) ends with TLS close_notify, so
/// the client can tell it complete: rustls reports a close without it as an
/// unexpected EOF.
#[test]
fn a_response_ending_at_close_ends_with_close_notify() {
    let s = setup();
    let be = http_server("be");
    let lb = Lb::start(&https_conf(&s, be.addr, ""), 1);
    let mut t = tls_connect(lb.addr("frontend", "f"), Some("a.test"), Some(&s.ca)).unwrap();
    t.write_all(b"GET /close HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    let r = t.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(r.is_ok(), "{r:?} after {text:?}");
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("until the end"),
        "{text}"
    );
}

/// A body ending at close that the server cut (here by a reset): lb closes
/// without close_notify, so the client can tell the body is incomplete.
#[test]
fn a_response_cut_by_the_server_ends_without_close_notify() {
    let s = setup();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let be = l.local_addr().unwrap();
    let (got_tx, got) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let _ = common::read_head(&mut c);
        c.write_all(b"HTTP/1.1 200 OK\r\n\r\npartial").unwrap();
        let _ = got.recv_timeout(common::WAIT);
        socket2::SockRef::from(&c)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
    });
    let lb = Lb::start(&https_conf(&s, be, ""), 1);
    let mut t = tls_connect(lb.addr("frontend", "f"), Some("a.test"), Some(&s.ca)).unwrap();
    t.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    let mut b = [0u8; 256];
    while !all.ends_with(b"partial") {
        let n = t.read(&mut b).unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&all));
        all.extend_from_slice(&b[..n]);
    }
    got_tx.send(()).unwrap();
    let r = t.read_to_end(&mut all);
    assert!(
        r.as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::UnexpectedEof),
        "{r:?}"
    );
}

#[test]
fn curl_with_cacert() {
    let Ok(out) = std::process::Command::new("curl").arg("--version").output() else {
        eprintln!("curl not installed: skipping");
        return;
    };
    assert!(out.status.success());
    let s = setup();
    let be = http_server("be");
    let lb = Lb::start(&https_conf(&s, be.addr, ""), 1);
    let fe = lb.addr("frontend", "f");
    let ca_file = s.certs.parent().unwrap().join("ca.pem");
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&ca_file)
        .arg("--resolve")
        .arg(format!("a.test:{}:127.0.0.1", fe.port()))
        .arg(format!("https://a.test:{}/hello", fe.port()))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.starts_with("be GET /hello"), "{body}");
    assert!(body.contains("x-forwarded-proto: https"), "{body}");
}

/// A WebSocket upgrade behind TLS: the session (on the worker's io_uring where
/// the kernel allows it) becomes a tunnel through rustls both ways, and a large
/// HTTPS response arrives whole before it.
#[test]
fn websocket_upgrade_and_large_response_over_tls() {
    let s = setup();
    let a = http_server("a");
    let lb = Lb::start(&https_conf(&s, a.addr, ""), 1);
    let f = lb.addr("frontend", "f");
    let mut t = tls_connect(f, Some("a.test"), Some(&s.ca)).unwrap();
    let (status, text) = tls_get(&mut t, "/big/2000000");
    assert_eq!(status, 200);
    assert_eq!(text.matches('z').count(), 2_000_000);

    let head = common::websocket_upgrade(&mut t, "a.test");
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    for round in 0..3 {
        let msg = format!("frame {round} through TLS and the tunnel");
        t.write_all(msg.as_bytes()).unwrap();
        let mut echo = vec![0u8; msg.len()];
        t.read_exact(&mut echo).unwrap();
        assert_eq!(echo, msg.as_bytes());
    }
}

/// A WebSocket over HTTPS whose client half-closes (close_notify) and then
/// stops reading while the server keeps sending: the write that cannot go on
/// times out and the tunnel ends, closing the server connection. (Once one
/// direction had ended, nothing timed the other's writes: the session held
/// both connections for good.)
#[test]
fn a_tls_tunnel_whose_client_stops_reading_ends_at_the_timeout() {
    let s = setup();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = l.local_addr().unwrap();
    let (closed, gone) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let _ = common::read_head(&mut c);
        let _ = c.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        let chunk = vec![b'w'; 64 << 10];
        while c.write_all(&chunk).is_ok() {}
        let _ = closed.send(());
    });
    let conf = https_conf(&s, server, "").replace(
        "mode http\n",
        "mode http\n    timeout client 1s\n    timeout server 1s\n",
    );
    let lb = Lb::start(&conf, 1);
    let mut t = tls_connect(lb.addr("frontend", "f"), Some("a.test"), Some(&s.ca)).unwrap();
    let head = common::websocket_upgrade(&mut t, "a.test");
    assert!(head.starts_with(b"HTTP/1.1 101"));
    t.conn.send_close_notify();
    while t.conn.wants_write() {
        t.conn.write_tls(&mut t.sock).unwrap();
    }
    // The client keeps its connection open and reads nothing more.
    gone.recv_timeout(common::WAIT)
        .expect("the server connection was closed");
    drop(t);
}

fn idle_sessions(lb: &Lb) -> f64 {
    let text = Client::connect(lb.addr("admin", "admin"))
        .get("/metrics")
        .text();
    text.lines()
        .find(|l| l.starts_with("lb_frontend_idle_sessions{") && l.contains(r#"frontend="f""#))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(-1.0)
}

/// Idle TLS keep-alive connections give their read buffers back, as plain ones do,
/// and serve their next request as before. Prints lb's RSS per connection (README).
#[test]
fn idle_tls_connections_release_their_buffers() {
    const N: usize = 200;
    let s = setup();
    let be = http_server("be");
    let conf = format!(
        "global\n    nbthread 1\n    admin 127.0.0.1:0\n{}",
        https_conf(&s, be.addr, "").replace(
            "    default_backend b\n",
            "    timeout http-keep-alive 30s\n    default_backend b\n"
        )
    );
    let lb = Lb::start(&conf, 2);
    let fe = lb.addr("frontend", "f");
    let pid = lb.child.id();
    let config = client_config(Some(&s.ca), rustls::DEFAULT_VERSIONS);
    for _ in 0..20 {
        let mut t = tls_connect_with(fe, Some("a.test"), config.clone()).unwrap();
        assert_eq!(tls_get(&mut t, "/").0, 200);
    }
    let base = common::rss_kib(pid);
    let mut idle: Vec<Tls> = (0..N)
        .map(|_| {
            let mut t = tls_connect_with(fe, Some("a.test"), config.clone()).unwrap();
            assert_eq!(tls_get(&mut t, "/").0, 200);
            t
        })
        .collect();
    let busy = common::rss_kib(pid);
    common::eventually("idle TLS connections release their buffers", || {
        (idle_sessions(&lb) == N as f64).then_some(())
    });
    // N more, once the first N have released theirs: they live on that memory.
    idle.extend((0..N).map(|_| {
        let mut t = tls_connect_with(fe, Some("a.test"), config.clone()).unwrap();
        assert_eq!(tls_get(&mut t, "/").0, 200);
        t
    }));
    let more = common::rss_kib(pid);
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 * 1024.0 / N as f64;
    eprintln!(
        "lb RSS: {base} KiB base, +{N} idle TLS connections: {busy} KiB ({:.0} B each), {N} more after the first released their buffers: {more} KiB ({:.0} B each)",
        per(base, busy),
        per(busy, more)
    );
    // RSS is printed, not asserted: it depends on the machine and allocator
    // (benches/memory.sh compares it with HAProxy). The gauge above is the check.
    // Every one of them still serves its next request.
    for t in idle.iter_mut() {
        assert_eq!(tls_get(t, "/again").0, 200);
    }
}

#[test]
fn a_self_signed_certificate_survives_a_reload() {
    let be = http_server("be");
    let conf = format!(
        "defaults\n    mode http\nfrontend f\n    bind 127.0.0.1:0 ssl self-signed a.test\n    default_backend b\nbackend b\n    server s {}\n",
        be.addr
    );
    let lb = Lb::start(&conf, 1);
    let fe = lb.addr("frontend", "f");
    let before = peer_der(&tls_connect(fe, Some("a.test"), None).unwrap());
    lb.reload(&conf);
    assert!(lb.wait_log("reloaded:").contains("0 changes"));
    assert_eq!(
        peer_der(&tls_connect(fe, Some("a.test"), None).unwrap()),
        before
    );
    // Other names: another certificate.
    lb.reload(&conf.replace("self-signed a.test", "self-signed b.test"));
    lb.wait_log("reloaded:");
    assert_ne!(
        peer_der(&tls_connect(fe, Some("b.test"), None).unwrap()),
        before
    );
}

/// The default data path behind a TLS frontend (its server connections go
/// through the worker's ring) answers sequential keep-alive requests without
/// waiting: 200 in well under 3 s, where a ring whose wake-ups stall would
/// take tens of ms each.
#[test]
fn sequential_keep_alive_requests_over_tls_do_not_wait() {
    let s = setup();
    let be = http_server("be");
    let lb = Lb::start(&https_conf(&s, be.addr, ""), 1);
    let mut t = tls_connect(lb.addr("frontend", "f"), Some("a.test"), Some(&s.ca)).unwrap();
    let started = std::time::Instant::now();
    for i in 0..200 {
        assert_eq!(tls_get(&mut t, "/").0, 200, "request {i}");
    }
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(3),
        "200 sequential keep-alive requests over TLS took {took:?}"
    );
}
