//! `lb check`: exit 0 on a good file, `FILE:LINE: message` and exit 1 on a bad one.

mod common;

use std::process::Command;

#[test]
fn good_file_passes() {
    let (code, out, err, _, _dir) = common::check(
        "global\n    daemon\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server s 127.0.0.1:9\n",
    );
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("configuration is valid"));
    assert!(err.contains("lb.conf:2: 'daemon' has no effect"), "{err}");
}

#[test]
fn bad_file_names_file_and_line() {
    let (code, _, err, path, _dir) = common::check(
        "frontend f\n    bind 127.0.0.1:0\n    default_backend nope\nbackend b\n    server s 127.0.0.1:9\n",
    );
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        format!(
            "{}:3: frontend 'f': backend 'nope' does not exist",
            path.display()
        )
    );
}

#[test]
fn typo_gets_a_suggestion() {
    let (code, _, err, path, _dir) = common::check("backend b\n    servr s 127.0.0.1:9\n");
    assert_eq!(code, 1);
    assert_eq!(
        err.trim(),
        format!(
            "{}:2: unknown keyword 'servr' in backend section (did you mean 'server'?)",
            path.display()
        )
    );
}

#[test]
fn missing_file_is_an_error() {
    let out = Command::new(common::lb_bin())
        .args(["check", "--conf", "/nonexistent/lb.conf"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("/nonexistent/lb.conf:0: cannot read conf file"));
}

#[test]
fn shipped_confs_are_valid() {
    for f in ["conf/foobar.conf", "conf/examples/tcp.conf"] {
        let out = Command::new(common::lb_bin())
            .args(["check", "--conf", f])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn help_and_version() {
    let out = Command::new(common::lb_bin())
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("lb "));
    let out = Command::new(common::lb_bin())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--conf") && help.contains("check"));
}

#[test]
fn bind_failure_is_reported_with_line() {
    // Occupy a port, then ask lb to bind it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let (_dir, path) = common::write_conf(&format!(
        "frontend f\n    bind {addr}\n    default_backend b\nbackend b\n    server s 127.0.0.1:9\n"
    ));
    let out = Command::new(common::lb_bin())
        .arg("--conf")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:2: cannot bind {addr}", path.display())),
        "{err}"
    );
}

#[test]
fn tune_io_uring_takes_on_or_off() {
    let (code, _, err, path, _dir) = common::check("global\n    tune.io-uring maybe\n");
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("{}:2", path.display())) && err.contains("expected on or off"),
        "{err}"
    );
    for v in ["on", "off"] {
        let (code, _, err, _, _dir) = common::check(&format!("global\n    tune.io-uring {v}\n"));
        assert_eq!(code, 0, "{v}: {err}");
    }
}
