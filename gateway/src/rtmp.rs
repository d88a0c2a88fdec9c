//! RTMP publishers (cameras or encoders that only speak RTMP, and agents whose `live_target` is
//! `rtmp://`): `rtmp://GATEWAY:1935/<station>/<camera>?passphrase=<the station's passphrase>`
//! (the passphrase in the stream name, as SRS and nginx-rtmp take credentials). The RTMP
//! protocol (handshake, chunks, AMF commands) is `rml_rtmp`'s; each published video tag is
//! wrapped back into FLV and remuxed to MPEG-TS by GStreamer (`flvdemux ! h264parse !
//! mpegtsmux`, no decoding), and from there it is a publisher like any SRT one (`publish.rs`).
//! Audio is dropped (no sound in live video). One thread per connection; a connection that
//! has not published within 10 s, or whose station or passphrase is wrong, is closed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use gst::prelude::*;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use stationwatch_protocol::{CameraId, StationId};
use tracing::{debug, info, warn};

use crate::publish::{Next, Publishers, Source};
use crate::stations::Stations;

/// MPEG-TS chunks waiting for the publisher's reader; beyond, the newest are dropped.
const QUEUED_CHUNKS: usize = 256;

/// Accepts RTMP connections until the listener fails (it is closed at shutdown). At most
/// `max_connections` at once (one thread each): beyond, a connection is closed at once, so
/// that unauthenticated callers cannot pile up threads.
pub fn serve(
    listener: TcpListener,
    stations: Stations,
    publishers: Arc<Publishers>,
    max_connections: usize,
) {
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                use std::sync::atomic::Ordering;
                if open.load(Ordering::Relaxed) >= max_connections {
                    warn!(peer = ?stream.peer_addr().ok(), max_connections, "RTMP connection refused: too many open");
                    continue;
                }
                open.fetch_add(1, Ordering::Relaxed);
                let open_here = open.clone();
                let (s, p) = (stations.clone(), publishers.clone());
                let spawned =
                    std::thread::Builder::new()
                        .name("rtmp-conn".into())
                        .spawn(move || {
                            let peer = stream.peer_addr().ok();
                            if let Err(e) = connection(stream, &s, &p) {
                                info!(?peer, reason = %e, "RTMP connection closed");
                            }
                            open_here.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        });
                if let Err(e) = spawned {
                    open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    warn!(error = %e, "RTMP connection thread not started");
                }
            }
            Err(e) => {
                debug!(error = %e, "RTMP accept failed");
            }
        }
    }
}

/// `<camera>?passphrase=<p>` → camera and passphrase.
fn parse_stream_key(key: &str) -> Result<(CameraId, String), String> {
    let (camera, query) = key
        .split_once('?')
        .ok_or("the stream name has no ?passphrase=")?;
    let pass = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("passphrase="))
        .ok_or("the stream name has no ?passphrase=")?;
    let camera = CameraId::new(camera).map_err(|e| format!("camera: {e}"))?;
    Ok((camera, pass.to_owned()))
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn send(
    stream: &mut TcpStream,
    results: Vec<ServerSessionResult>,
) -> Result<Vec<ServerSessionEvent>, String> {
    let mut events = Vec::new();
    for r in results {
        match r {
            ServerSessionResult::OutboundResponse(p) => {
                stream.write_all(&p.bytes).map_err(|e| e.to_string())?
            }
            ServerSessionResult::RaisedEvent(e) => events.push(e),
            ServerSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
    Ok(events)
}

fn connection(
    mut stream: TcpStream,
    stations: &Stations,
    publishers: &Arc<Publishers>,
) -> Result<(), String> {
    let peer = stream.peer_addr().ok();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    // Handshake.
    let mut hs = Handshake::new(PeerType::Server);
    let rest = loop {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed during the handshake".into());
        }
        match hs
            .process_bytes(&buf[..n])
            .map_err(|e| format!("handshake: {e:?}"))?
        {
            HandshakeProcessResult::InProgress { response_bytes } => stream
                .write_all(&response_bytes)
                .map_err(|e| e.to_string())?,
            HandshakeProcessResult::Completed {
                response_bytes,
                remaining_bytes,
            } => {
                stream
                    .write_all(&response_bytes)
                    .map_err(|e| e.to_string())?;
                break remaining_bytes;
            }
        }
    };
    let (mut session, initial) =
        ServerSession::new(ServerSessionConfig::new()).map_err(|e| format!("{e:?}"))?;
    send(&mut stream, initial)?;
    let mut pending = session.handle_input(&rest).map_err(|e| format!("{e:?}"))?;
    let mut app = String::new();
    let mut remux: Option<Remux> = None;
    loop {
        let events = send(&mut stream, std::mem::take(&mut pending))?;
        for ev in events {
            match ev {
                ServerSessionEvent::ConnectionRequested {
                    request_id,
                    app_name,
                } => {
                    app = app_name;
                    pending.extend(
                        session
                            .accept_request(request_id)
                            .map_err(|e| format!("{e:?}"))?,
                    );
                }
                ServerSessionEvent::PublishStreamRequested {
                    request_id,
                    stream_key,
                    ..
                } => {
                    if remux.is_some() {
                        return Err("a second publish on one connection".into());
                    }
                    let admitted = StationId::new(app.clone())
                        .map_err(|e| format!("station: {e}"))
                        .and_then(|st| parse_stream_key(&stream_key).map(|(c, p)| (st, c, p)))
                        .and_then(|(st, cam, pass)| match stations.passphrase(&st) {
                            Some(want) if same(&want, &pass) => Ok((st, cam)),
                            Some(_) => Err(format!("wrong passphrase for station {st}")),
                            None => Err(format!("unknown station {st}")),
                        });
                    match admitted {
                        Ok((station, camera)) => {
                            pending.extend(
                                session
                                    .accept_request(request_id)
                                    .map_err(|e| format!("{e:?}"))?,
                            );
                            let (r, source) = Remux::start(&format!("{station}-{camera}"))?;
                            let closer_stream = stream.try_clone().map_err(|e| e.to_string())?;
                            publishers.publish(
                                (station, camera),
                                peer,
                                "rtmp",
                                Box::new(source),
                                Arc::new(move || {
                                    let _ = closer_stream.shutdown(Shutdown::Both);
                                }),
                            );
                            remux = Some(r);
                        }
                        Err(why) => {
                            warn!(?peer, app = %app.escape_debug(), reason = %why, "RTMP publisher refused");
                            let r = session
                                .reject_request(request_id, "NetStream.Publish.BadName", "refused")
                                .map_err(|e| format!("{e:?}"))?;
                            let _ = send(&mut stream, r);
                            return Err(why);
                        }
                    }
                }
                ServerSessionEvent::VideoDataReceived {
                    data, timestamp, ..
                } => {
                    if let Some(r) = &remux {
                        r.push_video(&data, timestamp.value)?;
                    }
                }
                ServerSessionEvent::PublishStreamFinished { .. } => {
                    return Err("the publisher finished".into());
                }
                _ => {}
            }
        }
        if !pending.is_empty() {
            continue;
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => return Err("the publisher went away".into()),
            Ok(n) => n,
            Err(e) => return Err(e.to_string()),
        };
        pending = session
            .handle_input(&buf[..n])
            .map_err(|e| format!("{e:?}"))?;
    }
}

/// FLV video tags in, MPEG-TS out (GStreamer, no decoding).
struct Remux {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
}

struct RemuxSource {
    rx: Receiver<Vec<u8>>,
    current: Vec<u8>,
}

impl Source for RemuxSource {
    fn next(&mut self) -> Next<'_> {
        match self.rx.recv_timeout(Duration::from_secs(1)) {
            Ok(v) => {
                self.current = v;
                Next::Data(&self.current)
            }
            Err(RecvTimeoutError::Timeout) => Next::Idle,
            Err(RecvTimeoutError::Disconnected) => Next::Closed,
        }
    }
}

