//! `GET /stats` (a self-contained live topology page) and `/stats;json` = `/api/stats` (the data it draws).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::Admin;
use crate::accesslog::json_str;
use crate::conf::Mode;
use crate::kv::metrics::{expected_replicas, view as kv_view};
use crate::stats::{quantile, quantile_merged, Traffic};

fn ms(v: Option<f64>) -> String {
    v.map_or("null".into(), |s| format!("{:.3}", s * 1000.0))
}

fn traffic(t: &Traffic, o: &mut String) {
    let _ = write!(
        o,
        "\"requests\":{},\"errors\":{},\"bytes_in\":{},\"bytes_out\":{},\"p50_ms\":{},\"p99_ms\":{}",
        t.requests(),
        t.errors(),
        t.bytes_in.get(),
        t.bytes_out.get(),
        ms(quantile(&t.duration, 0.5)),
        ms(quantile(&t.duration, 0.99)),
    );
}

fn opt_addr(a: Option<SocketAddr>, o: &mut String) {
    match a {
        Some(a) => {
            let _ = write!(o, "\"{a}\"");
        }
        None => o.push_str("null"),
    }
}

/// The whole topology and its counters as one JSON object: frontends (binds)
/// -> backends -> servers, web sections -> apps -> kv servers.
pub fn json(admin: &Admin) -> String {
    let snap = admin.rt.snapshot.load();
    let mut o = String::with_capacity(4096);
    let _ = write!(
        o,
        "{{\"uptime_s\":{:.0},\"reloads\":{},\"reload_failures\":{},\"access_log_dropped\":{},\"frontends\":[",
        admin.started.elapsed().as_secs_f64(),
        admin.rt.reloads.load(Ordering::Relaxed),
        admin.rt.reload_failures.load(Ordering::Relaxed),
        crate::accesslog::dropped(),
    );
    for (i, f) in snap.conf.frontends.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str("{\"name\":");
        json_str(&f.name, &mut o);
        let mode = if f.mode == Mode::Http { "http" } else { "tcp" };
        let _ = write!(o, ",\"mode\":\"{mode}\",\"backends\":[");
        let mut targets: Vec<&str> = f
            .http
            .use_backends
            .iter()
            .filter(|u| u.dynamic.is_none())
            .map(|u| u.backend.as_str())
            .chain(f.default_backend.as_deref())
            .collect();
        targets.dedup();
        for (j, b) in targets.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            json_str(b, &mut o);
        }
        o.push_str("],\"binds\":[");
        for (j, b) in f.binds.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            // The same conf address may be bound twice (rank): as the runtime keys it.
            let rank = f.binds[..j].iter().filter(|o| o.addr == b.addr).count();
            let _ = write!(
                o,
                "{{\"addr\":\"{}\",\"tls\":{},\"h2\":{}}}",
                crate::stats::bound_addr(&f.name, (b.addr, rank)).unwrap_or(b.addr),
                b.tls.is_some(),
                b.h2
            );
        }
        o.push(']');
        if let Some(rt) = snap.frontends.get(&f.name) {
            let s = &rt.stats;
            let _ = write!(
                o,
                ",\"current\":{},\"sessions\":{},",
                s.current.get(),
                s.sessions.get()
            );
            traffic(&s.traffic, &mut o);
        }
        o.push('}');
    }
    o.push_str("],\"backends\":[");
    for (i, b) in snap.conf.backends.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str("{\"name\":");
        json_str(&b.name, &mut o);
        let mode = if b.mode == Mode::Http { "http" } else { "tcp" };
        let _ = write!(o, ",\"mode\":\"{mode}\"");
        if let Some(rt) = snap.backends.get(&b.name) {
            let st = &rt.stats;
            let (hit, miss) = (st.reuse_hit.get(), st.reuse_miss.get());
            let _ = write!(
                o,
                ",\"retries\":{},\"redispatches\":{},\"reuse_ratio\":{:.3},\"servers\":[",
                st.retries.get(),
                st.redispatches.get(),
                if hit + miss == 0 {
                    0.0
                } else {
                    hit as f64 / (hit + miss) as f64
                }
            );
            for (j, s) in rt.pool.servers.iter().enumerate() {
                if j > 0 {
                    o.push(',');
                }
                o.push_str("{\"name\":");
                json_str(&s.name, &mut o);
                let _ = write!(
                    o,
                    ",\"addr\":\"{}\",\"state\":\"{}\",\"backup\":{},\"weight\":{},\"current\":{},\"total\":{},\"connect_errors\":{},\"check_failures\":{},\"transitions\":{},",
                    s.addr,
                    s.state().as_str(),
                    s.backup(),
                    s.weight(),
                    s.inflight.load(Ordering::Relaxed),
                    s.total.load(Ordering::Relaxed),
                    s.connect_errors.load(Ordering::Relaxed),
                    s.check_failures.load(Ordering::Relaxed),
                    s.transitions.load(Ordering::Relaxed),
                );
                o.push_str("\"change\":");
                match s.stats.last_change() {
                    Some(c) => {
                        let _ = write!(o, "{{\"state\":\"{}\",\"reason\":", c.state);
                        json_str(&c.reason, &mut o);
                        let _ = write!(o, ",\"ago_s\":{:.1}}},", c.at.elapsed().as_secs_f64());
                    }
                    None => o.push_str("null,"),
                }
                traffic(&s.stats.traffic, &mut o);
                o.push('}');
            }
            o.push(']');
        }
        o.push('}');
    }
    o.push_str("],\"webs\":[");
    for (i, w) in crate::web::metrics::webs().iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str("{\"name\":");
        json_str(&w.name, &mut o);
        o.push_str(",\"bind\":");
        opt_addr(*w.bind.lock().unwrap_or_else(|p| p.into_inner()), &mut o);
        o.push_str(",\"routes\":[");
        let routes = w.routes.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for (j, (prefix, addr)) in routes.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            o.push_str("{\"prefix\":");
            json_str(prefix, &mut o);
            let _ = write!(o, ",\"app\":\"{addr}\"}}");
        }
        let _ = write!(
            o,
            "],\"connections\":{},\"open_files\":{},\"static\":{{",
            w.connections.load(Ordering::Relaxed),
            w.open_files.load(Ordering::Relaxed)
        );
        traffic(&w.local, &mut o);
        o.push_str("},\"forwarded\":");
        match w.forwarded() {
            Some(f) => {
                o.push('{');
                traffic(&f.traffic, &mut o);
                o.push('}');
            }
            None => o.push_str("null"),
        }
        o.push('}');
    }
    o.push_str("],\"apps\":[");
    for (i, a) in crate::app::metrics::apps().iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let addrs = a.addrs();
        o.push_str("{\"name\":");
        json_str(&a.name, &mut o);
        o.push_str(",\"bind\":");
        opt_addr(addrs.bind, &mut o);
        o.push_str(",\"kv_primary\":");
        opt_addr(addrs.kv_primary, &mut o);
        o.push_str(",\"kv_replica\":");
        opt_addr(addrs.kv_replica, &mut o);
        let (requests, errors) = a.totals();
        let durations: Vec<_> = a.endpoints.iter().map(|e| &e.duration).collect();
        let _ = write!(
            o,
            ",\"requests\":{requests},\"errors\":{errors},\"p50_ms\":{},\"p99_ms\":{},\"kv\":{{",
            ms(quantile_merged(&durations, 0.5)),
            ms(quantile_merged(&durations, 0.99)),
        );
        for (j, role) in crate::app::metrics::ROLES.iter().enumerate() {
            let k = &a.kv[j];
            if j > 0 {
                o.push(',');
            }
            let _ = write!(
                o,
                "\"{role}\":{{\"calls\":{},\"errors\":{},\"p99_ms\":{}}}",
                k.calls.get(),
                k.errors.get(),
                ms(quantile(&k.duration, 0.99))
            );
        }
        o.push_str("},\"fallbacks\":{");
        for (j, why) in crate::app::metrics::FALLBACKS.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            let _ = write!(o, "\"{why}\":{}", a.fallbacks[j].get());
        }
        o.push_str("}}");
    }
    o.push_str("],\"sentinels\":");
    crate::sentinel::metrics::stats_json(&mut o);
    o.push_str(",\"kv\":[");
    for (i, k) in admin.kvs.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let v = kv_view(k, &expected_replicas(k, &admin.kvs));
        o.push_str("{\"name\":");
        json_str(&k.name, &mut o);
        let _ = write!(
            o,
            ",\"role\":\"{}\",\"offset\":{},\"clients\":{},\"keys\":{},\"bind\":\"{}\",\"used_memory\":{},\"role_changes\":{},\"master\":",
            if v.is_replica { "replica" } else { "primary" },
            v.offset,
            v.clients,
            v.keys,
            k.conf.bind,
            v.used_memory,
            v.role_changes,
        );
        match &v.master {
            Some(m) => json_str(m, &mut o),
            None => o.push_str("null"),
        }
        let _ = write!(
            o,
            ",\"link_up\":{},\"link_state\":{},\"master_last_io_s\":{},\"replicas\":[",
            v.link_up.map_or("null".into(), |b| b.to_string()),
            v.link_state.map_or("null".into(), |s| format!("\"{s}\"")),
            v.master_last_io_seconds
                .map_or("null".into(), |s| format!("{s:.3}"))
        );
        for (j, r) in v.replicas.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            let _ = write!(
                o,
                "{{\"addr\":\"{}\",\"ack\":{},\"lag_bytes\":{},\"lag_s\":{:.3},\"last_ack_s\":{:.3},\"online\":{},\"missing_for_s\":{}}}",
                r.addr,
                r.ack,
                r.lag_bytes,
                r.lag_seconds,
                r.last_ack_seconds,
                r.online,
                r.missing_for.map_or("null".into(), |s| format!("{s:.1}"))
            );
        }
        o.push_str("]}");
    }
    o.push_str("],\"vrrp\":");
    o.push_str(&crate::vrrp::view::json());
    o.push_str("}\n");
    o
}

