//! `verify-fixture`: writes a camera folder for benchmarking `station-agent verify`.
//!
//! `verify-fixture --out DIR --segments 4320 --segment-bytes N [--seed S]` creates
//! `DIR/<camera>/` holding `N`-byte segment files named as the agent names them
//! (`YYYY-MM-DD/YYYYMMDDTHHMMSS.mmmZ.ts`, consecutive one-minute segments crossing day folders)
//! and a valid signed `manifest.jsonl`: one `start`, one `segment` per file, one `stop`, signed
//! with a freshly generated station key. It prints that key's public half (64 hex characters) on
//! stdout, the only thing it prints there; progress goes to stderr.
//!
//! The segment content is pseudo-random bytes (xorshift64*, seeded per file from `--seed`), not
//! video: verify only reads and hashes bytes, and random data defeats any compression or
//! deduplication underneath. The content is reproducible for a seed; the key is not.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use stationwatch_protocol::manifest::{
    sign_entry, Chain, ClockSync, EntryBody, Hash256, Open, Segment, SegmentFile, Start,
    StationKey, Stop, Timestamp, MANIFEST_FILE,
};
use stationwatch_protocol::trust::{RegisteredKey, Signed, Witness, WitnessedHead};
use stationwatch_protocol::{CameraId, StationId};

#[derive(Debug, Parser)]
#[command(about = "Write a signed camera folder of pseudo-random segments for benchmarking verify")]
struct Args {
    /// Folder to create the camera folder in (`OUT/<camera>/`).
    #[arg(long)]
    out: PathBuf,
    /// Number of consecutive segments.
    #[arg(long, default_value_t = 4320)]
    segments: u64,
    /// Size of every segment file in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    segment_bytes: u64,
    /// Seed of the content generator (the same seed gives the same files).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Length of one segment in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    segment_ms: i64,
    /// Start of the first segment (`YYYY-MM-DDTHH:MM:SS.sssZ`).
    #[arg(long, default_value = "2026-11-20T22:00:00.000Z")]
    start: String,
    #[arg(long, default_value = "bench-station")]
    station: String,
    #[arg(long, default_value = "cam1")]
    camera: String,
    /// Writer threads (default: the number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Also write a controller witness file here (`stationwatch-witness` JSON, signed with a
    /// fresh controller key): the station's key as registered and one witnessed head after
    /// every segment entry, as a controller receiving health reports would have stored them.
    /// Its controller public key is printed on stderr.
    #[arg(long)]
    witness: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.segments > 0, "--segments must be at least 1");
    ensure!(args.segment_ms > 0, "--segment-ms must be positive");
    let station = StationId::new(args.station.clone()).context("--station")?;
    let camera = CameraId::new(args.camera.clone()).context("--camera")?;
    let first: Timestamp = args
        .start
        .parse()
        .with_context(|| format!("--start {:?}", args.start))?;

    let dir = args.out.join(camera.as_str());
    if dir.exists() {
        bail!("{} already exists; give an empty --out", dir.display());
    }
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;

    // File names and times, in order; the day folders exist before the writers start.
    let mut plan = Vec::new();
    for i in 0..args.segments {
        let offset = i64::try_from(i)
            .ok()
            .and_then(|i| i.checked_mul(args.segment_ms))
            .context("segment times overflow")?;
        let start = Timestamp::from_unix_ms(first.unix_ms().saturating_add(offset))?;
        let end = start.saturating_add_ms(args.segment_ms);
        let (day, rel) = segment_name(start)?;
        let day_dir = dir.join(day);
        if !day_dir.is_dir() {
            fs::create_dir(&day_dir).with_context(|| format!("creating {}", day_dir.display()))?;
        }
        plan.push((start, end, SegmentFile::new(rel)?));
    }

    let t0 = Instant::now();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let hashes = write_segments(&dir, &plan, args.segment_bytes, args.seed, threads)?;
    let written = t0.elapsed().as_secs_f64().max(1e-9);
    let total = args.segment_bytes.saturating_mul(args.segments);
    eprintln!(
        "verify-fixture: wrote {} segments of {} bytes ({:.1} MB) in {:.1} s ({:.0} MB/s, {threads} threads)",
        args.segments,
        args.segment_bytes,
        total as f64 / 1e6,
        written,
        total as f64 / 1e6 / written
    );

    let key = StationKey::generate()?;
    let last_end = plan
        .last()
        .map(|(_, end, _)| *end)
        .context("no segments planned")?;
    let manifest_path = dir.join(MANIFEST_FILE);
    let file = fs::File::create(&manifest_path)
        .with_context(|| format!("creating {}", manifest_path.display()))?;
    let mut out = BufWriter::new(file);
    let mut chain = Chain::genesis(station.clone(), camera.clone());
    let mut append = |body: EntryBody| -> Result<Chain> {
        let signed = sign_entry(&key, &chain, body)?;
        out.write_all(signed.line().as_bytes())?;
        out.write_all(b"\n")?;
        chain = Chain::after(&signed);
        Ok(chain.clone())
    };
    let mut heads = Vec::new();
    append(EntryBody::Start(Start {
        at: first,
        agent: env!("CARGO_PKG_VERSION").to_owned(),
        key: key.public(),
    }))?;
    for ((start, end, file), sha256) in plan.into_iter().zip(hashes) {
        // As the agent writes them (schema 2): the file announced, then entered.
        append(EntryBody::Open(Open {
            at: start,
            file: file.clone(),
        }))?;
        let head = append(EntryBody::Segment(Segment {
            start,
            end,
            file,
            size: args.segment_bytes,
            sha256,
            clock: Some(ClockSync::Synced),
        }))?;
        heads.push(WitnessedHead {
            camera: camera.clone(),
            next_seq: head.next_seq,
            prev: head.prev,
            agent_at: end,
            received_at: end.saturating_add_ms(200),
            tsa: None,
        });
    }
    append(EntryBody::Stop(Stop { at: last_end }))?;
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    eprintln!(
        "verify-fixture: {} entries in {}",
        2 * args.segments + 2,
        manifest_path.display()
    );

    if let Some(path) = &args.witness {
        let controller = StationKey::generate()?;
        let witness = Witness::new(
            last_end,
            station,
            Some(first),
            Some(last_end),
            vec![RegisteredKey {
                key: key.public(),
                registered_at: first,
                retired_at: None,
            }],
            heads,
        );
        let signed = Signed::sign(witness, &controller)?;
        fs::write(path, signed.to_json()?)
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "verify-fixture: witness of {} heads in {} (controller key {})",
            args.segments,
            path.display(),
            controller.public().to_hex()
        );
    }

    println!("{}", key.public().to_hex());
    Ok(())
}

