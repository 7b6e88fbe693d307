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
        let _ = write!(o, ",\"mode\":\"{mode}\",\"binds\":[");
        for (j, b) in f.binds.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            let _ = write!(
                o,
                "{{\"addr\":\"{}\",\"tls\":{},\"h2\":{}}}",
                b.addr,
                b.tls.is_some(),
                b.h2
            );
        }
        o.push_str("],\"backends\":[");
        let mut targets: Vec<&str> = f
            .http
            .use_backends
            .iter()
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
    o.push_str("],\"kv\":[");
    for (i, k) in admin.kvs.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let v = kv_view(k, &expected_replicas(k, &admin.kvs));
        o.push_str("{\"name\":");
        json_str(&k.name, &mut o);
        let _ = write!(
            o,
            ",\"bind\":\"{}\",\"role\":\"{}\",\"offset\":{},\"clients\":{},\"keys\":{},\"used_memory\":{},\"role_changes\":{},\"master\":",
            k.conf.bind,
            if v.is_replica { "replica" } else { "primary" },
            v.offset,
            v.clients,
            v.keys,
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
    o.push_str("]}\n");
    o
}

/// The stats page: draws `/api/stats` as frontends -> backends -> servers and
/// the kv pair, redrawn every 2 s; rates come from the difference between polls.
pub const PAGE: &str = r##"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>lb stats</title>
<style>
body{font:13px system-ui,sans-serif;margin:16px;background:#f6f7f9;color:#222}
h1{font-size:18px;margin:0 0 8px}
#meta{color:#666;margin-bottom:8px}
svg{background:#fff;border:1px solid #ddd;border-radius:6px}
.box text{font-size:12px}
.legend span{display:inline-block;padding:2px 8px;margin-right:6px;border-radius:4px;color:#fff}
table{border-collapse:collapse;margin-top:12px;background:#fff}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}
</style></head><body>
<h1>lb stats</h1>
<div id="meta">loading...</div>
<div class="legend"><span style="background:#2e9d4a">UP</span><span style="background:#d33">DOWN</span><span style="background:#e69a1f">DRAIN</span><span style="background:#777">MAINT</span><span style="background:#2e6fd3">backup (UP)</span></div>
<svg id="topo" width="1100" height="200"></svg>
<table id="tbl"></table>
<script>
"use strict";
const COLORS={UP:"#2e9d4a",DOWN:"#d33",DRAIN:"#e69a1f",MAINT:"#777"};
let prev=null,prevT=0;
function esc(s){return String(s).replace(/[&<>"]/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));}
function fmt(v,d){return v==null?"-":Number(v).toFixed(d);}
function rate(key,now,cur,dt){
  if(!prev||!dt)return null;const p=prev.get(key);if(p==null)return null;
  return Math.max(0,(cur-p)/dt);
}
function box(x,y,w,h,fill,lines){
  let s=`<g class="box"><rect x="${x}" y="${y}" width="${w}" height="${h}" rx="6" fill="${fill}" stroke="#333" stroke-width="0.5"/>`;
  lines.forEach((l,i)=>{s+=`<text x="${x+8}" y="${y+16+i*14}" fill="${i?"#fff":"#fff"}" font-weight="${i?400:700}">${esc(l)}</text>`;});
  return s+"</g>";
}
function draw(d){
  const t=performance.now()/1000,dt=prevT?t-prevT:0,seen=new Map();
  const W=230,H=62,GAP=12,X=[20,400,780];
  let svg="",rows="",pos={};
  let y=20;
  const srvY=[];
  d.backends.forEach(b=>{
    const top=y;
    b.servers.forEach(s=>{
      const key=b.name+"/"+s.name;
      seen.set(key+":r",s.requests);seen.set(key+":e",s.errors+s.connect_errors);
      const rr=rate(key+":r",t,s.requests,dt),er=rate(key+":e",t,s.errors+s.connect_errors,dt);
      const fill=s.backup&&s.state==="UP"?"#2e6fd3":COLORS[s.state]||"#999";
      svg+=box(X[2],y,W+60,H,fill,[`${s.name} ${s.state}${s.backup?" (backup)":""}  w=${s.weight}`,
        `conns ${s.current}  req/s ${fmt(rr,1)}  err/s ${fmt(er,2)}`,
        `p50 ${fmt(s.p50_ms,1)} ms  p99 ${fmt(s.p99_ms,1)} ms`]);
      pos[key]=y+H/2;
      rows+=`<tr><td>${esc(key)}</td><td style="color:${fill}">${s.state}</td><td>${s.current}</td><td>${s.requests}</td><td>${fmt(rr,1)}</td><td>${fmt(er,2)}</td><td>${fmt(s.p50_ms,1)}</td><td>${fmt(s.p99_ms,1)}</td></tr>`;
      y+=H+GAP;
    });
    if(!b.servers.length)y+=H+GAP;
    const mid=(top+y-GAP)/2;
    pos["be:"+b.name]=mid;
    const up=b.servers.filter(s=>s.state==="UP").length;
    svg+=box(X[1],mid-H/2,W,H,up?"#46607a":"#d33",[`backend ${b.name} (${b.mode})`,`${up}/${b.servers.length} servers up`,`retries ${b.retries}  reuse ${fmt(b.reuse_ratio*100,0)}%`]);
    b.servers.forEach(s=>{const sy=pos[b.name+"/"+s.name];
      svg=`<line x1="${X[1]+W}" y1="${mid}" x2="${X[2]}" y2="${sy}" stroke="${COLORS[s.state]||"#999"}" stroke-width="2"/>`+svg;});
    y+=GAP;
  });
  let fy=20;
  d.frontends.forEach(f=>{
    const key="fe:"+f.name;seen.set(key,f.requests||0);
    const rr=rate(key,t,f.requests||0,dt);
    svg+=box(X[0],fy,W,H,"#34495e",[`frontend ${f.name} (${f.mode})`,`conns ${f.current}  req/s ${fmt(rr,1)}`,`p50 ${fmt(f.p50_ms,1)} ms  p99 ${fmt(f.p99_ms,1)} ms`]);
    f.backends.forEach(b=>{if(pos["be:"+b]!=null)svg=`<line x1="${X[0]+W}" y1="${fy+H/2}" x2="${X[1]}" y2="${pos["be:"+b]}" stroke="#888" stroke-width="2"/>`+svg;});
    fy+=H+GAP;
  });
  let ky=Math.max(y,fy)+10;
  if(d.kv.length){
    svg+=`<text x="20" y="${ky}" font-weight="700">kv</text>`;ky+=10;
    let kx=20;const kpos={};
    d.kv.forEach(k=>{
      const lag=k.replicas.map(r=>`${r.addr}: lag ${r.lag_bytes} B / ${fmt(r.lag_s,1)} s`);
      const lines=[`kv ${k.name} (${k.role})`,`keys ${k.keys}  clients ${k.clients}  offset ${k.offset}`].concat(
        k.role==="replica"?[`link ${k.link_up?"up":"DOWN"} to ${k.master}, last io ${fmt(k.master_last_io_s,1)} s`]:lag);
      const h=20+lines.length*14;
      svg+=box(kx,ky,340,h,k.role==="replica"&&!k.link_up?"#d33":"#5b4a8a",lines);
      kpos[k.name]=kx;kx+=380;
    });
    if(d.kv.length>1)svg+=`<line x1="360" y1="${ky+20}" x2="400" y2="${ky+20}" stroke="#5b4a8a" stroke-width="3"/>`;
    ky+=90;
  }
  const el=document.getElementById("topo");el.setAttribute("height",ky+10);el.innerHTML=svg;
  document.getElementById("tbl").innerHTML="<tr><th>server</th><th>state</th><th>conns</th><th>requests</th><th>req/s</th><th>err/s</th><th>p50 ms</th><th>p99 ms</th></tr>"+rows;
  document.getElementById("meta").textContent=`up ${d.uptime_s}s, reloads ${d.reloads} (failed ${d.reload_failures}), access log dropped ${d.access_log_dropped}; refreshed ${new Date().toLocaleTimeString()}`;
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
