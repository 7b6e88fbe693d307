//! Criterion benchmarks of HTTP/1.1 request-head parsing (`cargo bench --bench parse`), in bytes per second.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use lb::http::body::{Chunk, ChunkedDecoder};
use lb::http::head::{parse_request, parse_response, HeadLimits};

const BROWSER: &[u8] = b"GET /static/js/app.4f3c2a1b.js?v=20261122 HTTP/1.1\r\n\
Host: www.foobar.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0\r\n\
Accept: */*\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Referer: https://www.foobar.com/\r\n\
Connection: keep-alive\r\n\
Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; _ga=GA1.2.1234567890\r\n\
Sec-Fetch-Dest: script\r\n\
Sec-Fetch-Mode: no-cors\r\n\
Sec-Fetch-Site: same-origin\r\n\
If-None-Match: \"5e8f-2c1a\"\r\n\
\r\n";

const MINIMAL: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Sun, 22 Nov 2026 10:00:00 GMT\r\n\
Content-Type: application/javascript\r\n\
Content-Length: 48213\r\n\
Cache-Control: public, max-age=31536000\r\n\
ETag: \"5e8f-2c1a\"\r\n\
Connection: keep-alive\r\n\
\r\n";

fn heads(c: &mut Criterion) {
    let limits = HeadLimits::default();
    let mut g = c.benchmark_group("request_head");
    for (name, input) in [("browser", BROWSER), ("minimal", MINIMAL)] {
        g.throughput(Throughput::Bytes(input.len() as u64));
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || BytesMut::from(input),
                |buf| black_box(parse_request(buf, &limits).ok().flatten()),
                BatchSize::SmallInput,
            )
        });
    }
    // baseline: httparse's scan alone, no checks, no spans, no split
    g.throughput(Throughput::Bytes(BROWSER.len() as u64));
    g.bench_function("browser_httparse_only", |b| {
        b.iter(|| {
            let mut hs = [httparse::EMPTY_HEADER; 100];
            let mut r = httparse::Request::new(&mut hs);
            black_box(r.parse(black_box(BROWSER)).is_ok())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("response_head");
    g.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    g.bench_function("typical", |b| {
        b.iter_batched_ref(
            || BytesMut::from(RESPONSE),
            |buf| black_box(parse_response(buf, &limits, false).ok().flatten()),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    // 64 KiB body in 4 KiB chunks
    let mut body = Vec::new();
    for _ in 0..16 {
        body.extend_from_slice(b"1000\r\n");
        body.extend_from_slice(&[b'x'; 4096]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut g = c.benchmark_group("chunked");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("64k_in_4k_chunks", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&body[..]),
            |buf| {
                let mut d = ChunkedDecoder::default();
                let mut n = 0;
                while let Ok(Some(c)) = d.decode(buf) {
                    if let Chunk::Data(x) = c {
                        n += x.len();
                    }
                }
                black_box(n)
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, heads);
criterion_main!(benches);
