//! Replays every committed fuzz seed under `fuzz/seeds/<target>/` through the same checks the fuzz targets run.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut n = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let data = std::fs::read(&path).expect("read seed");
        eprintln!("{target}: {}", path.display());
        check(&data);
        n += 1;
    }
    assert!(n > 0, "no seeds for {target}");
}

#[test]
fn http_request_head_seeds() {
    replay("http_request_head", lb::http::fuzz_check::request_head);
}

#[test]
fn http_response_head_seeds() {
    replay("http_response_head", lb::http::fuzz_check::response_head);
}

#[test]
fn http_chunked_seeds() {
    replay("http_chunked", lb::http::fuzz_check::chunked);
}

#[test]
fn resp_frame_seeds() {
    replay("resp_frame", lb::kv::fuzz_check::resp_frame);
}

#[test]
fn conf_seeds() {
    replay("conf", lb::conf::fuzz_check::conf);
}

#[test]
fn http_proxy_seeds() {
    replay("http_proxy", lb::http::fuzz_check::proxy);
}

#[test]
fn vrrp_advert_seeds() {
    replay("vrrp_advert", lb::vrrp::fuzz_check::advert);
}
