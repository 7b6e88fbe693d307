//! HTTP/2 to servers and gRPC through lb: the real binary in front of
//! servers written with the `h2` crate and with tonic.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::Lb;
use tonic::codegen::{BoxFuture, BoxStream, Context, Poll};

/// One runtime for the servers and clients of every test in this file.
fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    rt().block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let a = l.local_addr().expect("addr");
        (l, a)
    })
}

/// The test's gRPC message: one string.
#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
}

/// `test.Echo`: `Unary` answers its message; `Stream` answers each message
/// as it comes (bidirectional), then ends with grpc-status 0.
#[derive(Clone, Default)]
struct Echo;

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

struct Unary;

impl tonic::server::UnaryService<Msg> for Unary {
    type Response = Msg;
    type Future = BoxFuture<tonic::Response<Msg>, tonic::Status>;
    fn call(&mut self, r: tonic::Request<Msg>) -> Self::Future {
        Box::pin(async move {
            let m = r.into_inner();
            if m.text == "fail" {
                return Err(tonic::Status::failed_precondition("asked to fail"));
            }
            Ok(tonic::Response::new(m))
        })
    }
}

struct Bidi;

impl tonic::server::StreamingService<Msg> for Bidi {
    type Response = Msg;
    type ResponseStream = BoxStream<Msg>;
    type Future = BoxFuture<tonic::Response<Self::ResponseStream>, tonic::Status>;
    fn call(&mut self, r: tonic::Request<tonic::Streaming<Msg>>) -> Self::Future {
        Box::pin(async move {
            let mut inbound = r.into_inner();
            let out = async_stream_like(move |tx| async move {
                while let Ok(Some(m)) = inbound.message().await {
                    let reply = Msg {
                        text: format!("echo {}", m.text),
                    };
                    if tx.send(Ok(reply)).await.is_err() {
                        break;
                    }
                }
            });
            Ok(tonic::Response::new(out))
        })
    }
}

/// A stream fed by a task through a channel.
fn async_stream_like<F, Fut>(f: F) -> BoxStream<Msg>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Msg, tonic::Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

impl<B> tonic::codegen::Service<http::Request<B>> for Echo
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::BoxBody>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let codec = tonic::codec::ProstCodec::<Msg, Msg>::default;
        match req.uri().path() {
            "/test.Echo/Unary" => {
                Box::pin(
                    async move { Ok(tonic::server::Grpc::new(codec()).unary(Unary, req).await) },
                )
            }
            "/test.Echo/Stream" => {
                Box::pin(
                    async move { Ok(tonic::server::Grpc::new(codec()).streaming(Bidi, req).await) },
                )
            }
            _ => Box::pin(
                async move { Ok(tonic::Status::unimplemented("no such method").into_http()) },
            ),
        }
    }
}

/// A tonic server on `l` with the echo service and the standard health
/// service (`test.Echo` SERVING); returns the health reporter.
fn grpc_server(l: tokio::net::TcpListener) -> tonic_health::server::HealthReporter {
    rt().block_on(async {
        let (mut reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("test.Echo", tonic_health::ServingStatus::Serving)
            .await;
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(l);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(health)
                .add_service(Echo)
                .serve_with_incoming(incoming),
        );
        reporter
    })
}

fn set_status(r: &mut tonic_health::server::HealthReporter, s: tonic_health::ServingStatus) {
    rt().block_on(r.set_service_status("test.Echo", s));
}

#[test]
fn grpc_check_marks_not_serving_down_and_serving_up() {
    let (l1, a1) = listener();
    let (l2, a2) = listener();
    let _up = grpc_server(l1);
    let mut down = grpc_server(l2);
    set_status(&mut down, tonic_health::ServingStatus::NotServing);
    let lb = Lb::start(
        &format!(
            "frontend f\n    mode http\n    bind 127.0.0.1:0\n    default_backend b\n\
             backend b\n    mode http\n    option grpc-check test.Echo\n    timeout check 2s\n\
             \x20   default-server proto h2 check inter 50ms rise 1 fall 1\n\
             \x20   server up {a1}\n    server down {a2}\n"
        ),
        1,
    );
    lb.wait_log("server b/down is DOWN (reason: gRPC health status NOT_SERVING");
    // It comes back once it serves again.
    set_status(&mut down, tonic_health::ServingStatus::Serving);
    lb.wait_log("server b/down is UP");
    assert_eq!(lb.log_count("server b/up is DOWN"), 0);
    // An unknown service is a failure too (grpc-status NOT_FOUND).
    drop(lb);
    let lb = Lb::start(
        &format!(
            "frontend f\n    mode http\n    bind 127.0.0.1:0\n    default_backend b\n\
             backend b\n    mode http\n    option grpc-check no.Such\n    timeout check 2s\n\
             \x20   server up {a1} proto h2 check inter 50ms rise 1 fall 1\n"
        ),
        1,
    );
    lb.wait_log("server b/up is DOWN (reason: grpc-status 5");
}

