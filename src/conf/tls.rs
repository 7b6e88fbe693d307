//! TLS material the conf names: certificates loaded and checked at parse time, so
//! `lb check` reports a missing file or a mismatched key, and warns of an expired certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// One certificate chain with its key, and the names it serves.
#[derive(Clone, Debug)]
pub struct CertKey {
    /// Where it came from (a path, or `self-signed`), for logs.
    pub source: String,
    /// DNS names from the subject alternative names (or the CN), lower case;
    /// `*.example.com` for wildcards.
    pub names: Vec<String>,
    pub key: Arc<CertifiedKey>,
    /// Served anyway, as HAProxy does, with this warning (expired, not yet valid).
    pub warning: Option<String>,
}

impl PartialEq for CertKey {
    fn eq(&self, o: &CertKey) -> bool {
        self.source == o.source && self.key.cert == o.key.cert
    }
}

/// TLS settings of one `bind ... ssl` line.
#[derive(Clone, Debug, PartialEq)]
pub struct BindTls {
    /// In load order; the first is the default for clients without SNI.
    pub certs: Vec<CertKey>,
    /// Refuse clients whose SNI matches no certificate (or that send none).
    pub strict_sni: bool,
    /// ALPN protocols offered; empty = none.
    pub alpn: Vec<Vec<u8>>,
    /// Stateless session tickets for resumption (`no-tls-tickets` turns them off:
    /// resumption then goes through the session cache alone).
    pub tickets: bool,
    /// HAProxy `verify required|optional ca-file F [crl-file F]`: client
    /// certificates checked against these roots.
    pub client_auth: Option<ClientAuth>,
}

/// Client certificates a bind asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientAuth {
    /// `verify required`: no certificate, no handshake; `optional`: asked for,
    /// and checked when given.
    pub required: bool,
    pub roots: Vec<CertificateDer<'static>>,
    pub crls: Vec<rustls::pki_types::CertificateRevocationListDer<'static>>,
}

/// `crl-file PATH`: PEM revocation lists.
pub fn load_crl(
    path: &str,
) -> Result<Vec<rustls::pki_types::CertificateRevocationListDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read crl-file '{path}': {e}"))?;
    let crls: Vec<_> = rustls::pki_types::CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("'{path}': bad PEM CRL: {e}"))?;
    if crls.is_empty() {
        return Err(format!("crl-file '{path}' holds no CRL"));
    }
    Ok(crls)
}

/// TLS from lb to one server (`server ... ssl`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    /// Verify the server's certificate against `ca`.
    pub verify: bool,
    pub ca: Vec<CertificateDer<'static>>,
    /// Name sent as SNI and verified; default: the host as written.
    pub sni: Option<String>,
    /// `sni req.hdr(host)`: the request's Host (port stripped) is sent and
    /// verified instead; `sni` (or the host as written) serves requests
    /// without a usable Host and health checks.
    pub sni_from_request: bool,
    /// `alpn LIST`: ALPN protocols offered, in order; `h2` makes lb speak
    /// HTTP/2 to the server. Once the conf is read, never empty: `h2` under
    /// `proto h2`, else `http/1.1`.
    pub alpn: Vec<Vec<u8>>,
}

impl ServerTls {
    /// HTTP/2 is negotiated: the server's ALPN list is `h2`.
    pub fn h2(&self) -> bool {
        self.alpn.iter().any(|p| p == b"h2")
    }
}

impl Default for ServerTls {
    /// `ssl` alone: verification on, as HAProxy's `verify required`.
    fn default() -> Self {
        ServerTls {
            verify: true,
            ca: Vec::new(),
            sni: None,
            sni_from_request: false,
            alpn: Vec::new(),
        }
    }
}

/// ALPN protocols lb can serve in mode http (`h2`: the HTTP/2 driver, the
/// others HTTP/1); another one would be negotiated and then not spoken.
pub const HTTP_ALPN: &[&str] = &["h2", "http/1.1", "http/1.0"];

