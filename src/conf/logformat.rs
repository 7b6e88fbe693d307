//! `log-format`: the text of a custom access-log line, parsed into literal
//! parts and HAProxy-style `%` variables (the access log fills them in).

/// A parsed `log-format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub parts: Vec<Part>,
}

/// Text as written, or a variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Var(Var),
}

/// What a `%` variable stands for in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    ClientIp,
    ClientPort,
    Date,
    Frontend,
    Backend,
    Server,
    Tc,
    Tr,
    Ta,
    Status,
    BytesOut,
    BytesIn,
    Request,
}

/// `%` variables, longest first so that `%Tc` wins over a shorter prefix.
const VARS: &[(&str, Var)] = &[
    ("ci", Var::ClientIp),
    ("cp", Var::ClientPort),
    ("Tc", Var::Tc),
    ("Tr", Var::Tr),
    ("Ta", Var::Ta),
    ("ST", Var::Status),
    ("t", Var::Date),
    ("f", Var::Frontend),
    ("b", Var::Backend),
    ("s", Var::Server),
    ("B", Var::BytesOut),
    ("U", Var::BytesIn),
    ("r", Var::Request),
];

impl Format {
    /// Parses a format with HAProxy-style variables: %ci %cp %t %f %b %s %Tc %Tr %Ta %ST %B %U %r, and %% for '%'.
    pub fn parse(s: &str) -> Result<Format, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('%') {
            lit.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('%') {
                lit.push('%');
                rest = r;
                continue;
            }
            let Some(&(name, var)) = VARS.iter().find(|(n, _)| rest.starts_with(n)) else {
                let word: String = rest.chars().take_while(|c| c.is_alphanumeric()).collect();
                return Err(format!(
                    "unknown log-format variable '%{word}' (known: %ci %cp %t %f %b %s %Tc %Tr %Ta %ST %B %U %r %%)"
                ));
            };
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(var));
            rest = &rest[name.len()..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Format { parts })
    }
}
