//! `lb check`: exit 0 on a good file, `FILE:LINE: message` and exit 1 on a bad one.

mod common;

use std::process::Command;

/// Runs lb on `conf`, which must fail to start with exit code 1; its stderr,
/// the conf's path, and the directory holding it.
fn start_fails(conf: &str) -> (String, std::path::PathBuf, common::TempDir) {
    let (code, err, path, dir) = common::run_to_exit(conf);
    assert_eq!(code, Some(1), "{err}");
    (err, path, dir)
}

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
    let (err, path, _dir) = start_fails(&format!(
        "frontend f\n    bind {addr}\n    default_backend b\nbackend b\n    server s 127.0.0.1:9\n"
    ));
    assert!(
        err.contains(&format!("{}:2: cannot bind {addr}", path.display())),
        "{err}"
    );
}

#[test]
fn tune_io_uring_takes_on_off_or_a_mode() {
    let (code, _, err, path, _dir) = common::check("global\n    tune.io-uring maybe\n");
    assert_ne!(code, 0);
    assert!(
        err.contains(&format!("{}:2", path.display()))
            && err.contains("expected on, off, defer-taskrun or signal"),
        "{err}"
    );
    for v in ["on", "off", "defer-taskrun", "signal"] {
        let (code, _, err, _, _dir) = common::check(&format!("global\n    tune.io-uring {v}\n"));
        assert_eq!(code, 0, "{v}: {err}");
    }
}

#[test]
fn cpu_map_errors_name_the_line() {
    for (conf, line, want) in [
        ("global\n    cpu-map 2/1 0\n", 2, "must be 1 or all"),
        ("global\n    cpu-map 1/1\n", 2, "no CPUs"),
        ("global\n    cpu-map 1/1 0-x\n", 2, "not a CPU number"),
        (
            "global\n    nbthread 2\n    cpu-map 1/3 0\n",
            3,
            "thread 3 does not exist: there are 2 worker thread(s)",
        ),
        (
            "global\n    cpu-map auto:1/1-2 0\n    nbthread 2\n",
            2,
            "names only 1 CPU(s)",
        ),
    ] {
        let (code, _, err, path, _dir) = common::check(conf);
        assert_eq!(code, 1, "{conf}");
        assert!(
            err.contains(&format!("{}:{line}: 'cpu-map': ", path.display())) && err.contains(want),
            "{conf}: {err}"
        );
    }
}

/// The CPUs a thread may run on, from its `/proc` status line.
fn cpus_allowed(pid: u32, tid: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string()
}

/// Worker thread name -> allowed CPUs, for every `lb-worker-N` thread of `pid`.
fn worker_cpus(pid: u32) -> std::collections::BTreeMap<String, String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| {
            let tid = t.unwrap().file_name().into_string().unwrap();
            let name = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
            let name = name.trim().to_string();
            name.starts_with("lb-worker-")
                .then(|| (name, cpus_allowed(pid, &tid)))
        })
        .collect()
}

#[test]
fn cpu_map_pins_worker_threads() {
    // The CPUs this test may use: lb can only be given those.
    let here = cpus_allowed(std::process::id(), &std::process::id().to_string());
    let first: usize = here.split([',', '-']).next().unwrap().parse().unwrap();
    let lb = common::Lb::start(
        &format!(
            "global\n    nbthread 2\n    cpu-map 1/all {first}\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server s 127.0.0.1:9\n"
        ),
        1,
    );
    let pinned = worker_cpus(lb.child.id());
    assert_eq!(pinned.len(), 2, "{pinned:?}");
    assert!(
        pinned.values().all(|c| *c == first.to_string()),
        "{pinned:?}"
    );
    // The main thread is not a worker and stays as it was.
    assert_eq!(
        cpus_allowed(lb.child.id(), &lb.child.id().to_string()),
        here
    );
    // A reload cannot move running threads: it says so and changes nothing.
    lb.reload("global\n    nbthread 2\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server s 127.0.0.1:9\n");
    lb.wait_log("cpu-map changes take effect at the next start");
    assert_eq!(worker_cpus(lb.child.id()), pinned);

    // auto: one CPU each, when there are two to give.
    let cpus: Vec<usize> = (0..1024)
        .filter(|c| {
            here.split(',').any(|r| match r.split_once('-') {
                Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).contains(c),
                None => r.parse::<usize>().unwrap() == *c,
            })
        })
        .collect();
    if let [a, b, ..] = cpus[..] {
        let lb = common::Lb::start(
            &format!(
                "global\n    nbthread 2\n    cpu-map auto:1/1-2 {a},{b}\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server s 127.0.0.1:9\n"
            ),
            1,
        );
        let pinned = worker_cpus(lb.child.id());
        assert_eq!(
            pinned.values().cloned().collect::<Vec<_>>(),
            [a.to_string(), b.to_string()],
            "{pinned:?}"
        );
    }
}