#[test]
fn httpchk_to_an_h2_server_speaks_http2() {
    let be = h2_backend();
    let lb = Lb::start(
        &format!(
            "frontend f\n    mode http\n    bind 127.0.0.1:0\n    default_backend b\n\
             backend b\n    mode http\n    option httpchk GET /health\n    timeout check 2s\n\
             \x20   server s {} proto h2 check inter 50ms rise 1 fall 1\n\
             backend c\n    mode http\n    option httpchk GET /health\n    http-check expect status 204\n    timeout check 2s\n\
             \x20   server s {} proto h2 check inter 50ms rise 1 fall 1\n",
            be.addr, be.addr
        ),
        1,
    );
    // Either may come first.
    lb.wait_log_count("server b/s is UP", 1);
    lb.wait_log_count("server c/s is DOWN (reason: HTTP status 200", 1);
}

/// An h2c server made with the `h2` crate: answers each request with its
/// method, path and body length, counting the connections it accepted and
/// the streams in progress at once.
struct H2Backend {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    /// Told when a stream of `/hold` is reset by the client side (each
    /// answers a head, then waits for the reset).
    reset_seen: Arc<tokio::sync::Notify>,
}

fn h2_backend() -> H2Backend {
    h2_backend_on(None)
}

/// An h2 server over TLS (a self-signed certificate) offering `alpn`.
fn h2_tls_backend(alpn: &[&[u8]]) -> H2Backend {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).expect("key");
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![ck.cert.der().clone()], key)
    .expect("server config");
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    h2_backend_on(Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))))
}

fn h2_backend_on(tls: Option<tokio_rustls::TlsAcceptor>) -> H2Backend {
    let (l, addr) = listener();
    let conns = Arc::new(AtomicUsize::new(0));
    let reset_seen = Arc::new(tokio::sync::Notify::new());
    let c = conns.clone();
    let r = reset_seen.clone();
    rt().spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            c.fetch_add(1, Ordering::SeqCst);
            let tls = tls.clone();
            let r = r.clone();
            tokio::spawn(async move {
                let conn = match tls {
                    None => h2::server::handshake(Box::new(s) as Box<dyn Stream>).await,
                    Some(a) => {
                        let Ok(t) = a.accept(s).await else { return };
                        h2::server::handshake(Box::new(t) as Box<dyn Stream>).await
                    }
                };
                let Ok(mut conn) = conn else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let r = r.clone();
                    tokio::spawn(async move {
                        if req.uri().path() == "/hold" {
                            let Ok(mut send) =
                                respond.send_response(http::Response::new(()), false)
                            else {
                                return;
                            };
                            if std::future::poll_fn(|cx| send.poll_reset(cx)).await.is_ok() {
                                r.notify_one();
                            }
                            return;
                        }
                        let (parts, mut body) = req.into_parts();
                        let mut n = 0;
                        while let Some(Ok(d)) = body.data().await {
                            n += d.len();
                            let _ = body.flow_control().release_capacity(d.len());
                        }
                        let trailers = body.trailers().await.ok().flatten();
                        // Slow enough that concurrent requests overlap.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let text = format!(
                            "{} {} {} host={} te={} trailer={}",
                            parts.method,
                            parts.uri.path(),
                            n,
                            parts.uri.authority().map_or("", |a| a.as_str()),
                            parts
                                .headers
                                .get("te")
                                .map_or("", |v| v.to_str().unwrap_or("")),
                            trailers
                                .as_ref()
                                .and_then(|t| t.get("x-sum"))
                                .map_or("", |v| v.to_str().unwrap_or("")),
                        );
                        let resp = http::Response::builder()
                            .header("content-type", "text/plain")
                            .body(())
                            .expect("response");
                        let Ok(mut send) = respond.send_response(resp, false) else {
                            return;
                        };
                        let _ = send.send_data(bytes::Bytes::from(text), false);
                        let mut t = http::HeaderMap::new();
                        t.insert("x-done", http::HeaderValue::from_static("yes"));
                        let _ = send.send_trailers(t);
                    });
                }
            });
        }
    });
    H2Backend {
        addr,
        conns,
        reset_seen,
    }
}

