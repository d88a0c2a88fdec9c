//! Messages that must arrive (events, command acknowledgements), kept on disk until the broker
//! acknowledges them, and delivered in order after a reconnect.
//!
//! One file per message, named by a sequence number, written to a temporary name, fsynced and
//! renamed: a crash leaves either the whole message or nothing. The outbox is bounded in count
//! and bytes; when full, the oldest messages are dropped and counted (a broker outage of days
//! must not fill the recordings disk).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// On disk: this header as one JSON line, then the payload bytes as they are.
#[derive(Serialize, Deserialize)]
struct Header {
    topic: String,
    retain: bool,
}

impl OutMessage {
    fn encode(&self) -> io::Result<Vec<u8>> {
        let mut data = serde_json::to_vec(&Header {
            topic: self.topic.clone(),
            retain: self.retain,
        })
        .map_err(io::Error::other)?;
        data.push(b'\n');
        data.extend_from_slice(&self.payload);
        Ok(data)
    }

    fn decode(data: &[u8]) -> io::Result<Self> {
        let nl = data
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| io::Error::other("no header line"))?;
        let h: Header = serde_json::from_slice(&data[..nl]).map_err(io::Error::other)?;
        Ok(OutMessage {
            topic: h.topic,
            retain: h.retain,
            payload: data[nl + 1..].to_vec(),
        })
    }
}

#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    max_messages: usize,
    max_bytes: u64,
    /// seq -> size in bytes, oldest first.
    index: BTreeMap<u64, u64>,
    bytes: u64,
    next_seq: u64,
    dropped: u64,
}

const EXT: &str = "msg";

impl Outbox {
    /// Opens (or creates) the outbox in `dir`, picking up what a previous run left.
    pub fn open(dir: &Path, max_messages: usize, max_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut index = BTreeMap::new();
        let mut bytes = 0;
        for entry in fs::read_dir(dir)?.flatten() {
            let path = entry.path();
            let is_msg = path.extension().and_then(|e| e.to_str()) == Some(EXT);
            let seq = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok());
            match (is_msg, seq) {
                (true, Some(seq)) => {
                    let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    index.insert(seq, len);
                    bytes += len;
                }
                // Half-written temporaries from a crash.
                _ if path.extension().and_then(|e| e.to_str()) == Some("tmp") => {
                    let _ = fs::remove_file(&path);
                }
                _ => {}
            }
        }
        let next_seq = index.keys().next_back().map_or(0, |s| s + 1);
        if !index.is_empty() {
            info!(
                pending = index.len(),
                "outbox holds messages from before; delivering them first"
            );
        }
        Ok(Self {
            dir: dir.to_owned(),
            max_messages: max_messages.max(1),
            max_bytes,
            index,
            bytes,
            next_seq,
            dropped: 0,
        })
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.{EXT}"))
    }

    /// Appends a message durably; returns its sequence number.
    pub fn push(&mut self, msg: &OutMessage) -> io::Result<u64> {
        let data = msg.encode()?;
        let seq = self.next_seq;
        let tmp = self.dir.join(format!("{seq:020}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_data()?;
        }
        fs::rename(&tmp, self.path(seq))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.next_seq += 1;
        self.index.insert(seq, data.len() as u64);
        self.bytes += data.len() as u64;
        while self.index.len() > self.max_messages || self.bytes > self.max_bytes {
            let Some((&oldest, _)) = self.index.iter().next() else {
                break;
            };
            if oldest == seq {
                break;
            }
            self.remove(oldest);
            self.dropped += 1;
            warn!(
                seq = oldest,
                dropped = self.dropped,
                "outbox full; oldest message dropped"
            );
        }
        Ok(seq)
    }

    #[cfg(test)]
    /// The oldest messages, up to `n`, in order.
    pub fn peek(&self, n: usize) -> Vec<(u64, OutMessage)> {
        self.index
            .keys()
            .take(n)
            .filter_map(|&seq| {
                let data = fs::read(self.path(seq)).ok()?;
                match OutMessage::decode(&data) {
                    Ok(m) => Some((seq, m)),
                    Err(e) => {
                        warn!(seq, error = %e, "unreadable outbox message skipped");
                        None
                    }
                }
            })
            .collect()
    }

    /// The message after `seq` in order (to send the next one).
    pub fn next_after(&self, seq: Option<u64>) -> Option<(u64, OutMessage)> {
        let mut range = match seq {
            Some(s) => self.index.range(s + 1..),
            None => self.index.range(..),
        };
        range.find_map(|(&s, _)| {
            let data = fs::read(self.path(s)).ok()?;
            OutMessage::decode(&data).ok().map(|m| (s, m))
        })
    }

    /// The broker has the message: forget it.
    pub fn remove(&mut self, seq: u64) {
        if let Some(len) = self.index.remove(&seq) {
            self.bytes = self.bytes.saturating_sub(len);
            let _ = fs::remove_file(self.path(seq));
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Messages dropped because the outbox was full, since it was opened.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(i: u32) -> OutMessage {
        OutMessage {
            topic: format!("t/{i}"),
            payload: vec![i as u8; 10],
            retain: false,
        }
    }

    #[test]
    fn survives_reopen_in_order_and_forgets_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 100, 1 << 20).unwrap();
        for i in 0..5 {
            o.push(&msg(i)).unwrap();
        }
        o.remove(0);
        drop(o);
        std::fs::write(dir.path().join("00000000000000000009.tmp"), b"half").unwrap();
        let mut o = Outbox::open(dir.path(), 100, 1 << 20).unwrap();
        let got: Vec<String> = o.peek(10).into_iter().map(|(_, m)| m.topic).collect();
        assert_eq!(got, ["t/1", "t/2", "t/3", "t/4"]);
        assert!(!dir.path().join("00000000000000000009.tmp").exists());
        let seq = o.push(&msg(9)).unwrap();
        assert_eq!(seq, 5, "sequence continues after the highest kept");
        assert_eq!(o.next_after(Some(3)).unwrap().1.topic, "t/4");
        assert_eq!(o.next_after(Some(4)).unwrap().1.topic, "t/9");
    }

    #[test]
    fn bounded_dropping_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(dir.path(), 3, 1 << 20).unwrap();
        for i in 0..5 {
            o.push(&msg(i)).unwrap();
        }
        assert_eq!(o.len(), 3);
        assert_eq!(o.dropped(), 2);
        assert_eq!(o.peek(1)[0].1.topic, "t/2");
    }
}
