//! A raw HTTP/1.1 client of the HTTP door: each request on its own connection
//! (`Connection: close`), written byte for byte as given, the answer read to the end. Raw on
//! purpose: tests see exactly the status, headers and body the door sends, and can send what no
//! well-behaved client would.
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one HTTP exchange may take.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(30);

/// The API key test clients send unless told otherwise.
pub const TEST_API_KEY: &str = "roster-test-key";

#[derive(Debug, Clone)]
pub struct HttpClient {
    addr: SocketAddr,
    api_key: Option<String>,
    token: Option<String>,
}

/// What the door answered.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Json::Null` when it is not JSON; see `text`).
    pub body: Json,
    pub text: String,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a success and gives the body.
    pub fn ok(self) -> Json {
        assert_eq!(
            self.status, 200,
            "expected 200, got {}: {}",
            self.status, self.text
        );
        assert!(
            self.body["duration"]
                .as_str()
                .is_some_and(|d| d.ends_with("ms")),
            "every answer carries duration: {}",
            self.text
        );
        self.body
    }

    /// Asserts Stream's error body with HTTP status `status` and code `code`; gives the body.
    pub fn error(self, status: u16, code: i64) -> Json {
        assert_eq!(
            (self.status, self.body["code"].as_i64()),
            (status, Some(code)),
            "expected {status}/{code}, got: {}",
            self.text
        );
        assert_eq!(self.body["StatusCode"], status, "{}", self.text);
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(
            self.body["duration"]
                .as_str()
                .is_some_and(|d| d.ends_with("ms"))
        );
        assert!(self.body["more_info"].is_string(), "{}", self.text);
        assert!(self.body["details"].is_array(), "{}", self.text);
        assert_eq!(self.header("content-type"), Some("application/json"));
        self.body
    }
}

impl HttpClient {
    pub fn new(addr: SocketAddr) -> Self {
        HttpClient {
            addr,
            api_key: Some(TEST_API_KEY.to_owned()),
            token: None,
        }
    }

    /// The same client sending `api_key=<key>` (or none).
    pub fn key(&self, key: Option<&str>) -> Self {
        HttpClient {
            api_key: key.map(str::to_owned),
            ..self.clone()
        }
    }

    /// The same client sending `Authorization: <token>` and `stream-auth-type: jwt`.
    pub fn token(&self, token: &str) -> Self {
        HttpClient {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// `path` with `api_key` added to its query.
    fn target(&self, path: &str) -> String {
        match &self.api_key {
            Some(key) => {
                let sep = if path.contains('?') { '&' } else { '?' };
                format!("{path}{sep}api_key={}", encode(key))
            }
            None => path.to_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> HttpAnswer {
        self.send("GET", path, None).await
    }

    pub async fn delete(&self, path: &str) -> HttpAnswer {
        self.send("DELETE", path, None).await
    }

    pub async fn post(&self, path: &str, body: &Json) -> HttpAnswer {
        self.send("POST", path, Some(body.to_string().as_bytes()))
            .await
    }

    pub async fn patch(&self, path: &str, body: &Json) -> HttpAnswer {
        self.send("PATCH", path, Some(body.to_string().as_bytes()))
            .await
    }

    /// `GET /api/v2/users?payload=<payload>`.
    pub async fn query_users(&self, payload: &Json) -> HttpAnswer {
        self.get(&format!(
            "/api/v2/users?payload={}",
            encode(&payload.to_string())
        ))
        .await
    }

    /// One request with `body` (sent with its length) as given.
    pub async fn send(&self, method: &str, path: &str, body: Option<&[u8]>) -> HttpAnswer {
        let mut head = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.target(path),
            self.addr
        );
        if let Some(token) = &self.token {
            head.push_str(&format!(
                "Authorization: {token}\r\nstream-auth-type: jwt\r\n"
            ));
        }
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        raw_exchange(self.addr, bytes).await
    }
}

/// Percent-encodes a query value.
pub fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Writes `request` (while reading, so that an answer sent before the whole request was read
/// is still seen) and reads the answer to the end of the connection.
pub async fn raw_exchange(addr: SocketAddr, request: Vec<u8>) -> HttpAnswer {
    let exchange = async {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the HTTP door");
        let (mut read, mut write) = stream.into_split();
        let writer = tokio::spawn(async move {
            // The door may answer and close before reading all of a refused body.
            let _ = write.write_all(&request).await;
            let _ = write.flush().await;
            write
        });
        let mut answer = Vec::new();
        // A reset after the answer arrived (an unread refused body) ends the read, not the test.
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match read.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            }
        }
        drop(writer.await);
        parse(&answer)
    };
    tokio::time::timeout(EXCHANGE_DEADLINE, exchange)
        .await
        .unwrap_or_else(|_| panic!("no HTTP answer within {EXCHANGE_DEADLINE:?}"))
}

fn parse(answer: &[u8]) -> HttpAnswer {
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(answer)));
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let mut body = answer[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    HttpAnswer {
        status,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Json::Null),
        text,
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&rest[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&rest[start..(start + size).min(rest.len())]);
        rest = &rest[(start + size + 2).min(rest.len())..];
    }
    out
}