/// A socket the test servers speak h2 over: plain or TLS.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

fn h2_lb(backend: SocketAddr) -> Lb {
    Lb::start(
        &format!(
            "global\n    nbthread 1\nfrontend f\n    mode http\n    bind 127.0.0.1:0\n    default_backend b\n\
             backend b\n    mode http\n    server s {backend} proto h2\n"
        ),
        1,
    )
}

#[test]
fn http1_clients_share_one_h2_server_connection() {
    let be = h2_backend();
    let lb = h2_lb(be.addr);
    let addr = lb.addr("frontend", "f");
    let threads: Vec<_> = (0..8)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = common::client::Client::connect(addr);
                let r = c.get(&format!("/item/{i}"));
                (r.status, r.text())
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let (status, text) = t.join().expect("client thread");
        assert_eq!(status, 200, "{text}");
        assert!(
            text.starts_with(&format!("GET /item/{i} 0 host=")),
            "{text}"
        );
    }
    assert_eq!(be.conns.load(Ordering::SeqCst), 1, "one server connection");
}

#[test]
fn http1_request_body_and_trailers_go_to_an_h2_server() {
    let be = h2_backend();
    let lb = h2_lb(be.addr);
    let addr = lb.addr("frontend", "f");
    let mut c = common::client::Client::connect(addr);
    c.send(
        b"POST /up HTTP/1.1\r\nHost: example.test\r\nTE: trailers\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n",
    );
    // Chunked, with the server's trailers after the last chunk.
    let raw = read_until_end(&mut c, b"\r\n0\r\n");
    assert!(raw.starts_with("HTTP/1.1 200 "), "{raw}");
    assert!(
        raw.to_ascii_lowercase()
            .contains("transfer-encoding: chunked\r\n"),
        "{raw}"
    );
    assert!(
        raw.contains("POST /up 11 host=example.test te=trailers trailer=11"),
        "{raw}"
    );
    assert!(raw.ends_with("\r\n0\r\nx-done: yes\r\n\r\n"), "{raw}");
    // Content-Length bodies too, on the same client connection.
    c.send(b"PUT /put HTTP/1.1\r\nHost: example.test\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.read(false).expect("response");
    assert_eq!(r.text(), "PUT /put 3 host=example.test te= trailer=");
}

#[test]
fn h2_over_tls_to_servers_by_alpn() {
    let be = h2_tls_backend(&[b"h2"]);
    let lb = Lb::start(
        &format!(
            "global\n    nbthread 1\nfrontend f\n    mode http\n    bind 127.0.0.1:0\n    default_backend b\n\
             backend b\n    mode http\n    server s {} ssl verify none alpn h2\n",
            be.addr
        ),
        1,
    );
    let mut c = common::client::Client::connect(lb.addr("frontend", "f"));
    for path in ["/one", "/two"] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: tls.test\r\n\r\n").as_bytes());
        let raw = read_until_end(&mut c, b"\r\n0\r\n");
        assert!(raw.starts_with("HTTP/1.1 200 "), "{raw}");
        assert!(
            raw.contains(&format!("GET {path} 0 host=tls.test")),
            "{raw}"
        );
    }
    assert_eq!(be.conns.load(Ordering::SeqCst), 1, "one TLS connection");

    // A TLS server that does not agree to h2: a failed connect, 503.
    let h1 = h2_tls_backend(&[b"http/1.1"]);
    let lb = Lb::start(
        &format!(
            "frontend f\n    mode http\n    bind 127.0.0.1:0\n    default_backend b\n\
             backend b\n    mode http\n    retries 0\n    server s {} ssl verify none alpn h2\n",
            h1.addr
        ),
        1,
    );
    let mut c = common::client::Client::connect(lb.addr("frontend", "f"));
    assert_eq!(c.get("/").status, 503);
}