/// The stats page: draws `/api/stats` as the design runs, tier by tier (client
/// -> virtual addresses when VRRP runs -> frontends -> backends -> servers -> web -> app -> kv primary -> replicas),
/// redrawn every 2 s; rates come from the difference between polls. Columns
/// wrap into a single one on a phone.
pub const PAGE: &str = r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>lb stats</title>
<style>
*{box-sizing:border-box}
body{font:13px/1.35 system-ui,sans-serif;margin:0;padding:10px;background:#f4f5f7;color:#1d2228}
h1{font-size:17px;margin:0 0 4px}
#meta{color:#555;margin-bottom:8px;overflow-wrap:anywhere}
.flow{display:flex;flex-wrap:wrap;align-items:flex-start;gap:6px}
.tier{flex:1 1 150px;min-width:150px;max-width:280px}
.tier>h2{font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:#667;margin:2px 2px 4px}
.arrow{flex:0 0 12px;align-self:center;color:#99a;font-size:16px;text-align:center}
.card{background:#fff;border:1px solid #d5d9df;border-left:5px solid #46607a;border-radius:6px;padding:6px 8px;margin-bottom:6px;overflow-wrap:anywhere}
.card b{font-size:13px}
.card .l{color:#333;font-size:12px}
.card .why{color:#b00;font-size:12px}
.b{display:inline-block;padding:0 5px;border-radius:3px;color:#fff;font-size:11px;font-weight:600;vertical-align:1px}
.b.UP{background:#2e9d4a}.b.DOWN{background:#d33}.b.DRAIN{background:#e69a1f}.b.MAINT{background:#777}.b.MISSING{background:#d33}.b.TLS{background:#2e6fd3}.b.PRIMARY{background:#5b4a8a}.b.REPLICA{background:#7a6aa8}
.card.UP{border-left-color:#2e9d4a}.card.DOWN,.card.MISSING,.card.bad{border-left-color:#d33;background:#fff4f4}.card.DRAIN{border-left-color:#e69a1f}.card.MAINT{border-left-color:#777}.card.kv{border-left-color:#5b4a8a}
.empty{color:#889;font-style:italic;padding:4px}
@media (max-width:600px){.flow{flex-direction:column;align-items:stretch}.arrow{align-self:flex-start;padding-left:20px}.arrow::before{content:"\2193"}.arrow span{display:none}.tier{flex:none;width:100%;max-width:none}}
</style></head><body>
<h1>lb stats</h1>
<div id="meta">loading...</div>
<div class="flow" id="flow"></div>
<script>
"use strict";
let prev=new Map(),prevT=0;
function esc(s){return String(s).replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));}
function f(v,d){return v==null?"-":Number(v).toFixed(d);}
function ago(s){if(s==null)return"";s=Number(s);return s<90?Math.round(s)+" s":s<5400?Math.round(s/60)+" min":s<172800?Math.round(s/3600)+" h":Math.round(s/86400)+" d";}
function bytes(n){n=Number(n);return n<1024?n+" B":n<1048576?(n/1024).toFixed(1)+" KiB":(n/1048576).toFixed(1)+" MiB";}
function badge(t,c){return `<span class="b ${c||t}">${esc(t)}</span>`;}
function card(cls,title,lines){return `<div class="card ${cls}"><b>${title}</b>${lines.filter(x=>x).map(l=>`<div class="l">${l}</div>`).join("")}</div>`;}
function tier(name,cards){return `<div class="tier"><h2>${esc(name)}</h2>${cards.length?cards.join(""):'<div class="empty">none</div>'}</div>`;}
const ARROW='<div class="arrow"><span>&#8594;</span></div>';
function draw(d){
  const t=performance.now()/1000,dt=prevT?t-prevT:0,seen=new Map();
  const rate=(k,v)=>{seen.set(k,v);const p=prev.get(k);return p==null||!dt?null:Math.max(0,(v-p)/dt);};
  const lat=x=>`p50 ${f(x.p50_ms,1)} ms, p99 ${f(x.p99_ms,1)} ms`;
  const webByAddr=new Map((d.webs||[]).filter(w=>w.bind).map(w=>[w.bind,w.name]));
  const appByAddr=new Map((d.apps||[]).filter(a=>a.bind).map(a=>[a.bind,a.name]));
  const kvByAddr=new Map((d.kv||[]).map(k=>[k.bind,k.name]));
  const cols=[];
  cols.push(tier("client",[card("","client",["HTTP, HTTPS, h2"])]));
  // Virtual addresses (VRRP), when the JSON has them: what clients reach before a frontend.
  if((d.vrrp||[]).length)cols.push(tier("vrrp",d.vrrp.map(v=>{
    const st=v.state==="MASTER"?"UP":v.state==="BACKUP"?"DRAIN":"DOWN";
    return card(st,`vrrp ${esc(v.name)} ${badge(v.state,st)}`,[`vrid ${v.vrid} on ${esc(v.interface)}, priority ${v.priority}`,
      `master ${esc(v.master||"-")}, ${v.transitions} transitions`,`adverts ${v.adverts_sent} sent, ${v.adverts_received} received`]);})));
  cols.push(tier("frontends",d.frontends.map(fe=>{
    const rr=rate("fe:"+fe.name,fe.requests||0),er=rate("fe5:"+fe.name,fe.errors||0);
    return card("",`${esc(fe.name)} <span class="l">${fe.mode}</span>`,[
      (fe.binds||[]).map(b=>`${esc(b.addr)} ${b.tls?badge("TLS"):""}${b.h2?" h2":""}`).join("<br>"),
      `conns ${fe.current??"-"}, ${f(rr,1)} req/s, 5xx ${f(er,2)}/s`,lat(fe),
      `to ${fe.backends.map(esc).join(", ")||"-"}`]);})));
  const servers=[];
  cols.push(tier("backends",d.backends.map(b=>{
    const ss=b.servers||[],up=ss.filter(s=>s.state==="UP").length;
    ss.forEach(s=>{
      const k=b.name+"/"+s.name,rr=rate("s:"+k,s.requests),er=rate("se:"+k,s.errors+s.connect_errors);
      const c=s.change,web=webByAddr.get(s.addr);
      const why=s.state!=="UP"&&c?`<span class="why">${esc(c.reason)}, ${ago(c.ago_s)} ago</span>`:(c?`${esc(c.state)} for ${ago(c.ago_s)}`:"");
      servers.push(card(s.state,`${esc(s.name)} ${badge(s.state)}${s.backup?" backup":""}`,[
        `${esc(b.name)} &middot; ${esc(s.addr)} &middot; w ${s.weight}`,why,
        `conns ${s.current}, ${f(rr,1)} req/s, err ${f(er,2)}/s`,lat(s),web?`to web ${esc(web)}`:""]));
    });
    return card(up?"":"bad",`${esc(b.name)} <span class="l">${b.mode}</span>`,[`${up}/${ss.length} servers up`,`retries ${b.retries}, reuse ${f(b.reuse_ratio*100,0)}%`]);
  })));
  cols.push(tier("servers",servers));
  cols.push(tier("web",(d.webs||[]).map(w=>{
    const rs=rate("ws:"+w.name,w.static.requests),rf=w.forwarded?rate("wf:"+w.name,w.forwarded.requests):null;
    return card("",`web ${esc(w.name)}`,[esc(w.bind||"-"),
      `static ${f(rs,1)} req/s, ${lat(w.static)}`,
      w.forwarded?`to app ${f(rf,1)} req/s, 5xx ${w.forwarded.errors}, p99 ${f(w.forwarded.p99_ms,1)} ms`:"",
      `conns ${w.connections}, open files ${w.open_files}`,
      w.routes.map(r=>`${esc(r.prefix)} &rarr; ${esc(appByAddr.get(r.app)||r.app)}`).join("<br>")]);
  })));
  cols.push(tier("app",(d.apps||[]).map(a=>{
    const rr=rate("a:"+a.name,a.requests),p=a.kv.primary,r=a.kv.replica;
    const fb=a.fallbacks.replica_behind+a.fallbacks.replica_unreachable;
    return card(a.errors&&rate("ae:"+a.name,a.errors)>0?"bad":"",`app ${esc(a.name)}`,[esc(a.bind||"-"),
      `${f(rr,1)} req/s, 5xx ${a.errors}, ${lat(a)}`,
      `writes &rarr; kv ${esc(kvByAddr.get(a.kv_primary)||a.kv_primary)}: ${p.calls} calls, ${p.errors} err, p99 ${f(p.p99_ms,1)} ms`,
      a.kv_replica?`reads &rarr; kv ${esc(kvByAddr.get(a.kv_replica)||a.kv_replica)}: ${r.calls} calls, ${r.errors} err, p99 ${f(r.p99_ms,1)} ms`:"",
      a.kv_replica?`reads on primary: ${a.fallbacks.replica_behind} behind, ${a.fallbacks.replica_unreachable} unreachable`:""]);
  })));
  const kv=d.kv||[],prim=kv.filter(k=>k.role==="primary"),reps=kv.filter(k=>k.role==="replica");
  cols.push(tier("kv primary",prim.map(k=>card("kv",`kv ${esc(k.name)} ${badge("PRIMARY")}`,[esc(k.bind),
    `keys ${k.keys}, clients ${k.clients}, ${bytes(k.used_memory)}`,`offset ${k.offset}${k.role_changes?`, role changed ${k.role_changes}x`:""}`,
    ...k.replicas.map(r=>r.missing_for_s!=null
      ?`<span class="why">&rarr; ${esc(kvByAddr.get(r.addr)||r.addr)} ${badge("MISSING")} for ${ago(r.missing_for_s)}</span>`
      :`&rarr; ${esc(kvByAddr.get(r.addr)||r.addr)}: lag ${r.lag_bytes} B, ${f(r.lag_s,2)} s${r.online?"":" (syncing)"}`)]))));
  cols.push(tier("replicas",reps.map(k=>card(k.link_up?"kv":"bad",`kv ${esc(k.name)} ${badge("REPLICA")}`,[esc(k.bind),
    `of ${esc(kvByAddr.get(k.master)||k.master)}: link ${k.link_up?badge("UP"):badge("DOWN")} ${esc(k.link_state||"")}`,
    `last io ${f(k.master_last_io_s,1)} s ago, offset ${k.offset}`,`keys ${k.keys}, clients ${k.clients}, ${bytes(k.used_memory)}`]))));
  // Sentinels, when the JSON has them: which server is the primary now, and what happened.
  if((d.sentinels||[]).length)cols.push(tier("sentinel",d.sentinels.flatMap(s=>s.masters.map(m=>
    card(m.status==="ok"?"":"bad",`sentinel ${esc(s.name)}: ${esc(m.name)} ${badge(m.status==="ok"?"UP":m.status.toUpperCase(),m.status==="ok"?"UP":"DOWN")}`,[
      `primary ${esc(kvByAddr.get(m.primary)||m.primary)}, ${m.replicas} replicas`,
      `${m.sentinels} sentinels, quorum ${m.quorum} ${m.quorum_reachable?"reachable":badge("NO QUORUM","DOWN")}`,
      `epoch ${s.epoch}, ${m.failovers} failovers`,
      ...m.events.slice(0,4).map(e=>`<span class="why">${esc(e)}</span>`)])))));
  document.getElementById("flow").innerHTML=cols.join(ARROW);
  document.getElementById("meta").textContent=`up ${ago(d.uptime_s)}, reloads ${d.reloads} (failed ${d.reload_failures}), access log dropped ${d.access_log_dropped}; refreshed ${new Date().toLocaleTimeString()}`;
  prev=seen;prevT=t;
}
async function tick(){
  try{const r=await fetch("/api/stats",{cache:"no-store"});draw(await r.json());}
  catch(e){document.getElementById("meta").textContent="error: "+e;}
  setTimeout(tick,2000);
}
tick();
</script></body></html>
"##;
