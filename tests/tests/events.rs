//! The agent's condition events on a real Mosquitto: `disk_low` when free space falls below the
//! floor and policy may delete nothing, `disk_ok` when it returns, and `clock_unsynced` when the
//! kernel says the clock is not synchronised (read with `adjtimex`, as the agent reads it).
//!
//! NEEDS ROOT (to mount a tmpfs); without root the test fails under `CI=true` and is skipped
//! (and counted by `scripts/test`) otherwise. CI runs as root.

use std::time::Duration;

use stationwatch_protocol::mqtt::{decode_event, EventKind};
use stationwatch_tests::agent_process::AgentProcess;
use stationwatch_tests::have_gst_element;
use stationwatch_tests::mosquitto::{have_mosquitto, Broker, BrokerOpts, Subscriber};
use stationwatch_tests::tmpfs::SmallDisk;

const STATION: &str = "EVT-0001";

/// A tmpfs mounted for the test; unmounted on drop.
fn free_bytes(path: &std::path::Path) -> u64 {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut s), 0);
        s.f_bavail as u64 * s.f_frsize as u64
    }
}

/// The kernel's clock state as the agent reads it: synchronised unless `adjtimex` fails,
/// returns `TIME_ERROR` or has `STA_UNSYNC` set; with the estimated and maximum errors (µs).
fn kernel_clock() -> (bool, i64, i64) {
    // SAFETY: all-zero is a valid `timex`; with `modes = 0` adjtimex only reads.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, exclusively borrowed `timex`.
    let ret = unsafe { libc::adjtimex(&mut tx) };
    let synced = ret >= 0 && ret != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0;
    #[allow(clippy::useless_conversion)]
    (synced, i64::from(tx.esterror), i64::from(tx.maxerror))
}

fn events(sub: &Subscriber) -> Vec<EventKind> {
    sub.messages()
        .iter()
        .filter(|m| m.topic == format!("stationwatch/v1/{STATION}/events"))
        .filter_map(|m| decode_event(&m.payload).ok())
        .map(|e| e.kind)
        .collect()
}

fn wait_event(
    sub: &Subscriber,
    what: &str,
    secs: u64,
    pred: impl Fn(&EventKind) -> bool,
) -> EventKind {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(e) = events(sub).into_iter().find(|e| pred(e)) {
            return e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {what} event within {secs} s; events: {:?}",
            events(sub)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn disk_low_disk_ok_and_clock_unsynced_events_reach_the_broker() {
    if !stationwatch_tests::require(
        have_mosquitto() && have_gst_element("x264enc"),
        "mosquitto or x264enc missing (run scripts/install-deps)",
    ) {
        return;
    }
    if !stationwatch_tests::require(
        stationwatch_tests::is_root(),
        "needs root to mount a tmpfs (CI runs as root)",
    ) {
        return;
    }
    let (clock_synced, est_error, _) = kernel_clock();
    eprintln!(
        "kernel clock: {} (est. error {est_error} µs)",
        if clock_synced {
            "synchronised: expecting no clock_unsynced event"
        } else {
            "NOT synchronised: expecting a clock_unsynced event"
        }
    );

    let disk = SmallDisk::mount(16);
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let ctl = Subscriber::start(
        &broker.client(),
        &[&format!("stationwatch/v1/{STATION}/#")],
        1,
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let storage = disk.mount.join("rec");
    // Floor 6 MiB on a 16 MiB disk; footage is younger than keep_days (default 30), so
    // below the floor policy may delete nothing: that is `disk_low`.
    let cfg = format!(
        "[station]\nid = \"{STATION}\"\nkey_file = \"{}\"\n\n[storage]\npath = \"{}\"\n\
         segment_seconds = 2\n\n[retention]\nmin_free_mb = 6\ncheck_interval_seconds = 1\n\n\
         [[camera]]\nid = \"cam\"\nsource = \"test\"\nwidth = 160\nheight = 120\nfps = 10\n\
         bitrate_kbps = 100\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nhealth_interval_seconds = 1\n",
        work.path().join("station.key").display(),
        storage.display(),
        broker.port()
    );
    let mut agent = AgentProcess::start(work.path(), &cfg).unwrap();
    agent
        .wait_log("recording", Duration::from_secs(20))
        .unwrap();
    // Three health intervals with plenty of space: no disk event yet.
    std::thread::sleep(Duration::from_secs(3));
    let early = events(&ctl);
    assert!(
        !early
            .iter()
            .any(|e| matches!(e, EventKind::DiskLow { .. } | EventKind::DiskOk { .. })),
        "disk event while space is plentiful: {early:?}"
    );
    if clock_synced {
        assert!(
            !early
                .iter()
                .any(|e| matches!(e, EventKind::ClockUnsynced { .. })),
            "clock_unsynced although the kernel clock is synchronised: {early:?}"
        );
    } else {
        let e = wait_event(&ctl, "clock_unsynced", 10, |e| {
            matches!(e, EventKind::ClockUnsynced { .. })
        });
        let EventKind::ClockUnsynced {
            est_error_us,
            max_error_us,
        } = e
        else {
            unreachable!()
        };
        assert_eq!(est_error_us, u64::try_from(est_error).ok(), "{e:?}");
        assert!(max_error_us.is_some(), "{e:?}");
    }

    // Fill the disk to 3 MiB free: below the 6 MiB floor, nothing deletable.
    let filler = disk.mount.join("filler");
    let fill = free_bytes(&disk.mount).saturating_sub(3 << 20);
    std::fs::write(&filler, vec![0x5a; fill as usize]).unwrap();
    let low = wait_event(&ctl, "disk_low", 15, |e| {
        matches!(e, EventKind::DiskLow { .. })
    });
    let EventKind::DiskLow { free_bytes: f, .. } = low else {
        unreachable!()
    };
    assert!(f < 6 << 20 && f > 0, "disk_low with free_bytes {f}");

    // Space returns: `disk_ok`, with the free space above the floor.
    std::fs::remove_file(&filler).unwrap();
    let ok = wait_event(&ctl, "disk_ok", 15, |e| {
        matches!(e, EventKind::DiskOk { .. })
    });
    let EventKind::DiskOk { free_bytes: f, .. } = ok else {
        unreachable!()
    };
    assert!(f > 6 << 20, "disk_ok with free_bytes {f}");
    let all = events(&ctl);
    assert_eq!(
        all.iter()
            .filter(|e| matches!(e, EventKind::DiskLow { .. }))
            .count(),
        1,
        "one disk_low per episode: {all:?}"
    );
    let (status, _) = agent.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{}", agent.log());
}
