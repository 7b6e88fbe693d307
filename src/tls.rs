//! rustls (ring provider) configurations: an SNI certificate store per `bind ... ssl`,
//! a client configuration per `server ... ssl`. Rebuilt with each snapshot, so a
//! reload serves new handshakes with new certificates and leaves old sessions alone.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{
    ClientHello, NoServerSessionStorage, ResolvesServerCert, ServerSessionMemoryCache,
};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};

use crate::conf::tls::{BindTls, ServerTls};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Picks a certificate by SNI: exact names first, then wildcards (`*.example.com`
/// matches one label), then the first certificate loaded, unless `strict-sni`.
/// A name may have several certificates (RSA and ECDSA): as HAProxy, ECDSA
/// when the client's signature schemes allow it, else one the client can check.
#[derive(Debug)]
struct SniStore {
    exact: HashMap<String, Vec<Arc<CertifiedKey>>>,
    wildcard: HashMap<String, Vec<Arc<CertifiedKey>>>,
    default: Vec<Arc<CertifiedKey>>,
}

impl SniStore {
    fn new(t: &BindTls) -> SniStore {
        let mut exact: HashMap<String, Vec<Arc<CertifiedKey>>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<Arc<CertifiedKey>>> = HashMap::new();
        for c in &t.certs {
            for n in &c.names {
                match n.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_string()).or_default(),
                    None => exact.entry(n.clone()).or_default(),
                }
                .push(c.key.clone());
            }
        }
        // The default: the first certificate, and those serving the same names.
        let default = match (t.strict_sni, t.certs.first()) {
            (false, Some(first)) => t
                .certs
                .iter()
                .filter(|c| c.names == first.names)
                .map(|c| c.key.clone())
                .collect(),
            _ => Vec::new(),
        };
        SniStore {
            exact,
            wildcard,
            default,
        }
    }

    fn candidates(&self, sni: Option<&str>) -> &[Arc<CertifiedKey>] {
        let Some(name) = sni else {
            return &self.default;
        };
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return k;
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return k;
            }
        }
        &self.default
    }

    fn pick(&self, sni: Option<&str>, schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        let c = self.candidates(sni);
        if c.len() < 2 {
            return c.first().cloned();
        }
        let fits = |k: &&Arc<CertifiedKey>| k.key.choose_scheme(schemes).is_some();
        c.iter()
            .filter(fits)
            .find(|k| k.key.algorithm() == rustls::SignatureAlgorithm::ECDSA)
            .or_else(|| c.iter().find(fits))
            .or(c.first())
            .cloned()
    }

    #[cfg(test)]
    fn lookup(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.candidates(sni).first().cloned()
    }
}

impl ResolvesServerCert for SniStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name(), hello.signature_schemes())
    }
}

/// The acceptor configuration of one TLS bind: TLS 1.2 and 1.3, rustls's
/// default cipher suites, the SNI store, ALPN as configured, and session
/// resumption as HAProxy does it: stateless tickets (unless `no-tls-tickets`)
/// and a cache of `cache_size` sessions.
///
/// Resumption matters as soon as clients reconnect: a resumed handshake skips
/// the certificate signature (lb) and its verification (client). rustls's own
/// default, a 256-session cache and no tickets, thrashes once more than ~128
/// clients reconnect in turn (each connection gets two TLS 1.3 tickets), and
/// every reconnection then pays a full handshake.
///
/// `keep`: the same bind's configuration before a reload that left its TLS
/// settings and the cache size alone; its cache and ticket keys carry over so
/// clients resume across the reload.
pub fn server_config(
    t: &BindTls,
    cache_size: usize,
    keep: Option<&ServerConfig>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let b = ServerConfig::builder_with_provider(provider()).with_protocol_versions(VERSIONS)?;
    let b = match &t.client_auth {
        None => b.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for r in &ca.roots {
                roots.add(r.clone())?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .with_crls(ca.crls.clone());
            let v = if ca.required {
                v
            } else {
                v.allow_unauthenticated()
            };
            b.with_client_cert_verifier(
                v.build()
                    .map_err(|e| rustls::Error::General(format!("client certificates: {e}")))?,
            )
        }
    };
    let mut c = b.with_cert_resolver(Arc::new(SniStore::new(t)));
    c.alpn_protocols = t.alpn.clone();
    if let Some(old) = keep {
        c.session_storage = old.session_storage.clone();
        c.ticketer = old.ticketer.clone();
    } else {
        c.session_storage = if cache_size == 0 {
            Arc::new(NoServerSessionStorage {})
        } else {
            ServerSessionMemoryCache::new(cache_size)
        };
        if t.tickets {
            c.ticketer = rustls::crypto::ring::Ticketer::new()?;
        }
    }
    Ok(Arc::new(c))
}

