//! An in-process HTTP/1.1 proxy in front of a real registry that misbehaves on demand: answers
//! 500 (or any status), 429 with `Retry-After`, resets the connection in the middle of a request
//! or response body, or is slow. A hostile registry too: it redirects to another host, sets a
//! `WWW-Authenticate` challenge of its choosing, plays a token service, stalls in the middle of
//! a body, sends a body that never ends, or announces a huge `Content-Length`. Rules match by
//! method, path substring and the absence of a header value, and fire after a number of
//! matching requests, a number of times or forever. Every request is recorded with its arrival
//! time and headers, so tests can check what the client did and sent. One request per
//! connection: the proxy answers `Connection: close`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a matching rule does to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status (with a distribution-spec error body) without forwarding.
    Status(u16),
    /// Answer 429 with `Retry-After: SECONDS` without forwarding.
    TooManyRequests { retry_after: u64 },
    /// Read this many bytes of the request body, then reset the connection.
    ResetRequestBody { after: usize },
    /// Forward, relay the response headers and this many body bytes, then reset.
    ResetResponseBody { after: usize },
    /// Wait, then forward.
    Delay(Duration),
    /// Answer `307 Temporary Redirect` to the same path and query on `base` (`http://host:port`).
    Redirect(String),
    /// Answer 401 with this `WWW-Authenticate` value without forwarding.
    Challenge(String),
    /// Play a token service: answer 200 with `{"token": TOKEN}` without forwarding.
    Token(String),
    /// Forward, relay the response headers and this many body bytes, then send nothing more
    /// while holding the connection open (until the proxy is dropped).
    Stall { after: usize },
    /// Forward, relay the response body one byte per `interval`.
    Drip { interval: Duration },
    /// Answer 200 with a chunked body of zeros that never ends (until the client hangs up).
    Endless,
    /// Answer 200 announcing `Content-Length: LEN`, then send zeros until the client hangs up.
    HugeLength(u64),
    /// Forward without the request's `Range` header: the whole body, as a server that does not
    /// do ranges answers.
    IgnoreRange,
}

/// When a fault applies.
#[derive(Debug, Clone)]
pub struct Rule {
    method: Option<String>,
    path: Option<String>,
    unless: Option<(String, String)>,
    skip: usize,
    times: Option<usize>,
    fault: Fault,
    seen: usize,
    fired: usize,
}

impl Rule {
    /// A rule firing on every request, forever, until narrowed.
    pub fn new(fault: Fault) -> Rule {
        Rule {
            method: None,
            path: None,
            unless: None,
            skip: 0,
            times: None,
            fault,
            seen: 0,
            fired: 0,
        }
    }
    /// Only requests with this method.
    pub fn method(mut self, method: &str) -> Rule {
        self.method = Some(method.to_string());
        self
    }
    /// Only requests whose path (with query) contains `pattern`.
    pub fn path(mut self, pattern: &str) -> Rule {
        self.path = Some(pattern.to_string());
        self
    }
    /// Only requests that lack header `name` with exactly `value` (e.g. a token the client
    /// should have fetched).
    pub fn unless_header(mut self, name: &str, value: &str) -> Rule {
        self.unless = Some((name.to_ascii_lowercase(), value.to_string()));
        self
    }
    /// Let the first `n` matching requests through.
    pub fn skip(mut self, n: usize) -> Rule {
        self.skip = n;
        self
    }
    /// Fire at most `n` times.
    pub fn times(mut self, n: usize) -> Rule {
        self.times = Some(n);
        self
    }

    fn take(&mut self, method: &str, path: &str, headers: &[(String, String)]) -> Option<Fault> {
        if self.method.as_deref().is_some_and(|m| m != method)
            || self.path.as_deref().is_some_and(|p| !path.contains(p))
            || self
                .unless
                .as_ref()
                .is_some_and(|u| headers.iter().any(|(k, v)| (k, v) == (&u.0, &u.1)))
        {
            return None;
        }
        self.seen += 1;
        if self.seen <= self.skip || self.times.is_some_and(|t| self.fired >= t) {
            return None;
        }
        self.fired += 1;
        Some(self.fault.clone())
    }
}

/// One request the proxy saw.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    /// Path with the query string.
    pub path: String,
    /// Request headers, names in lower case, in order.
    pub headers: Vec<(String, String)>,
    pub at: Instant,
    pub fault: Option<Fault>,
}

impl Hit {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `needle` appears anywhere in what the client sent: path, query or a header.
    pub fn contains(&self, needle: &str) -> bool {
        self.path.contains(needle)
            || self
                .headers
                .iter()
                .any(|(k, v)| k.contains(needle) || v.contains(needle))
    }
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    hits: Vec<Hit>,
}

