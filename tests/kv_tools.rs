//! kv against Redis's own tools: redis-cli and redis-benchmark (Debian's redis-tools); skipped with a notice when absent.

mod common;

use std::process::Command;

use common::Lb;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs a tool under coreutils `timeout`, returning stdout; panics on failure.
fn run(tool: &str, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg(tool)
        .args(args)
        .output()
        .expect("run tool");
    assert!(
        out.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn start() -> (Lb, String) {
    let lb = Lb::start("kv primary\n    bind 127.0.0.1:0\n", 1);
    let port = lb.addr("kv", "primary").port().to_string();
    (lb, port)
}

#[test]
fn redis_cli_talks_to_kv() {
    if !have("redis-cli") {
        eprintln!("SKIPPED: redis-cli not installed (apt-get install redis-tools)");
        return;
    }
    let (_lb, port) = start();
    let cli = |args: &[&str]| {
        let mut a = vec!["-h", "127.0.0.1", "-p", port.as_str(), "--no-raw"];
        a.extend_from_slice(args);
        run("redis-cli", &a)
    };
    assert_eq!(cli(&["PING"]), "PONG\n");
    assert_eq!(cli(&["SET", "greeting", "hello world"]), "OK\n");
    assert_eq!(cli(&["GET", "greeting"]), "\"hello world\"\n");
    assert_eq!(cli(&["INCRBY", "n", "5"]), "(integer) 5\n");
    assert_eq!(
        cli(&["INCR", "greeting"]),
        "(error) ERR value is not an integer or out of range\n"
    );
    assert_eq!(cli(&["GET", "nope"]), "(nil)\n");
    assert_eq!(cli(&["EXPIRE", "n", "100"]), "(integer) 1\n");
    let keys = run(
        "redis-cli",
        &["-h", "127.0.0.1", "-p", &port, "--scan", "--pattern", "g*"],
    );
    assert_eq!(keys, "greeting\n");
    let info = cli(&["INFO", "keyspace"]);
    assert!(info.contains("db0:keys=2,expires=1"), "{info}");
    // Commands piped on stdin, as scripts do.
    let piped = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'SET a 1\\nMGET a greeting\\n' | timeout 60 redis-cli -h 127.0.0.1 -p {port}"
        ))
        .output()
        .expect("redis-cli via pipe");
    assert_eq!(
        String::from_utf8_lossy(&piped.stdout),
        "OK\n1\nhello world\n"
    );
}

#[test]
fn redis_benchmark_runs_against_kv() {
    if !have("redis-benchmark") {
        eprintln!("SKIPPED: redis-benchmark not installed (apt-get install redis-tools)");
        return;
    }
    let (_lb, port) = start();
    let out = run(
        "redis-benchmark",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-t",
            "set,get,incr",
            "-n",
            "5000",
            "-c",
            "8",
            "-P",
            "8",
            "--csv",
        ],
    );
    for t in ["\"SET\"", "\"GET\"", "\"INCR\""] {
        let line = out
            .lines()
            .find(|l| l.starts_with(t))
            .unwrap_or_else(|| panic!("no {t} in:\n{out}"));
        let rps: f64 = line.split('"').nth(3).unwrap().parse().unwrap();
        assert!(rps > 0.0, "{line}");
    }
    // INCR counted every request: the counter key redis-benchmark uses holds 5000.
    let v = run(
        "redis-cli",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "GET",
            "counter:__rand_int__",
        ],
    );
    assert_eq!(v, "5000\n");
}
