//! The runtime API: list servers, set drain/maint/ready, change weights, reload (the SIGHUP path).

use std::fmt::Write as _;
use std::sync::Arc;

use super::{Admin, Reply};
use crate::accesslog::json_str;
use crate::balance::{Admin as AdminState, Server};

/// Routes `/api/...` (but `/api/stats`, served by the router).
///
/// - `GET  /api/servers`                          every server with state and weight (JSON)
/// - `POST /api/servers/BACKEND/SERVER/ready`     also `drain`, `maint`
/// - `POST /api/servers/BACKEND/SERVER/weight/N`  N in 0..=256
/// - `POST /api/reload`                           re-read the conf file, as SIGHUP does
pub fn handle(admin: &Admin, method: &[u8], path: &str) -> Reply {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
    let post = method == b"POST" || method == b"PUT";
    let get = method == b"GET" || method == b"HEAD";
    match parts.as_slice() {
        ["servers"] if get => Reply::json(servers_json(admin)),
        ["vrrp"] if get => Reply::json(crate::vrrp::view::json()),
        ["reload"] if post => match admin.rt.reload() {
            Ok(n) => Reply::text(200, format!("reloaded: {n} changes")),
            Err(e) => Reply::text(500, format!("reload failed: {e}")),
        },
        ["servers", be, srv, action] if post => with_server(admin, be, srv, |s| {
            let a = match *action {
                "ready" => AdminState::Ready,
                "drain" => AdminState::Drain,
                "maint" => AdminState::Maint,
                other => {
                    return Reply::text(
                        400,
                        format!("unknown action '{other}' (ready, drain, maint, weight/N)"),
                    )
                }
            };
            s.set_admin(a);
            Reply::text(200, format!("{} is now {}", s.id, s.state().as_str()))
        }),
        ["servers", be, srv, "weight", w] if post => {
            with_server(admin, be, srv, |s| match w.parse::<u32>() {
                Ok(w) if w <= 256 => {
                    s.set_weight(w);
                    Reply::text(200, format!("{} weight is now {w}", s.id))
                }
                _ => Reply::text(400, format!("invalid weight '{w}' (expected 0..=256)")),
            })
        }
        ["servers", ..] | ["reload"] => Reply::text(405, "method not allowed"),
        _ => Reply::text(404, "not found"),
    }
}

fn with_server(admin: &Admin, be: &str, srv: &str, f: impl FnOnce(&Server) -> Reply) -> Reply {
    let snap = admin.rt.snapshot.load();
    let Some(b) = snap.backends.get(be) else {
        return Reply::text(404, format!("no backend '{be}'"));
    };
    match b.pool.servers.iter().find(|s| s.name == srv) {
        Some(s) => f(s),
        None => Reply::text(404, format!("no server '{srv}' in backend '{be}'")),
    }
}

/// Every server of the running conf, sorted by backend then conf order.
pub fn servers(admin: &Admin) -> Vec<(String, Arc<Server>)> {
    let snap = admin.rt.snapshot.load();
    let mut out = Vec::new();
    for b in &snap.conf.backends {
        if let Some(rt) = snap.backends.get(&b.name) {
            for s in &rt.pool.servers {
                out.push((b.name.clone(), s.clone()));
            }
        }
    }
    out
}

fn servers_json(admin: &Admin) -> String {
    let mut o = String::from("[");
    for (i, (be, s)) in servers(admin).iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str("{\"backend\":");
        json_str(be, &mut o);
        o.push_str(",\"server\":");
        json_str(&s.name, &mut o);
        let _ = write!(
            o,
            ",\"addr\":\"{}\",\"state\":\"{}\",\"weight\":{},\"backup\":{},\"current\":{}}}",
            s.addr,
            s.state().as_str(),
            s.weight(),
            s.backup(),
            s.inflight.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    o.push_str("]\n");
    o
}
