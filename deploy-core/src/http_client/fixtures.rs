//! A scripted HTTP/1.1 server on loopback for the tests of the HTTP clients in this
//! crate: each connection gets the next reply of a script (the last one repeats).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the server does with one request.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// Answers with a status, a content type and a body.
    Respond { status: u16, content_type: &'static str, body: String },
    /// Answers with a redirect to `location`.
    Redirect { status: u16, location: String },
    /// Answers with a chunked body (no content-length).
    Chunked { status: u16, body: String },
    /// Reads the request and never answers.
    Hang,
}

impl Reply {
    pub(crate) fn text(status: u16, body: &str) -> Self {
        Self::Respond { status, content_type: "text/plain", body: body.to_owned() }
    }

    pub(crate) fn redirect(status: u16, location: &str) -> Self {
        Self::Redirect { status, location: location.to_owned() }
    }

    pub(crate) fn json(status: u16, body: &str) -> Self {
        Self::Respond { status, content_type: "application/json", body: body.to_owned() }
    }
}

/// A request as the server saw it: the request line and the headers, lower-cased names.
#[derive(Debug, Clone)]
pub(crate) struct SeenRequest {
    pub(crate) line: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl SeenRequest {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// The server; stops when dropped.
pub(crate) struct ScriptedServer {
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    task: JoinHandle<()>,
}

impl ScriptedServer {
    pub(crate) async fn start(script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let reply = {
                    let mut script = script.lock().unwrap();
                    if script.len() > 1 { script.remove(0) } else { script[0].clone() }
                };
                let log = Arc::clone(&log);
                tokio::spawn(async move { serve(stream, reply, log).await });
            }
        });
        Self { addr, seen, task }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, reply: Reply, log: Arc<Mutex<Vec<SeenRequest>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    log.lock().unwrap().push(SeenRequest { line, headers });
    match reply {
        Reply::Respond { status, content_type, body } => {
            let head = format!(
                "HTTP/1.1 {status} Scripted\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Reply::Redirect { status, location } => {
            let head = format!(
                "HTTP/1.1 {status} Moved\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Reply::Chunked { status, body } => {
            let head = format!("HTTP/1.1 {status} Scripted\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n");
            let _ = stream.write_all(head.as_bytes()).await;
            for piece in body.as_bytes().chunks(1000) {
                let _ = stream.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).await;
                let _ = stream.write_all(piece).await;
                let _ = stream.write_all(b"\r\n").await;
            }
            let _ = stream.write_all(b"0\r\n\r\n").await;
            let _ = stream.shutdown().await;
        }
        Reply::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
    }
}

/// An address on which nothing listens: bound, then released.
pub(crate) async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}