/// `sni EXPR` of a server: HAProxy's sample expression forms `str(NAME)`,
/// `req.hdr(host)` and `hdr(host)`, or a plain DNS name. Returns
/// (constant name, from the request).
pub fn parse_sni(expr: &str) -> Result<(Option<String>, bool), String> {
    let lower = expr.to_ascii_lowercase();
    if lower == "req.hdr(host)" || lower == "hdr(host)" {
        return Ok((None, true));
    }
    let name = match expr.strip_prefix("str(").and_then(|r| r.strip_suffix(')')) {
        Some(n) => n,
        None if expr.contains(['(', ')', ',']) => {
            return Err(format!(
                "'sni {expr}': unsupported expression (lb takes str(NAME), req.hdr(host), hdr(host) or a DNS name)"
            ))
        }
        None => expr,
    };
    // Host names have no '_' (HAProxy fetches such as `ssl_fc_sni` do).
    if rustls::pki_types::DnsName::try_from(name).is_err()
        || name.parse::<std::net::IpAddr>().is_ok()
        || name.contains('_')
    {
        return Err(format!("'sni': '{name}' is not a valid DNS name"));
    }
    Ok((Some(name.to_string()), false))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// `crt PATH`: a PEM file holding a chain and its key, or a directory of such
/// files (`*.pem`, in name order).
pub fn load_crt(path: &str) -> Result<Vec<CertKey>, String> {
    let p = Path::new(path);
    let meta = std::fs::metadata(p).map_err(|e| format!("cannot read crt '{path}': {e}"))?;
    if !meta.is_dir() {
        return Ok(vec![load_pem(p)?]);
    }
    let mut files: Vec<_> = std::fs::read_dir(p)
        .map_err(|e| format!("cannot read crt directory '{path}': {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|f| f.extension().is_some_and(|x| x == "pem"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("crt directory '{path}' holds no .pem file"));
    }
    files.iter().map(|f| load_pem(f)).collect()
}

fn load_pem(p: &Path) -> Result<CertKey, String> {
    let shown = p.display();
    let pem = std::fs::read(p).map_err(|e| format!("cannot read crt '{shown}': {e}"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("'{shown}': bad PEM certificate: {e}"))?;
    if chain.is_empty() {
        return Err(format!("'{shown}' holds no certificate"));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| {
        format!("'{shown}' holds no private key (the PEM needs the chain and its key)")
    })?;
    let mut ck = certified(shown.to_string(), chain, key)?;
    // HAProxy staples `site.pem.ocsp` (a DER OCSP response) when it is there.
    let mut ocsp = p.as_os_str().to_owned();
    ocsp.push(".ocsp");
    let ocsp = std::path::PathBuf::from(ocsp);
    match std::fs::read(&ocsp) {
        Ok(der) if der.first() == Some(&0x30) => {
            let mut k = (*ck.key).clone();
            k.ocsp = Some(der);
            ck.key = Arc::new(k);
        }
        Ok(_) => return Err(format!("'{}' is not a DER OCSP response", ocsp.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read '{}': {e}", ocsp.display())),
    }
    Ok(ck)
}

fn certified(
    source: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertKey, String> {
    let (names, warning) = leaf_names_and_validity(&source, &chain[0])?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            format!("the key in '{source}' does not match its certificate")
        }
        e => format!("unusable key in '{source}': {e}"),
    })?;
    Ok(CertKey {
        source,
        names,
        key: Arc::new(key),
        warning,
    })
}

/// The leaf's DNS names, and a warning if it is expired or not yet valid
/// (HAProxy serves such a certificate: one stale file must not take every
/// name of a bind down).
fn leaf_names_and_validity(
    source: &str,
    leaf: &CertificateDer<'_>,
) -> Result<(Vec<String>, Option<String>), String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("'{source}': unreadable certificate: {e}"))?;
    let v = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    let mut warning = None;
    if v.not_after < now {
        warning = Some(format!(
            "the certificate in '{source}' expired on {} (served anyway, as HAProxy does)",
            v.not_after
        ));
    }
    if v.not_before > now {
        warning = Some(format!(
            "the certificate in '{source}' is not valid before {} (served anyway, as HAProxy does)",
            v.not_before
        ));
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
        {
            names.push(cn.to_ascii_lowercase());
        }
    }
    Ok((names, warning))
}

/// `self-signed NAME...`: an in-memory certificate made at load time.
///
/// The same names get the same certificate for the life of the process (up to
/// half its validity), so a reload keeps it: clients that accepted it once keep
/// connecting, and their TLS sessions stay resumable.
pub fn self_signed(names: &[String]) -> Result<CertKey, String> {
    type Made = std::collections::HashMap<Vec<String>, (std::time::Instant, CertKey)>;
    static MADE: std::sync::Mutex<Option<Made>> = std::sync::Mutex::new(None);
    const REUSE_FOR: std::time::Duration = std::time::Duration::from_secs(182 * 24 * 3600);
    let mut made = MADE.lock().unwrap_or_else(|p| p.into_inner());
    let made = made.get_or_insert_with(Made::new);
    if let Some((at, c)) = made.get(names) {
        if at.elapsed() < REUSE_FOR {
            return Ok(c.clone());
        }
    }
    let c = make_self_signed(names)?;
    // Bounded (a conf names a few; a fuzzer, endless ones).
    if made.len() >= 64 {
        made.clear();
    }
    made.insert(names.to_vec(), (std::time::Instant::now(), c.clone()));
    Ok(c)
}

fn make_self_signed(names: &[String]) -> Result<CertKey, String> {
    let bad = |e: rcgen::Error| format!("cannot make a self-signed certificate: {e}");
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(bad)?;
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.clone());
    }
    // A year, like a real certificate (rcgen's default runs to the year 4096).
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let key_pair = rcgen::KeyPair::generate().map_err(bad)?;
    let cert = params.self_signed(&key_pair).map_err(bad)?;
    let chain = vec![cert.der().clone()];
    let key = PrivateKeyDer::try_from(key_pair.serialize_der())
        .map_err(|e| format!("self-signed key: {e}"))?;
    certified(format!("self-signed {}", names.join(" ")), chain, key)
}