#[test]
fn cpu_map_refuses_a_cpu_the_process_cannot_use() {
    let (err, path, _dir) = start_fails(
        "global\n    nbthread 1\n    cpu-map 1/1 1023\nfrontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server s 127.0.0.1:9\n",
    );
    assert!(
        err.contains(&format!(
            "{}:3: 'cpu-map': CPU 1023 is not available to this process",
            path.display()
        )),
        "{err}"
    );
}

/// Errors of one file, each on its own line, in line order; a section that
/// failed is not reported again where it is used.
const MANY_ERRORS: &str = "global\n    nbthread 0\nfrontend f\n    mode http\n    bind 127.0.0.1:0 ssl self-signed a.test alpn spdy/3,http/1.1\n    bnd 127.0.0.1:0\n    acl api pth_beg /api\n    use_backend api if api\n    default_backend b\nbackend api\n    mode http\n    server s nohost\nbackend b\n    mode http\n    server s 127.0.0.1:9 ssl verify none sni str(x.test\n    timeout connect 5x\n";

fn many_errors_lines(path: &std::path::Path) -> Vec<String> {
    let p = path.display();
    vec![
        format!("{p}:2: 'nbthread': invalid number '0' (expected 1..=1024)"),
        format!("{p}:5: 'bind': alpn 'spdy/3': lb does not speak 'spdy/3' (mode http speaks h2, http/1.1, http/1.0)"),
        format!("{p}:6: unknown keyword 'bnd' in frontend section (did you mean 'bind'?)"),
        format!("{p}:7: 'acl': unknown acl criterion 'pth_beg' (did you mean 'path_beg'?)"),
        format!("{p}:12: 'server': invalid address 'nohost' (expected HOST:PORT)"),
        format!("{p}:15: 'server': 'sni str(x.test': unsupported expression (lb takes str(NAME), req.hdr(host), hdr(host) or a DNS name)"),
        format!("{p}:16: 'timeout': invalid duration '5x' (expected a number with ms, s, m, h or d)"),
    ]
}

#[test]
fn check_reports_every_error_in_one_run() {
    let (code, out, err, path, _dir) = common::check(MANY_ERRORS);
    assert_eq!(code, 1, "{out}");
    let got: Vec<&str> = err.lines().collect();
    assert_eq!(got, many_errors_lines(&path), "{err}");
}

#[test]
fn start_reports_every_error() {
    let (err, path, _dir) = start_fails(MANY_ERRORS);
    let got: Vec<&str> = err.lines().filter(|l| l.contains("lb.conf:")).collect();
    assert_eq!(got, many_errors_lines(&path), "{err}");
}

#[test]
fn reload_of_a_bad_file_logs_every_error_and_keeps_running() {
    let good = "frontend f\n    bind 127.0.0.1:0\n    default_backend b\nbackend b\n    server s 127.0.0.1:9\n";
    let lb = common::Lb::start(good, 1);
    let fe = lb.addr("frontend", "f");
    lb.reload("frontend f\n    bind 127.0.0.1:0\n    retries x\n    default_backend b\nbackend b\n    server s nohost\n");
    lb.wait_log("lb.conf:6: 'server': invalid address 'nohost'");
    assert_eq!(lb.log_count("lb.conf:3: 'retries'"), 1);
    // The old conf still serves: the frontend accepts.
    common::connect(fe);
}

#[test]
fn check_refuses_a_cpu_the_process_cannot_use() {
    // No nbthread: checked against this machine's cores, as a start would.
    let (code, _, err, path, _dir) = common::check("global\n    cpu-map 1/1 1023\n");
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "{}:2: 'cpu-map': CPU 1023 is not available to this process",
            path.display()
        )),
        "{err}"
    );
}