/// The day folder and the file name relative to the camera folder, as the agent names them:
/// `2026-11-21` and `2026-11-21/20261121T152600.123Z.ts`.
fn segment_name(start: Timestamp) -> Result<(String, String)> {
    // Display is exactly `YYYY-MM-DDTHH:MM:SS.sssZ`.
    let text = start.to_string();
    let day = text
        .get(..10)
        .with_context(|| format!("unexpected timestamp form {text:?}"))?
        .to_owned();
    let compact: String = text.chars().filter(|c| !matches!(c, '-' | ':')).collect();
    let rel = format!("{day}/{compact}.ts");
    Ok((day, rel))
}

/// Writes every planned segment (`threads` writers, file `i` to writer `i % threads`) and returns
/// the files' SHA-256 in plan order.
fn write_segments(
    dir: &Path,
    plan: &[(Timestamp, Timestamp, SegmentFile)],
    size: u64,
    seed: u64,
    threads: usize,
) -> Result<Vec<Hash256>> {
    let len = usize::try_from(size).context("--segment-bytes does not fit in memory")?;
    let results: Vec<Result<Vec<(usize, Hash256)>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                scope.spawn(move || -> Result<Vec<(usize, Hash256)>> {
                    let mut buf = vec![0u8; len];
                    let mut done = Vec::new();
                    for (i, (_, _, file)) in plan.iter().enumerate().skip(w).step_by(threads) {
                        fill(&mut buf, seed, i as u64);
                        let path = dir.join(file.as_str());
                        fs::write(&path, &buf)
                            .with_context(|| format!("writing {}", path.display()))?;
                        done.push((i, Hash256::of(&buf)));
                    }
                    Ok(done)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a writer thread panicked")))
            })
            .collect()
    });
    let mut hashes = vec![Hash256::ZERO; plan.len()];
    for r in results {
        for (i, h) in r? {
            if let Some(slot) = hashes.get_mut(i) {
                *slot = h;
            }
        }
    }
    Ok(hashes)
}

/// Fills `buf` with xorshift64* output seeded from (`seed`, `index`).
fn fill(buf: &mut [u8], seed: u64, index: u64) {
    // splitmix64 of the pair gives well-spread, non-zero per-file states.
    let mut z = seed
        .wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let mut x = (z ^ (z >> 31)) | 1;
    let mut next = || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        chunk.copy_from_slice(&next().to_le_bytes());
    }
    let rest = chunks.into_remainder();
    let tail = next().to_le_bytes();
    for (b, t) in rest.iter_mut().zip(tail) {
        *b = t;
    }
}
