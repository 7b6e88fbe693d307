//! A blocking HTTP/1.1 test client that reads responses by their framing.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One client connection; responses are read in order.
pub struct Client {
    pub r: BufReader<TcpStream>,
}

impl Client {
    /// Asserts that the peer has closed the connection (EOF or reset), not
    /// merely gone quiet: a read timeout fails the test.
    pub fn expect_closed(&mut self, why: &str) {
        let mut b = [0u8; 1];
        match self.r.get_mut().read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("connection not closed ({why}): {other:?}"),
        }
    }

    pub fn connect(addr: SocketAddr) -> Client {
        let s = super::connect(addr);
        Client {
            r: BufReader::new(s),
        }
    }

    pub fn send(&mut self, raw: &[u8]) {
        self.r.get_mut().write_all(raw).unwrap();
    }

    /// Sends `bytes` and asserts that the same bytes come back (an echo tunnel).
    pub fn assert_echo(&mut self, bytes: &[u8]) {
        self.send(bytes);
        let mut back = vec![0u8; bytes.len()];
        self.r.read_exact(&mut back).unwrap();
        assert_eq!(back, bytes);
    }

    /// Sends a GET and reads its response.
    pub fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes());
        self.read(false).expect("response")
    }

    /// Reads one response; `None` if the connection closed first.
    pub fn read(&mut self, head_request: bool) -> Option<Resp> {
        let mut line = String::new();
        if self.r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).ok()?;
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':')?;
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            return Some(resp);
        }
        if let Some(cl) = resp.header("content-length") {
            let n: usize = cl.parse().ok()?;
            let mut b = vec![0u8; n];
            self.r.read_exact(&mut b).ok()?;
            resp.body = b;
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut size = String::new();
                self.r.read_line(&mut size).ok()?;
                let n = usize::from_str_radix(size.trim(), 16).ok()?;
                if n == 0 {
                    let mut end = String::new();
                    self.r.read_line(&mut end).ok()?;
                    break;
                }
                let mut b = vec![0u8; n + 2];
                self.r.read_exact(&mut b).ok()?;
                resp.body.extend_from_slice(&b[..n]);
            }
        } else {
            self.r.read_to_end(&mut resp.body).ok()?;
        }
        Some(resp)
    }

    /// True when the server closed the connection (EOF or reset).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0) | Err(_))
    }
}