#[test]
fn a_client_reset_cancels_the_server_stream() {
    let be = h2_backend();
    let lb = Lb::start(
        &format!(
            "frontend f\n    mode http\n    bind 127.0.0.1:0 proto h2\n    default_backend b\n\
             backend b\n    mode http\n    server s {} proto h2\n",
            be.addr
        ),
        1,
    );
    let addr = lb.addr("frontend", "f");
    rt().block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (client, conn) = h2::client::handshake(tcp).await.expect("handshake");
        tokio::spawn(conn);
        let mut client = client.ready().await.expect("ready");
        let req = http::Request::builder()
            .uri(format!("http://{addr}/hold"))
            .body(())
            .expect("request");
        let (resp, mut body) = client.send_request(req, false).expect("send");
        let resp = tokio::time::timeout(common::WAIT, resp)
            .await
            .expect("head in time")
            .expect("head");
        assert_eq!(resp.status(), 200);
        body.send_reset(h2::Reason::CANCEL);
        tokio::time::timeout(common::WAIT, be.reset_seen.notified())
            .await
            .expect("the server stream is reset too");
    });
}

/// Reads a response up to `last` and the blank line after it.
fn read_until_end(c: &mut common::client::Client, last: &[u8]) -> String {
    use std::io::BufRead;
    let mut raw = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = c.r.read_until(b'\n', &mut line).expect("read");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&line);
        if let Some(i) = raw.windows(last.len()).position(|w| w == last) {
            if raw[i..].ends_with(b"\r\n\r\n") {
                return String::from_utf8_lossy(&raw).into_owned();
            }
        }
    }
}

/// A tonic client over h2c to `addr`.
fn channel(addr: SocketAddr) -> tonic::client::Grpc<tonic::transport::Channel> {
    rt().block_on(async {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect_timeout(common::WAIT)
            .connect()
            .await
            .expect("connect");
        tonic::client::Grpc::new(ch)
    })
}

type Codec = tonic::codec::ProstCodec<Msg, Msg>;

fn unary(
    g: &mut tonic::client::Grpc<tonic::transport::Channel>,
    text: &str,
) -> Result<String, Box<tonic::Status>> {
    rt().block_on(async {
        g.ready().await.expect("ready");
        let r = g
            .unary(
                tonic::Request::new(Msg { text: text.into() }),
                http::uri::PathAndQuery::from_static("/test.Echo/Unary"),
                Codec::default(),
            )
            .await
            .map_err(Box::new)?;
        Ok(r.into_inner().text)
    })
}

#[test]
fn grpc_unary_and_bidirectional_streaming_through_lb() {
    let (l, a) = listener();
    let _health = grpc_server(l);
    let lb = Lb::start(
        &format!(
            "frontend f\n    mode http\n    bind 127.0.0.1:0 proto h2\n    default_backend b\n\
             backend b\n    mode http\n    option grpc-check\n    server s {a} proto h2 check inter 200ms\n"
        ),
        1,
    );
    // Checked servers take traffic once a check passed.
    lb.wait_log("server b/s is UP");
    let mut g = channel(lb.addr("frontend", "f"));
    assert_eq!(unary(&mut g, "hi").expect("unary"), "hi");
    // An error status travels in the trailers.
    let e = unary(&mut g, "fail").unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert_eq!(e.message(), "asked to fail");
    // Bidirectional: each reply arrives before the next message is sent.
    rt().block_on(async {
        let (tx, rx) = tokio::sync::mpsc::channel::<Msg>(1);
        g.ready().await.expect("ready");
        let resp = g
            .streaming(
                tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
                http::uri::PathAndQuery::from_static("/test.Echo/Stream"),
                Codec::default(),
            )
            .await
            .expect("stream");
        let mut inbound = resp.into_inner();
        for i in 0..3 {
            tx.send(Msg {
                text: format!("m{i}"),
            })
            .await
            .expect("send");
            let m = tokio::time::timeout(common::WAIT, inbound.message())
                .await
                .expect("reply in time")
                .expect("reply")
                .expect("a message");
            assert_eq!(m.text, format!("echo m{i}"));
        }
        drop(tx);
        let end = tokio::time::timeout(common::WAIT, inbound.message())
            .await
            .expect("end in time");
        assert!(matches!(end, Ok(None)), "{end:?}");
    });
}
