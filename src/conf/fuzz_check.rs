//! Invariant check for the `conf` fuzz target and `tests/fuzz_seeds.rs`: arbitrary text through the conf parser.

use super::model::parse_conf;

const FILE: &str = "fuzz.conf";

/// Conf parser: never panics; errors come in line order, each naming the file and a
/// line of the text; an accepted
/// conf is deterministic (parsing again gives the same result), every proxy has a unique
/// name, every frontend a bind, and every backend a frontend names exists.
pub fn conf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    let c = match parse_conf(FILE, &text) {
        Err(errs) => {
            assert!(!errs.0.is_empty());
            assert!(errs.0.is_sorted_by_key(|e| e.line), "{errs}");
            for e in &errs.0 {
                assert_eq!(e.file, FILE);
                assert!(
                    (1..=lines.max(1)).contains(&e.line),
                    "error line {} outside 1..={lines}: {e}",
                    e.line
                );
                assert!(!e.msg.is_empty());
            }
            return;
        }
        Ok(c) => c,
    };
    for w in &c.warnings {
        assert!(
            (1..=lines).contains(&w.line),
            "warning line {}: {w}",
            w.line
        );
    }
    let again = parse_conf(FILE, &text).expect("a conf that parsed once parses again");
    assert_eq!(c.global, again.global);
    // Self-signed certificates are generated afresh each time: compare all but their keys.
    let strip = |fs: &[super::Frontend]| {
        fs.iter()
            .map(|f| {
                let mut f = f.clone();
                let certs: Vec<Option<Vec<Vec<String>>>> = f
                    .binds
                    .iter_mut()
                    .map(|b| {
                        b.tls
                            .take()
                            .map(|t| t.certs.iter().map(|c| c.names.clone()).collect())
                    })
                    .collect();
                (f, certs)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&c.frontends), strip(&again.frontends));
    assert_eq!(c.backends, again.backends);
    let mut names: Vec<&str> = c.frontends.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    let n = names.len();
    names.dedup();
    assert_eq!(n, names.len(), "duplicate frontend names");
    for f in &c.frontends {
        assert!(!f.binds.is_empty(), "frontend {} without bind", f.name);
        let wanted = f.default_backend.iter().chain(
            f.http
                .use_backends
                .iter()
                .filter(|u| u.dynamic.is_none())
                .map(|u| &u.backend),
        );
        for b in wanted {
            let be = c.backends.iter().find(|x| &x.name == b);
            let be = be.unwrap_or_else(|| panic!("frontend {} names missing backend {b}", f.name));
            assert_eq!(be.mode, f.mode, "frontend {} and backend {b} modes", f.name);
        }
        assert!(f.client_limits.table_size >= 64);
        if f.client_limits.http_req_rate.is_some() {
            assert_eq!(f.mode, super::Mode::Http);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_pass_on_good_and_bad_confs() {
        conf(b"frontend f\n    bind 127.0.0.1:0\n    mode http\n    limit conn 3\n    tcp-request connection reject if { src 10.0.0.0/8 ::1 }\n    default_backend b\nbackend b\n    mode http\n    server s 127.0.0.1:1\n");
        conf(b"frontend f\n    bind nowhere\n");
        conf(b"\xff\xfe");
        conf(b"");
    }
}