/// `ca-file PATH`: PEM certificates to trust for `verify required`.
pub fn load_ca(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read ca-file '{path}': {e}"))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("'{path}': bad PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err(format!("ca-file '{path}' holds no certificate"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, data: &[u8]) -> String {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        p.display().to_string()
    }

    fn tmp() -> crate::testutil::TempDir {
        crate::testutil::TempDir::new("tls")
    }

    fn pem_pair(names: &[&str]) -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        (ck.cert.pem(), ck.key_pair.serialize_pem())
    }

    #[test]
    fn loads_a_pem_with_chain_and_key() {
        let d = tmp();
        let (c, k) = pem_pair(&["www.example.com", "*.example.org"]);
        let f = write(&d, "a.pem", format!("{c}{k}").as_bytes());
        let ck = load_crt(&f).unwrap();
        assert_eq!(ck[0].names, ["www.example.com", "*.example.org"]);
        // A directory loads every .pem in name order.
        let (c2, k2) = pem_pair(&["b.example.com"]);
        write(&d, "b.pem", format!("{c2}{k2}").as_bytes());
        write(&d, "notes.txt", b"ignored");
        let all = load_crt(&d.display().to_string()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].names, ["b.example.com"]);
    }

    #[test]
    fn rejects_bad_material() {
        let d = tmp();
        assert!(load_crt("/nonexistent/x.pem")
            .unwrap_err()
            .contains("cannot read crt"));
        let (c, _) = pem_pair(&["a"]);
        let (_, k2) = pem_pair(&["b"]);
        let f = write(&d, "nokey.pem", c.as_bytes());
        assert!(load_crt(&f).unwrap_err().contains("holds no private key"));
        let f = write(&d, "mismatch.pem", format!("{c}{k2}").as_bytes());
        assert!(
            load_crt(&f)
                .unwrap_err()
                .contains("does not match its certificate"),
            "{:?}",
            load_crt(&f).err()
        );
        let f = write(&d, "empty.pem", b"");
        assert!(load_crt(&f).unwrap_err().contains("holds no certificate"));
        let e = tmp();
        assert!(load_crt(&e.display().to_string())
            .unwrap_err()
            .contains("no .pem"));
    }

    #[test]
    fn serves_expired_with_a_warning() {
        let d = tmp();
        let mut params = rcgen::CertificateParams::new(vec!["old.example".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let f = write(
            &d,
            "old.pem",
            format!("{}{}", cert.pem(), key.serialize_pem()).as_bytes(),
        );
        let c = load_crt(&f).unwrap();
        assert!(c[0].warning.as_deref().unwrap().contains("expired on"));
    }

    #[test]
    fn sni_forms() {
        let name = |n: &str| Ok((Some(n.to_string()), false));
        for (expr, want) in [
            ("str(api.example.com)", name("api.example.com")),
            ("api.example.com", name("api.example.com")),
            ("req.hdr(host)", Ok((None, true))),
            ("hdr(Host)", Ok((None, true))),
        ] {
            assert_eq!(parse_sni(expr), want, "{expr}");
        }
        for (expr, why) in [
            ("req.hdr(x-name)", "unsupported expression"),
            // A fetch lb does not have, not a host name.
            ("ssl_fc_sni", "not a valid DNS name"),
            ("str(bad name)", "not a valid DNS name"),
            ("str(10.0.0.1)", "not a valid DNS name"),
        ] {
            let e = parse_sni(expr).unwrap_err();
            assert!(e.contains(why), "{expr}: {e}");
        }
    }

    #[test]
    fn self_signed_names() {
        let ck = self_signed(&["www.foobar.com".into(), "localhost".into()]).unwrap();
        assert_eq!(ck.names, ["www.foobar.com", "localhost"]);
    }
}
