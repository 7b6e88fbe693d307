//! The virtual routers as JSON, for the stats JSON (`"vrrp"`) and `GET /api/vrrp`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::packet::Reject;

/// `[{"name":..,"vrid":..,"interface":..,"state":..,"priority":..,"master":..,...}]`;
/// names and interfaces come from the conf, whose lexer allows no quotes or
/// control characters in a word, but they are escaped anyway.
pub fn json() -> String {
    let mut o = String::from("[");
    for (i, s) in super::statuses().iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let master = s
            .master()
            .map_or("null".to_string(), |m| format!("\"{m}\""));
        let _ = write!(
            o,
            "{{\"name\":{},\"vrid\":{},\"interface\":{},\"state\":\"{}\",\"priority\":{},\"master\":{master},\"transitions\":{},\"adverts_sent\":{},\"adverts_received\":{},\"dropped\":{{",
            quote(&s.name),
            s.vrid,
            quote(&s.interface),
            s.state().as_str(),
            s.priority(),
            s.transitions.load(Ordering::Relaxed),
            s.sent.load(Ordering::Relaxed),
            s.received.load(Ordering::Relaxed),
        );
        for (j, r) in Reject::ALL.iter().enumerate() {
            if j > 0 {
                o.push(',');
            }
            let _ = write!(o, "\"{}\":{}", r.as_str(), s.dropped(*r));
        }
        let _ = write!(
            o,
            "}},\"interval_mismatches\":{},\"address_mismatches\":{}}}",
            s.interval_mismatch.load(Ordering::Relaxed),
            s.address_mismatch.load(Ordering::Relaxed)
        );
    }
    o.push(']');
    o
}

fn quote(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_escape() {
        assert_eq!(super::quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
