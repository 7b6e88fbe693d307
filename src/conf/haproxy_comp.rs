//! `compression algo|type|offload|minsize-res` lines of a proxy section:
//! which responses lb compresses, and how (`http::compress` does it).

/// A content coding lb can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    /// Named by HAProxy, produces nothing: responses pass as they are.
    Identity,
    Gzip,
    /// `deflate`: the zlib format, as RFC 9110 means by `deflate`.
    Deflate,
    /// `raw-deflate`: bare deflate, still announced as `deflate` (for old clients).
    RawDeflate,
}

impl Algo {
    /// The token in Accept-Encoding and Content-Encoding.
    pub fn token(self) -> &'static str {
        match self {
            Algo::Identity => "identity",
            Algo::Gzip => "gzip",
            Algo::Deflate | Algo::RawDeflate => "deflate",
        }
    }
}

/// What one proxy section says about compression.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompConf {
    /// `compression algo ...`, in the order given (first wins on a tie).
    pub algos: Vec<Algo>,
    /// `compression type ...`: Content-Type prefixes; empty = every type.
    pub types: Vec<String>,
    /// `compression offload`: the server never sees Accept-Encoding.
    pub offload: bool,
    /// `compression minsize-res N` (HAProxy 3.2): smaller bodies of known
    /// length pass as they are. HAProxy's default, 0, compresses any body.
    pub minsize: u64,
}

const ALGOS: &[&str] = &["identity", "gzip", "deflate", "raw-deflate"];

/// Reads one `compression ...` line (its words after `compression`) into `c`.
pub fn parse(c: &mut CompConf, a: &[String]) -> Result<(), String> {
    let what = a
        .first()
        .ok_or("expected 'algo', 'type', 'offload' or 'minsize-res'")?;
    match what.as_str() {
        "algo" | "algo-res" => {
            if a.len() < 2 {
                return Err(format!(
                    "'{what}' needs at least one algorithm (gzip, deflate, raw-deflate, identity)"
                ));
            }
            for n in &a[1..] {
                let al = match n.as_str() {
                    "identity" => Algo::Identity,
                    "gzip" => Algo::Gzip,
                    "deflate" => Algo::Deflate,
                    "raw-deflate" => Algo::RawDeflate,
                    x => {
                        return Err(format!(
                            "unknown algorithm '{x}'{}",
                            super::parse::did_you_mean(x, ALGOS)
                        ))
                    }
                };
                if !c.algos.contains(&al) {
                    c.algos.push(al);
                }
            }
            Ok(())
        }
        "type" | "type-res" => {
            if a.len() < 2 {
                return Err(format!("'{what}' needs at least one content type"));
            }
            c.types.extend(a[1..].iter().cloned());
            Ok(())
        }
        "offload" if a.len() == 1 => {
            c.offload = true;
            Ok(())
        }
        "minsize-res" => {
            let v = a.get(1).ok_or("'minsize-res' needs a size")?;
            c.minsize = super::parse::size(v)?;
            Ok(())
        }
        "algo-req" | "type-req" | "direction" => Err(format!(
            "'compression {what}' is not implemented: lb compresses responses only"
        )),
        x => Err(format!(
            "unexpected '{x}' (algo, type, offload, minsize-res)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn lines_accumulate() {
        let mut c = CompConf::default();
        parse(&mut c, &words("algo gzip deflate")).unwrap();
        parse(&mut c, &words("type text/html text/plain")).unwrap();
        parse(&mut c, &words("offload")).unwrap();
        assert_eq!(c.algos, vec![Algo::Gzip, Algo::Deflate]);
        assert_eq!(c.types, vec!["text/html", "text/plain"]);
        assert!(c.offload);
        assert!(parse(&mut c, &words("algo gzp"))
            .unwrap_err()
            .contains("gzip"));
        assert!(parse(&mut c, &words("direction both")).is_err());
        assert!(parse(&mut c, &words("algo")).is_err());
    }
}
