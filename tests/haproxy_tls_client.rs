//! HAProxy TLS keywords on binds: client certificates (`verify required
//! ca-file F`, the `ssl_c_*` fetches), `crt-list` with SNI filters, and an
//! expired certificate served with a warning. Compared with HAProxy 2.6.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use common::servers::http_server;
use common::{haproxy, write_conf, Lb};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

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

/// A leaf signed by `ca`: (PEM chain + key, DER, key DER).
fn leaf(ca: &Ca, names: &[&str], org_cn: Option<(&str, &str)>) -> (String, Vec<u8>, Vec<u8>) {
    let mut p =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    if let Some((o, cn)) = org_cn {
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::OrganizationName, o);
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (
        format!("{}{}", cert.pem(), key.serialize_pem()),
        cert.der().to_vec(),
        key.serialize_der(),
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

/// A GET over TLS with SNI `sni`, presenting `client` (cert DER, key DER) if
/// given: the response text, and the server's leaf; `Err` when the
/// handshake or the exchange fails.
fn get(
    addr: SocketAddr,
    sni: &str,
    client: Option<(&[u8], &[u8])>,
) -> Result<(String, Vec<u8>), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)));
    let config = match client {
        Some((c, k)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from(c.to_vec())],
                PrivateKeyDer::try_from(k.to_vec()).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock: TcpStream = common::connect(addr);
    let mut t = rustls::StreamOwned::new(conn, sock);
    t.write_all(format!("GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    let mut r = BufReader::new(&mut t);
    loop {
        let mut l = String::new();
        match r.read_line(&mut l) {
            Ok(0) => break,
            Ok(_) => out.push_str(&l),
            Err(e) if out.is_empty() => return Err(e.to_string()),
            Err(_) => break,
        }
    }
    let _ = r.read_to_end(&mut Vec::new());
    if out.is_empty() {
        return Err("closed".into());
    }
    let leaf = t
        .conn
        .peer_certificates()
        .map_or(Vec::new(), |c| c[0].to_vec());
    Ok((out.to_ascii_lowercase(), leaf))
}

fn conf(bind: &str, dir: &std::path::Path, s: SocketAddr) -> String {
    let d = dir.display();
    format!(
        "defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n\
         frontend f\n    bind {bind} ssl crt-list {d}/list.txt verify required ca-file {d}/ca.pem\n\
         \x20   http-request set-header X-SSL-Client-DN %[ssl_c_s_dn]\n\
         \x20   http-request set-header X-SSL-Issuer %[ssl_c_i_dn]\n\
         \x20   http-request set-header X-SSL-Used %[ssl_c_used]\n\
         \x20   http-request set-header X-SSL-Verify %[ssl_c_verify]\n\
         \x20   default_backend b\n\
         backend b\n    server s1 {s}\n"
    )
}

#[test]
fn client_certificates_and_crt_list_as_haproxy() {
    let s = http_server("a");
    let site_ca = ca("Site CA");
    let client_ca = ca("Client CA");
    let (a_pem, a_der, _) = leaf(&site_ca, &["a.test"], None);
    let (b_pem, b_der, _) = leaf(&site_ca, &["b.test"], None);
    let (_, c_der, c_key) = leaf(&client_ca, &[], Some(("Example", "alice")));
    let rogue_ca = ca("Rogue CA");
    let (_, r_der, r_key) = leaf(&rogue_ca, &[], Some(("Evil", "mallory")));
    let (dir, path) = write_conf("");
    std::fs::write(dir.path().join("a.pem"), &a_pem).unwrap();
    std::fs::write(dir.path().join("b.pem"), &b_pem).unwrap();
    std::fs::write(dir.path().join("ca.pem"), client_ca.cert.pem()).unwrap();
    // b.pem also serves other.test, as its crt-list line says.
    std::fs::write(
        dir.path().join("list.txt"),
        format!(
            "# site certificates\n{0}/a.pem\n{0}/b.pem [] b.test other.test\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let dpath = dir.path().to_path_buf();
    std::fs::write(&path, conf("127.0.0.1:0", &dpath, s.addr)).unwrap();
    let lb = Lb::start_path(dir, path, 1, &[]);
    let check = |addr: SocketAddr, who: &str| {
        let (t, leaf) = get(addr, "a.test", Some((&c_der, &c_key)))
            .expect("handshake with a client certificate");
        assert!(t.starts_with("http/1.1 200"), "{who}: {t}");
        assert!(
            t.contains("x-ssl-client-dn: /o=example/cn=alice\n"),
            "{who}: {t}"
        );
        assert!(t.contains("x-ssl-issuer: /cn=client ca\n"), "{who}: {t}");
        assert!(t.contains("x-ssl-used: 1\n"), "{who}: {t}");
        assert!(t.contains("x-ssl-verify: 0\n"), "{who}: {t}");
        assert_eq!(leaf, a_der, "{who}: a.test's certificate");
        let (_, leaf) = get(addr, "other.test", Some((&c_der, &c_key))).unwrap();
        assert_eq!(leaf, b_der, "{who}: crt-list names other.test for b.pem");
        assert!(
            get(addr, "a.test", None).is_err(),
            "{who}: no certificate, no exchange"
        );
        assert!(
            get(addr, "a.test", Some((&r_der, &r_key))).is_err(),
            "{who}: a certificate of another CA is refused"
        );
    };
    check(lb.addr("frontend", "f"), "lb");

    let port = haproxy::free_port();
    let h: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let Some(_h) = haproxy::start(&conf(&h.to_string(), &dpath, s.addr), h) else {
        return;
    };
    check(h, "haproxy");
}

#[test]
fn an_expired_certificate_is_served_with_a_warning() {
    let mut p = rcgen::CertificateParams::new(vec!["old.test".to_string()]).unwrap();
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let old = p.self_signed(&key).unwrap();
    let (dir, path) = write_conf("");
    std::fs::write(
        dir.path().join("old.pem"),
        format!("{}{}", old.pem(), key.serialize_pem()),
    )
    .unwrap();
    let s = http_server("a");
    let text = format!(
        "defaults\n    mode http\n    timeout client 5s\n    timeout server 5s\n    timeout connect 2s\n\
         frontend f\n    bind 127.0.0.1:0 ssl crt {}/old.pem\n    default_backend b\nbackend b\n    server s1 {}\n",
        dir.path().display(),
        s.addr
    );
    std::fs::write(&path, &text).unwrap();
    let out = std::process::Command::new(common::lb_bin())
        .arg("check")
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("expired on"), "{err}");
    let lb = Lb::start_path(dir, path, 1, &[]);
    let (t, leaf) = get(lb.addr("frontend", "f"), "old.test", None).unwrap();
    assert!(t.starts_with("http/1.1 200"), "{t}");
    assert_eq!(leaf, old.der().to_vec());
}
