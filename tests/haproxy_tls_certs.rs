//! Certificates as HAProxy users lay them out: `site.pem.ocsp` next to a
//! certificate is stapled (`openssl s_client -status` sees it), and an RSA and
//! an ECDSA certificate for one name in one `crt` directory are chosen by what
//! the client supports (ECDSA when it can). HAProxy 2.6 serves the same
//! directory in the same test and answers the same.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{haproxy, servers, Lb};

fn sh(dir: &Path, script: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA, RSA and ECDSA leaves for site.test in `crt/`, and a "good" OCSP
/// response for the RSA one in `crt/rsa.pem.ocsp`.
fn material(dir: &Path) -> bool {
    sh(
        dir,
        r#"set -e
mkdir -p crt
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 -subj /CN=TestCA
printf 'subjectAltName=DNS:site.test\n' > san.ext
openssl req -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.csr -subj /CN=site.test
openssl x509 -req -in rsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out rsa.crt -days 30 -extfile san.ext
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ec.key -out ec.csr -subj /CN=site.test
openssl x509 -req -in ec.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out ec.crt -days 30 -extfile san.ext
cat rsa.crt ca.pem rsa.key > crt/rsa.pem
cat ec.crt ca.pem ec.key > crt/ecdsa.pem
serial=$(openssl x509 -in rsa.crt -noout -serial | cut -d= -f2)
printf 'V\t301231235959Z\t\t%s\tunknown\t/CN=site.test\n' "$serial" > index.txt
openssl ocsp -issuer ca.pem -cert rsa.crt -reqout req.der -no_nonce
openssl ocsp -index index.txt -rsigner ca.pem -rkey ca.key -CA ca.pem -reqin req.der -respout crt/rsa.pem.ocsp -ndays 2
"#,
    )
}

/// `openssl s_client -status` output for one handshake, offering `sigalgs`.
fn handshake(addr: SocketAddr, sigalgs: Option<&str>) -> String {
    let mut c = Command::new("timeout");
    c.args(["10", "openssl", "s_client", "-connect", &addr.to_string()])
        .args(["-servername", "site.test", "-status"]);
    if let Some(s) = sigalgs {
        c.args(["-sigalgs", s]);
    }
    let out = c.stdin(Stdio::null()).output().expect("run openssl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (key kind seen, OCSP stapled) for an RSA-only, an ECDSA-only and an
/// any-key client.
fn observe(addr: SocketAddr) -> Vec<(String, bool)> {
    [
        Some("rsa_pss_rsae_sha256:RSA+SHA256"),
        Some("ECDSA+SHA256"),
        None,
    ]
    .into_iter()
    .map(|s| {
        let out = handshake(addr, s);
        let kind = if out.contains("Server public key is 2048 bit") {
            "RSA"
        } else if out.contains("Server public key is 256 bit") {
            "ECDSA"
        } else {
            "none"
        };
        let stapled = out.contains("Cert Status: good");
        assert!(
            stapled || out.contains("no response sent"),
            "no OCSP section in:\n{out}"
        );
        (kind.to_string(), stapled)
    })
    .collect()
}

#[test]
fn ocsp_stapling_and_rsa_or_ecdsa_by_client_as_haproxy() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not installed: skipping");
        return;
    }
    let dir = common::TempDir::new("tlscerts");
    if !material(dir.path()) {
        eprintln!("openssl could not make the test certificates: skipping");
        return;
    }
    let crt = dir.path().join("crt");
    let backend = servers::tagged_echo("A");
    let conf = |bind: &str| {
        format!(
            "defaults\n mode tcp\n timeout connect 2s\n timeout server 10s\n timeout client 10s\n\n\
             frontend ft\n bind {bind} ssl crt {}\n default_backend bk\n\n\
             backend bk\n server A {backend}\n",
            crt.display()
        )
    };
    let want = vec![
        ("RSA".to_string(), true),
        ("ECDSA".to_string(), false),
        ("ECDSA".to_string(), false),
    ];
    let lb = Lb::start(&conf("127.0.0.1:0"), 1);
    assert_eq!(observe(lb.addr("frontend", "ft")), want, "lb");

    let port = haproxy::free_port();
    let haddr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let Some(_h) = haproxy::start(&conf(&haddr.to_string()), haddr) else {
        return;
    };
    assert_eq!(observe(haddr), want, "HAProxy");
}

#[test]
fn check_refuses_a_bad_ocsp_file() {
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("openssl not installed: skipping");
        return;
    }
    let dir = common::TempDir::new("tlsocsp");
    if !material(dir.path()) {
        return;
    }
    std::fs::write(dir.path().join("crt/ecdsa.pem.ocsp"), b"not der").unwrap();
    let text = format!(
        "defaults\n mode tcp\n timeout connect 1s\n timeout server 1s\n timeout client 1s\n\n\
         frontend ft\n bind 127.0.0.1:0 ssl crt {}\n default_backend bk\n\n\
         backend bk\n server A 127.0.0.1:1\n",
        dir.path().join("crt").display()
    );
    let (code, _out, err, _p, _d) = common::check(&text);
    assert_ne!(code, 0);
    assert!(
        err.contains("ecdsa.pem.ocsp") && err.contains("OCSP"),
        "{err}"
    );
}