impl Remux {
    fn start(name: &str) -> Result<(Remux, RemuxSource), String> {
        let pipeline = gst::parse::launch(
            "appsrc name=src is-live=true format=time caps=video/x-flv \
             ! flvdemux name=demux demux.video ! queue ! h264parse config-interval=-1 \
             ! mpegtsmux alignment=7 ! appsink name=sink sync=false",
        )
        .map_err(|e| format!("RTMP remux pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "RTMP remux: not a pipeline".to_string())?;
        pipeline.set_property("name", format!("rtmp-{name}"));
        let appsrc = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or("RTMP remux: no appsrc")?;
        appsrc.set_max_bytes(8 << 20);
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or("RTMP remux: no appsink")?;
        let (tx, rx): (SyncSender<Vec<u8>>, _) = sync_channel(QUEUED_CHUNKS);
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                        // Full: the reader is behind; drop rather than stall the connection.
                        let _ = tx.try_send(map.to_vec());
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("RTMP remux does not start: {e}"))?;
        // The FLV file header and the first PreviousTagSize.
        let header: &[u8] = &[b'F', b'L', b'V', 1, 0x01, 0, 0, 0, 9, 0, 0, 0, 0];
        let _ = appsrc.push_buffer(gst::Buffer::from_slice(header.to_vec()));
        Ok((
            Remux { pipeline, appsrc },
            RemuxSource {
                rx,
                current: Vec::new(),
            },
        ))
    }

    /// One RTMP video message as an FLV video tag.
    fn push_video(&self, data: &[u8], timestamp_ms: u32) -> Result<(), String> {
        if let Some(bus) = self.pipeline.bus() {
            if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
                if let gst::MessageView::Error(e) = msg.view() {
                    return Err(format!("RTMP remux failed: {}", e.error()));
                }
            }
        }
        if data.len() > 16 << 20 {
            return Err("a video message over 16 MiB".into());
        }
        let size = data.len() as u32;
        let mut tag = Vec::with_capacity(11 + data.len() + 4);
        tag.push(9);
        tag.extend_from_slice(&size.to_be_bytes()[1..]);
        tag.extend_from_slice(&timestamp_ms.to_be_bytes()[1..]);
        tag.push((timestamp_ms >> 24) as u8);
        tag.extend_from_slice(&[0, 0, 0]);
        tag.extend_from_slice(data);
        tag.extend_from_slice(&(11 + size).to_be_bytes());
        let _ = self.appsrc.push_buffer(gst::Buffer::from_mut_slice(tag));
        Ok(())
    }
}

impl Drop for Remux {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_carry_camera_and_passphrase() {
        let (c, p) = parse_stream_key("desk?passphrase=0123456789abcdef").unwrap();
        assert_eq!((c.as_str(), p.as_str()), ("desk", "0123456789abcdef"));
        let (_, p) = parse_stream_key("desk?x=1&passphrase=abc").unwrap();
        assert_eq!(p, "abc");
        assert!(parse_stream_key("desk").is_err());
        assert!(parse_stream_key("../x?passphrase=a").is_err());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