/// The running proxy; stops when dropped.
pub struct FaultProxy {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listen on a free loopback port and forward to `upstream` (`host:port`, plain HTTP).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (state, upstream, stop) = (state.clone(), upstream.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let _ = serve(conn, &upstream, &state, &stop);
                    });
                }
            })
        };
        FaultProxy {
            addr,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn add(&self, rule: Rule) {
        self.state.lock().unwrap().rules.push(rule);
    }

    /// Drop all rules (recorded hits stay).
    pub fn clear(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.lock().unwrap().hits.clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Close with RST rather than FIN, as a crashed peer or middlebox would.
fn reset(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

fn serve(
    conn: TcpStream,
    upstream: &str,
    state: &Mutex<State>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    // A TLS ClientHello (record type 0x16) is not HTTP: close, as a plain-HTTP server would.
    if reader.fill_buf()?.first() == Some(&0x16) {
        return conn.shutdown(Shutdown::Both);
    }
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line)? == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        let end = line == b"\r\n";
        head.extend_from_slice(&line);
        if end {
            break;
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let (method, path) = (
        request_line.next().unwrap_or("").to_string(),
        request_line.next().unwrap_or("").to_string(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };

    let fault = {
        let mut st = state.lock().unwrap();
        let fault = st
            .rules
            .iter_mut()
            .find_map(|r| r.take(&method, &path, &headers));
        st.hits.push(Hit {
            method: method.clone(),
            path: path.clone(),
            headers: headers.clone(),
            at: Instant::now(),
            fault: fault.clone(),
        });
        fault
    };

    // The request body: Content-Length, or chunked (de-chunked and forwarded with a length).
    let chunked = get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length: usize = get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if let Some(Fault::ResetRequestBody { after }) = fault {
        let mut part = vec![0u8; after.min(length)];
        let _ = reader.read_exact(&mut part);
        reset(conn);
        return Ok(());
    }
    let body = if chunked {
        read_chunked(&mut reader)?
    } else {
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        body
    };

    let mut conn = conn;
    match &fault {
        Some(Fault::Status(code)) => {
            let body =
                format!(r#"{{"errors":[{{"code":"UNKNOWN","message":"injected {code}"}}]}}"#);
            let head = format!(
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes())?;
            conn.write_all(body.as_bytes())?;
            return conn.shutdown(Shutdown::Both);
        }
        Some(Fault::TooManyRequests { retry_after }) => {
            let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}"#;
            let head = format!(
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: {retry_after}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes())?;
            conn.write_all(body.as_bytes())?;
            return conn.shutdown(Shutdown::Both);
        }
        Some(Fault::Delay(d)) => std::thread::sleep(*d),
        Some(Fault::Redirect(base)) => {
            let head = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {base}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            conn.write_all(head.as_bytes())?;
            return conn.shutdown(Shutdown::Both);
        }
        Some(Fault::Challenge(value)) => {
            let body =
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            let head = format!(
                "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {value}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes())?;
            conn.write_all(body.as_bytes())?;
            return conn.shutdown(Shutdown::Both);
        }
        Some(Fault::Token(token)) => {
            let body = format!(r#"{{"token":"{token}","expires_in":300}}"#);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes())?;
            conn.write_all(body.as_bytes())?;
            return conn.shutdown(Shutdown::Both);
        }
        Some(Fault::Endless) => {
            conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            )?;
            let chunk = [0u8; 64 * 1024];
            let size = format!("{:x}\r\n", chunk.len());
            while !stop.load(Ordering::SeqCst) {
                conn.write_all(size.as_bytes())?;
                conn.write_all(&chunk)?;
                conn.write_all(b"\r\n")?;
            }
            return Ok(());
        }
        Some(Fault::HugeLength(len)) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            );
            conn.write_all(head.as_bytes())?;
            let chunk = [0u8; 64 * 1024];
            while !stop.load(Ordering::SeqCst) {
                conn.write_all(&chunk)?;
            }
            return Ok(());
        }
        _ => {}
    }

    // Forward with one request per connection, then relay the answer until the upstream closes.
    let mut up = TcpStream::connect(upstream)?;
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    let ignore_range = matches!(fault, Some(Fault::IgnoreRange));
    for (k, v) in &headers {
        if ignore_range && k == "range" {
            continue;
        }
        if !matches!(
            k.as_str(),
            "connection" | "transfer-encoding" | "content-length" | "keep-alive"
        ) {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    if !body.is_empty()
        || length > 0
        || chunked
        || matches!(method.as_str(), "POST" | "PUT" | "PATCH")
    {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("connection: close\r\n\r\n");
    up.write_all(out.as_bytes())?;
    up.write_all(&body)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    if let Some(Fault::ResetResponseBody { after }) = fault {
        let head_end = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(answer.len(), |p| p + 4);
        let cut = (head_end + after).min(answer.len());
        conn.write_all(&answer[..cut])?;
        conn.flush()?;
        std::thread::sleep(Duration::from_millis(20));
        reset(conn);
        return Ok(());
    }
    let head_end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |p| p + 4);
    match fault {
        Some(Fault::Stall { after }) => {
            let cut = (head_end + after).min(answer.len());
            conn.write_all(&answer[..cut])?;
            conn.flush()?;
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return Ok(());
        }
        Some(Fault::Drip { interval }) => {
            conn.write_all(&answer[..head_end])?;
            for byte in &answer[head_end..] {
                if stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                std::thread::sleep(interval);
                conn.write_all(std::slice::from_ref(byte))?;
                conn.flush()?;
            }
            return conn.shutdown(Shutdown::Both);
        }
        _ => {}
    }
    conn.write_all(&answer)?;
    conn.shutdown(Shutdown::Both)
}

fn read_chunked(reader: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        if size == 0 {
            // Trailers end with an empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        line.clear();
        reader.read_line(&mut line)?;
    }
}
