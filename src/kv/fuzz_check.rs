//! Invariant check for the `resp_frame` fuzz target and `tests/fuzz_seeds.rs`: arbitrary bytes through the RESP2 request parser.

use super::frame::{parse, reply, Args, FrameError, Limits};

type Parsed = Result<Option<(usize, Vec<Vec<u8>>)>, FrameError>;

fn parse_all(buf: &[u8], lim: &Limits) -> Parsed {
    let mut args = Args::default();
    let n = parse(buf, lim, &mut args)?;
    Ok(n.map(|n| {
        let argv = args
            .ranges
            .iter()
            .map(|r| buf[r.clone()].to_vec())
            .collect();
        (n, argv)
    }))
}

/// RESP frame (first byte picks the limits): never panics; a frame it accepts lies inside the
/// input, its arguments lie inside the frame, the same frame is found with any bytes appended,
/// every strict prefix of it is incomplete (never an error), and its arguments re-encoded as a
/// multibulk request parse back to the same arguments.
pub fn resp_frame(data: &[u8]) {
    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    let lim = Limits {
        max_bulk: if sel & 1 == 0 { 64 } else { 512 * 1024 * 1024 },
        max_array: if sel & 2 == 0 { 8 } else { 1024 * 1024 },
        max_inline: if sel & 4 == 0 { 32 } else { 64 * 1024 },
        authed: sel & 8 != 0,
    };
    let Ok(Some((n, argv))) = parse_all(data, &lim) else {
        return;
    };
    assert!(n > 0 && n <= data.len(), "consumed {n} of {}", data.len());
    let mut args = Args::default();
    parse(data, &lim, &mut args).expect("deterministic");
    for r in &args.ranges {
        assert!(
            r.start <= r.end && r.end <= n,
            "argument {r:?} outside the frame of {n}"
        );
    }
    // a frame does not depend on what follows it
    assert_eq!(parse_all(&data[..n], &lim), Ok(Some((n, argv.clone()))));
    let mut more = data[..n].to_vec();
    more.extend_from_slice(b"*1\r\n$1\r\nx\r\n");
    assert_eq!(parse_all(&more, &lim), Ok(Some((n, argv.clone()))));
    // strict prefixes are incomplete
    for k in [1, n / 2, n - 1] {
        if k == 0 || k >= n {
            continue;
        }
        assert_eq!(
            parse_all(&data[..k], &lim),
            Ok(None),
            "prefix {k} of a frame of {n}"
        );
    }
    // re-encoded as multibulk, under limits that fit it, the arguments come back
    if !argv.is_empty() {
        let refs: Vec<&[u8]> = argv.iter().map(|a| a.as_slice()).collect();
        let mut out = Vec::new();
        reply::command(&mut out, &refs);
        let loose = Limits {
            max_bulk: usize::MAX >> 2,
            max_array: usize::MAX >> 2,
            max_inline: 64,
            authed: true,
        };
        assert_eq!(parse_all(&out, &loose), Ok(Some((out.len(), argv))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_pass_on_good_inputs() {
        resp_frame(b"\x0f*2\r\n$3\r\nGET\r\n$1\r\nk\r\nrest");
        resp_frame(b"\x0fSET 'a b' \"c\"\r\n");
        resp_frame(b"\x00*0\r\n");
        resp_frame(b"\x00");
        resp_frame(b"");
    }
}
