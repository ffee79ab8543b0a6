//! A WebSocket client at the frame level over raw TCP, for what a library client hides: it
//! never answers a ping or a close frame by itself, so a test decides when, and whether, it
//! answers.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct RawSocket {
    stream: tokio::net::TcpStream,
    /// Bytes read and not parsed yet.
    buffer: Vec<u8>,
}

impl RawSocket {
    /// Opens `/ws` with `token` and checks the 101; what follows the handshake stays buffered.
    pub async fn connect(addr: &str, token: &str) -> RawSocket {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        let request = format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut buffer = Vec::new();
        let end = loop {
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(super::WAIT, stream.read(&mut chunk))
                .await
                .expect("handshake in time")
                .expect("read");
            assert!(read > 0, "connection closed during the handshake");
            buffer.extend_from_slice(&chunk[..read]);
            if let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                break end + 4;
            }
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        buffer.drain(..end);
        RawSocket { stream, buffer }
    }

    /// Reads until `want` bytes are buffered; false when the connection ends first.
    async fn fill(&mut self, want: usize) -> bool {
        while self.buffer.len() < want {
            let mut chunk = [0u8; 65536];
            let read = tokio::time::timeout(Duration::from_secs(30), self.stream.read(&mut chunk))
                .await
                .expect("data in time")
                .expect("read");
            if read == 0 {
                return false;
            }
            self.buffer.extend_from_slice(&chunk[..read]);
        }
        true
    }

    /// Reads server frames (unmasked) until a close frame; returns its code and reason.
    pub async fn close_frame(&mut self) -> (u16, String) {
        loop {
            assert!(self.fill(2).await, "connection ended without a close frame");
            let opcode = self.buffer[0] & 0x0f;
            let (mut length, mut header) = (u64::from(self.buffer[1] & 0x7f), 2usize);
            if length == 126 {
                assert!(self.fill(4).await);
                length = u64::from(u16::from_be_bytes([self.buffer[2], self.buffer[3]]));
                header = 4;
            } else if length == 127 {
                assert!(self.fill(10).await);
                length = u64::from_be_bytes(self.buffer[2..10].try_into().unwrap());
                header = 10;
            }
            let total = header + length as usize;
            assert!(self.fill(total).await, "connection ended inside a frame");
            let payload: Vec<u8> = self.buffer[header..total].to_vec();
            self.buffer.drain(..total);
            if opcode == 0x8 {
                assert!(payload.len() >= 2, "close frame without a code");
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                return (code, String::from_utf8_lossy(&payload[2..]).to_string());
            }
        }
    }

    /// Sends one final, masked data frame of `opcode` (0x1 text, 0x2 binary) with `payload`,
    /// however large; `Err` when the server breaks the connection while it is written.
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mask = [0x0fu8, 0xf0, 0x3c, 0xc3];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            length @ 0..=125 => frame.push(0x80 | length as u8),
            length @ 126..=0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(length as u16).to_be_bytes());
            }
            length => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(length as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(
            payload
                .iter()
                .enumerate()
                .map(|(index, byte)| byte ^ mask[index % 4]),
        );
        self.stream.write_all(&frame).await
    }

    /// Sends a (masked) close frame with `code`.
    pub async fn send_close(&mut self, code: u16) {
        let mask = [0x12u8, 0x34, 0x56, 0x78];
        let mut frame = vec![0x88, 0x80 | 2];
        frame.extend_from_slice(&mask);
        frame.extend(
            code.to_be_bytes()
                .iter()
                .enumerate()
                .map(|(index, byte)| byte ^ mask[index % 4]),
        );
        self.stream.write_all(&frame).await.expect("write close");
    }

    /// Whether the server ends the connection within `limit`, reading (and dropping) anything
    /// else it sends: `None` when it is still open, `Some(Err(_))` for a reset.
    pub async fn ended_within(&mut self, limit: Duration) -> Option<std::io::Result<()>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0)) => return Some(Ok(())),
                Ok(Ok(_)) => continue,
                Ok(Err(error)) => return Some(Err(error)),
            }
        }
    }
}
