//! `ws-ceiling`: the bare WebSocket broadcast server Parley is measured against.
//!
//! `GET /ws?room=R` joins room `R`; every text frame a member sends is written, unchanged, to
//! every member of the room (the sender included, as Parley's `message.new` is). No auth, no
//! persistence, no JSON parsing. Like Parley, each connection has a bounded outbound queue
//! (256 frames) and a member that falls behind it is closed with 4009. With a
//! [`DurableLog`] (`ws-ceiling --log PATH`) each frame is broadcast only once it is written
//! and fdatasync'd: the durable broadcaster of [`crate::ceiling_log`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::ceiling_log::{DurableLog, Pending};

/// Frames queued per member before it is closed as too slow (Parley's default).
pub const OUTBOUND_QUEUE: usize = 256;

#[derive(Default)]
struct Rooms {
    rooms: Mutex<HashMap<String, broadcast::Sender<Utf8Bytes>>>,
}

impl Rooms {
    fn join(&self, room: &str) -> (broadcast::Sender<Utf8Bytes>, broadcast::Receiver<Utf8Bytes>) {
        let mut rooms = self.rooms.lock().expect("rooms lock");
        let sender = rooms
            .entry(room.to_owned())
            .or_insert_with(|| broadcast::channel(OUTBOUND_QUEUE).0)
            .clone();
        let receiver = sender.subscribe();
        (sender, receiver)
    }
}

/// Accepts connections on `listener` forever; with `log`, frames are broadcast once durable.
pub async fn serve(listener: TcpListener, log: Option<DurableLog>) -> std::io::Result<()> {
    let rooms = Arc::new(Rooms::default());
    loop {
        let (stream, _) = listener.accept().await?;
        let rooms = rooms.clone();
        let log = log.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            handle(stream, rooms, log).await;
        });
    }
}

/// Binds `addr` and returns the listener and the bound address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

fn room_of(uri: &str) -> String {
    uri.split_once('?')
        .map(|(_, query)| query)
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("room="))
        .unwrap_or("")
        .to_owned()
}

// The callback's error type is tungstenite's (a whole HTTP response); it never fails here.
#[allow(clippy::result_large_err)]
async fn handle(stream: TcpStream, rooms: Arc<Rooms>, log: Option<DurableLog>) {
    // Join in the handshake callback, before the 101 goes out: a client that sees its
    // handshake complete is already a member.
    let mut membership = None;
    let callback = |request: &Request, response: Response| {
        membership = Some(rooms.join(&room_of(&request.uri().to_string())));
        Ok(response)
    };
    let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let Some((room_sender, mut room_receiver)) = membership else {
        return;
    };
    let (mut sink, mut source) = socket.split();
    let writer = tokio::spawn(async move {
        loop {
            let frame = match room_receiver.recv().await {
                Ok(frame) => frame,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let close = CloseFrame {
                        code: CloseCode::Library(4009),
                        reason: "too slow".into(),
                    };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if sink.feed(Message::Text(frame)).await.is_err() {
                return;
            }
            // Write what else is queued in one flush, as a busy server would.
            loop {
                match room_receiver.try_recv() {
                    Ok(frame) => {
                        if sink.feed(Message::Text(frame)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(_) => {
                        let _ = sink.close().await;
                        return;
                    }
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(frame)) = source.next().await {
        match frame {
            Message::Text(text) => match &log {
                Some(log) => log.append(Pending {
                    frame: text,
                    room: room_sender.clone(),
                }),
                None => {
                    let _ = room_sender.send(text);
                }
            },
            Message::Close(_) => break,
            _ => {}
        }
    }
    writer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_room_from_the_query() {
        assert_eq!(room_of("/ws?room=r7"), "r7");
        assert_eq!(room_of("/ws?x=1&room=abc"), "abc");
        assert_eq!(room_of("/ws"), "");
    }

    #[tokio::test]
    async fn broadcasts_to_every_member_of_the_room_only() {
        let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let server = tokio::spawn(serve(listener, None));
        let connect = |room: &'static str| async move {
            let url = format!("ws://{addr}/ws?room={room}");
            tokio_tungstenite::connect_async(url).await.unwrap().0
        };
        let mut alice = connect("a").await;
        let mut bob = connect("a").await;
        let mut carol = connect("b").await;
        alice.send(Message::text("hello")).await.unwrap();
        for member in [&mut alice, &mut bob] {
            let frame = tokio::time::timeout(std::time::Duration::from_secs(5), member.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(frame.into_text().unwrap().as_str(), "hello");
        }
        let nothing =
            tokio::time::timeout(std::time::Duration::from_millis(200), carol.next()).await;
        assert!(nothing.is_err(), "room b received a frame of room a");
        server.abort();
    }
}
