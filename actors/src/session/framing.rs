//! [`TrackedStream`]: a session's TCP stream, which follows where the client's WebSocket frames
//! begin and end in the bytes read (RFC 6455 §5.2), headers only. Once the WebSocket gives up
//! reading frames (a frame over the hard limit: its payload is never read; a protocol error),
//! the connection drops the rest of the input through it and still sees the client's close
//! frame arrive, so it can end the connection then instead of waiting out the close handshake.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The close frame's opcode.
const CLOSE_OPCODE: u8 = 0x8;

/// Where the frame being read stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Expecting a frame's first byte (FIN, opcode).
    First,
    /// Expecting the byte with the mask bit and the 7-bit length.
    Second,
    /// Reading an extended length: `bytes` more to go.
    Length { bytes: u8, masked: bool },
    /// Reading the masking key: `bytes` more to go.
    Mask { bytes: u8 },
    /// Skipping the payload.
    Payload,
}

/// Frame boundaries in a client's byte stream (16 bytes per session).
#[derive(Debug)]
struct FrameBoundaries {
    stage: Stage,
    opcode: u8,
    /// The extended length read so far, then the payload bytes left.
    length: u64,
    /// A whole close frame went by.
    close_seen: bool,
}

const _: () = assert!(std::mem::size_of::<FrameBoundaries>() == 16);

impl FrameBoundaries {
    fn new() -> Self {
        Self {
            stage: Stage::First,
            opcode: 0,
            length: 0,
            close_seen: false,
        }
    }

    /// Follows `bytes`, the next bytes of the stream.
    fn observe(&mut self, mut bytes: &[u8]) {
        while let Some((&byte, rest)) = bytes.split_first() {
            if self.stage == Stage::Payload {
                let skipped = usize::try_from(self.length)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                bytes = &bytes[skipped..];
                self.length -= skipped as u64;
                if self.length == 0 {
                    self.frame_read();
                }
                continue;
            }
            self.header_byte(byte);
            bytes = rest;
        }
    }

    fn header_byte(&mut self, byte: u8) {
        match self.stage {
            Stage::First => {
                self.opcode = byte & 0x0f;
                self.stage = Stage::Second;
            }
            Stage::Second => {
                let masked = byte & 0x80 != 0;
                self.length = 0;
                match byte & 0x7f {
                    126 => self.stage = Stage::Length { bytes: 2, masked },
                    127 => self.stage = Stage::Length { bytes: 8, masked },
                    length => {
                        self.length = u64::from(length);
                        self.length_read(masked);
                    }
                }
            }
            Stage::Length { bytes, masked } => {
                self.length = (self.length << 8) | u64::from(byte);
                if bytes == 1 {
                    self.length_read(masked);
                } else {
                    self.stage = Stage::Length {
                        bytes: bytes - 1,
                        masked,
                    };
                }
            }
            Stage::Mask { bytes } => {
                if bytes == 1 {
                    self.payload_next();
                } else {
                    self.stage = Stage::Mask { bytes: bytes - 1 };
                }
            }
            Stage::Payload => unreachable!("payload bytes are skipped, not parsed"),
        }
    }

    fn length_read(&mut self, masked: bool) {
        if masked {
            self.stage = Stage::Mask { bytes: 4 };
        } else {
            self.payload_next();
        }
    }

    fn payload_next(&mut self) {
        if self.length == 0 {
            self.frame_read();
        } else {
            self.stage = Stage::Payload;
        }
    }

    fn frame_read(&mut self) {
        if self.opcode == CLOSE_OPCODE {
            self.close_seen = true;
        }
        self.stage = Stage::First;
    }
}

/// A session's TCP stream: reads and writes go straight through; the frame boundaries of what
/// is read are followed.
pub(super) struct TrackedStream {
    stream: TcpStream,
    frames: FrameBoundaries,
}

impl TrackedStream {
    /// `stream`, of which `leftover` (read past the HTTP handshake) was read already.
    pub(super) fn new(stream: TcpStream, leftover: &[u8]) -> Self {
        let mut frames = FrameBoundaries::new();
        frames.observe(leftover);
        Self { stream, frames }
    }

    /// The client's close frame was read (whether or not the WebSocket read it as a frame).
    pub(super) fn client_closed(&self) -> bool {
        self.frames.close_seen
    }
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffer: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buffer.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buffer);
        if let Poll::Ready(Ok(())) = read {
            this.frames.observe(&buffer.filled()[before..]);
        }
        read
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, bytes)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buffers: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, buffers)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame of `opcode` with a `length`-byte payload.
    fn frame(opcode: u8, length: usize) -> Vec<u8> {
        let mut bytes = vec![0x80 | opcode];
        match length {
            0..=125 => bytes.push(0x80 | length as u8),
            126..=0xffff => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(length as u16).to_be_bytes());
            }
            _ => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&(length as u64).to_be_bytes());
            }
        }
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        // A payload that looks like a close frame must not count as one.
        bytes.extend((0..length).map(|index| [0x88, 0x82][index % 2]));
        bytes
    }

    fn observed_in_chunks(stream: &[u8], chunk: usize) -> FrameBoundaries {
        let mut frames = FrameBoundaries::new();
        for piece in stream.chunks(chunk) {
            frames.observe(piece);
        }
        frames
    }

    #[test]
    fn a_close_frame_is_seen_after_frames_of_every_length_encoding() {
        let mut stream = Vec::new();
        for (opcode, length) in [(0x1, 0), (0x1, 125), (0x2, 126), (0x1, 70_000), (0x9, 4)] {
            stream.extend(frame(opcode, length));
        }
        for chunk in [1, 3, 256, 8192, stream.len()] {
            let frames = observed_in_chunks(&stream, chunk);
            assert!(!frames.close_seen, "chunk {chunk}");
            assert_eq!(frames.stage, Stage::First, "chunk {chunk}");
        }
        stream.extend(frame(CLOSE_OPCODE, 2));
        for chunk in [1, 7, 8192] {
            assert!(
                observed_in_chunks(&stream, chunk).close_seen,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_close_frame_is_seen_only_once_whole() {
        let close = frame(CLOSE_OPCODE, 2);
        let mut frames = FrameBoundaries::new();
        frames.observe(&close[..close.len() - 1]);
        assert!(!frames.close_seen);
        frames.observe(&close[close.len() - 1..]);
        assert!(frames.close_seen);
    }

    #[test]
    fn an_oversized_frame_is_skipped_by_its_length() {
        let mut stream = frame(0x1, 2 * 1024 * 1024);
        stream.extend(frame(CLOSE_OPCODE, 0));
        let frames = observed_in_chunks(&stream, 8192);
        assert!(frames.close_seen);
    }
}