/// The certificate a TLS client presented (verified at the handshake), as
/// the `ssl_c_*` fetches show it.
pub fn client_cert(io: &crate::io::Io) -> Option<Arc<crate::conf::sample::ClientCert>> {
    let crate::io::Io::TlsIn(s) = io else {
        return None;
    };
    let leaf = s.get_ref().1.peer_certificates()?.first()?;
    let (_, c) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let v = c.validity();
    let time = |t: &x509_parser::time::ASN1Time| {
        let d = t.to_datetime();
        format!(
            "{:02}{:02}{:02}{:02}{:02}{:02}Z",
            d.year() % 100,
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second()
        )
    };
    Some(Arc::new(crate::conf::sample::ClientCert {
        s_dn: one_line(c.subject()),
        i_dn: one_line(c.issuer()),
        serial: c.raw_serial().to_vec(),
        not_before: time(&v.not_before),
        not_after: time(&v.not_after),
    }))
}

/// A distinguished name in OpenSSL's one-line form, as HAProxy prints it:
/// `/C=FR/O=Example/CN=alice`.
fn one_line(n: &x509_parser::x509::X509Name<'_>) -> String {
    let reg = x509_parser::objects::oid_registry();
    let mut out = String::new();
    for a in n.iter_attributes() {
        let key = x509_parser::objects::oid2abbrev(a.attr_type(), reg)
            .map(str::to_string)
            .unwrap_or_else(|_| a.attr_type().to_id_string());
        out.push('/');
        out.push_str(&key);
        out.push('=');
        out.push_str(a.as_str().unwrap_or("?"));
    }
    out
}

/// How lb connects to one TLS server: its configuration and the name to send.
#[derive(Debug, Clone)]
pub struct Connector {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
    /// What a pooled connection was made with (verification, CA, SNI): two
    /// servers at one address share idle connections only when it is equal.
    pub identity: u64,
    /// `sni req.hdr(host)`: see `for_host`.
    pub sni_from_request: bool,
}

impl Connector {
    /// The connector for one request under `sni req.hdr(host)`: its Host
    /// (port stripped) as SNI and verified name, pooled apart from other
    /// names. `None` keeps the configured name: no such option, or a Host
    /// that is not a server name.
    pub fn for_host(&self, host: Option<&[u8]>) -> Option<Connector> {
        if !self.sni_from_request {
            return None;
        }
        let host = std::str::from_utf8(crate::conf::acl::strip_port(host?))
            .ok()?
            .to_ascii_lowercase();
        let identity = {
            use std::hash::BuildHasher;
            // Keyed per process: clients choose these names, so they must not
            // be able to work out colliding ones offline.
            static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
                std::sync::OnceLock::new();
            KEY.get_or_init(std::collections::hash_map::RandomState::new)
                .hash_one((self.identity, &host))
        };
        let name = ServerName::try_from(host).ok()?;
        Some(Connector {
            config: self.config.clone(),
            name,
            identity,
            sni_from_request: true,
        })
    }
}

pub fn connector(t: &ServerTls, host: &str) -> Result<Connector, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| e.to_string())?;
    let mut config = if t.verify {
        let mut roots = rustls::RootCertStore::empty();
        for c in &t.ca {
            roots
                .add(c.clone())
                .map_err(|e| format!("bad CA certificate: {e}"))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
            .with_no_client_auth()
    };
    config.alpn_protocols = t.alpn.clone();
    let sni = t.sni.clone().unwrap_or_else(|| host.to_string());
    let name = ServerName::try_from(sni.clone())
        .map_err(|_| format!("invalid TLS server name '{sni}'"))?;
    let identity = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (t.verify, &sni, &t.alpn).hash(&mut h);
        for c in &t.ca {
            c.as_ref().hash(&mut h);
        }
        h.finish()
    };
    Ok(Connector {
        config: Arc::new(config),
        name,
        identity,
        sni_from_request: t.sni_from_request,
    })
}

/// `verify none`: accept any certificate, still checking the handshake signatures.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::tls::self_signed;

    #[test]
    fn sni_picks_exact_wildcard_then_default() {
        let a = self_signed(&["a.example".into()]).unwrap();
        let w = self_signed(&["*.wild.example".into()]).unwrap();
        let t = BindTls {
            certs: vec![a.clone(), w.clone()],
            strict_sni: false,
            alpn: vec![],
            tickets: true,
            client_auth: None,
        };
        let s = SniStore::new(&t);
        let is = |k: Option<Arc<CertifiedKey>>, c: &crate::conf::tls::CertKey| {
            k.is_some_and(|k| k.cert == c.key.cert)
        };
        assert!(is(s.lookup(Some("A.example")), &a));
        assert!(is(s.lookup(Some("x.wild.example")), &w));
        assert!(
            is(s.lookup(Some("deep.x.wild.example")), &a),
            "wildcards match one label"
        );
        assert!(is(s.lookup(None), &a));
        assert!(is(s.lookup(Some("other")), &a));
        let strict = SniStore::new(&BindTls {
            strict_sni: true,
            ..t
        });
        assert!(strict.lookup(None).is_none());
        assert!(strict.lookup(Some("other")).is_none());
        assert!(strict.lookup(Some("a.example")).is_some());
    }
}
