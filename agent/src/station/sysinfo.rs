//! Measured facts about the station machine, for the periodic health report.
//!
//! Everything here is *measured*: clock synchronisation as the kernel sees it, load, board
//! temperature, uptime, disk space and the recording rate. When a figure cannot be measured
//! (no sensor, unreadable or malformed `/proc` or `/sys` file, failed system call) the function
//! returns `None` or an empty list rather than a guess, and never panics.
//!
//! Each reader is split into a thin I/O wrapper and a pure parser (`parse_*`, `interpret_*`,
//! `*_in(root)`) so that the parsing can be unit-tested with synthetic inputs.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Clock synchronisation
// ---------------------------------------------------------------------------------------------

/// Clock synchronisation as the kernel reports it through `adjtimex(2)`.
///
/// # Where the figures come from
///
/// The kernel does not synchronise anything itself: the NTP daemon tells it, through
/// `adjtimex`, whether the clock is synchronised (the `STA_UNSYNC` status bit) and how wrong
/// it may be (`esterror`, `maxerror`, microseconds). Every second the kernel adds its
/// frequency tolerance (500 ppm, i.e. 500 µs per second) to `maxerror`; when `maxerror`
/// passes 16 s it sets `STA_UNSYNC` itself. So a daemon that dies stops refreshing the figures
/// and the report degrades on its own, `max_error_us` growing until the clock is reported
/// unsynchronised.
///
/// * **chrony** writes its real estimates (`esterror` = its estimated error, `maxerror` = root
///   distance plus drift, both capped at 16 s) after every clock update. On Linux it clears
///   `STA_UNSYNC` only when `rtcsync` is in `chrony.conf` (Debian's default configuration has
///   it); without `rtcsync` the kernel reports the clock unsynchronised even when chrony is
///   locked. chrony does not use the kernel PLL, so there is no `offset_us`.
/// * **systemd-timesyncd** clears `STA_UNSYNC` (unless the RTC is in local time), and writes
///   `esterror = 0` and `maxerror = 0` at every update: with timesyncd `est_error_us` is `0`
///   ("not estimated", not "perfect") and `max_error_us` is only the tolerance accumulated
///   since the last poll. It steers through the kernel PLL, so `offset_us` is the part of the
///   last measured offset still being slewed away.
/// * With no daemon at all the kernel boots with `STA_UNSYNC` set and both errors at 16 s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockSync {
    /// `adjtimex` succeeded, did not return `TIME_ERROR`, and `STA_UNSYNC` is clear.
    pub synced: bool,
    /// The kernel's estimated error (`esterror`), microseconds; `None` if the call failed or
    /// the value was negative.
    pub est_error_us: Option<u64>,
    /// The kernel's maximum error (`maxerror`), microseconds; `None` if the call failed or the
    /// value was negative.
    pub max_error_us: Option<u64>,
    /// Offset the kernel PLL still has to slew away, microseconds (`offset`, converted from
    /// nanoseconds when `STA_NANO` is set). This is the correction in progress, **not** the
    /// clock's error. `None` when the PLL is off (`STA_PLL` clear, e.g. under chrony).
    pub offset_us: Option<i64>,
    /// What the kernel said: `ok`, `unsynchronised`, `clock error`, `pps error`,
    /// `insert leap`, `delete leap`, `leap in progress`, `leap occurred`,
    /// `unknown state N`, or `adjtimex failed: ...`.
    pub status: String,
}

/// Reads the kernel clock state with a read-only `adjtimex` call (`modes = 0`; no privilege
/// needed, nothing is changed).
pub fn clock_sync() -> ClockSync {
    let mut tx = blank_timex();
    // SAFETY: `tx` is a valid, exclusively borrowed `timex`; with `modes = 0` the kernel only
    // writes the current values into it.
    let ret = unsafe { libc::adjtimex(&mut tx) };
    if ret < 0 {
        let err = std::io::Error::last_os_error();
        return ClockSync {
            synced: false,
            est_error_us: None,
            max_error_us: None,
            offset_us: None,
            status: format!("adjtimex failed: {err}"),
        };
    }
    interpret_timex(ret, &tx)
}

/// An all-zero `timex`: `modes = 0` makes `adjtimex` a pure read.
pub fn blank_timex() -> libc::timex {
    // SAFETY: `timex` consists of integers (and a `timeval` of integers) and padding; all-zero
    // is a valid value of every field.
    unsafe { std::mem::zeroed() }
}

/// Interprets the return value `ret` and the filled-in `tx` of an `adjtimex` call.
///
/// `synced` = `ret` is a clock state (not `-1`), not `TIME_ERROR`, and `STA_UNSYNC` is clear.
/// The kernel returns `TIME_ERROR` when `STA_UNSYNC` or `STA_CLOCKERR` is set, or when a PPS
/// signal it was told to discipline the clock with is missing or bad.
pub fn interpret_timex(ret: libc::c_int, tx: &libc::timex) -> ClockSync {
    let status_bits = tx.status;
    let unsync = status_bits & libc::STA_UNSYNC != 0;
    let status = if ret < 0 {
        format!("adjtimex failed: returned {ret}")
    } else if unsync {
        "unsynchronised".to_owned()
    } else if status_bits & libc::STA_CLOCKERR != 0 {
        "clock error".to_owned()
    } else {
        match ret {
            libc::TIME_ERROR => "pps error".to_owned(),
            libc::TIME_OK => "ok".to_owned(),
            libc::TIME_INS => "insert leap".to_owned(),
            libc::TIME_DEL => "delete leap".to_owned(),
            libc::TIME_OOP => "leap in progress".to_owned(),
            libc::TIME_WAIT => "leap occurred".to_owned(),
            other => format!("unknown state {other}"),
        }
    };
    let valid = ret >= 0;
    let offset_us = (valid && status_bits & libc::STA_PLL != 0).then(|| {
        // `c_long` is 32 bits on 32-bit boards (e.g. armhf): the conversion is not useless there.
        #[allow(clippy::useless_conversion)]
        let offset = i64::from(tx.offset);
        if status_bits & libc::STA_NANO != 0 {
            offset / 1000
        } else {
            offset
        }
    });
    ClockSync {
        synced: valid && ret != libc::TIME_ERROR && !unsync,
        est_error_us: valid.then(|| u64::try_from(tx.esterror).ok()).flatten(),
        max_error_us: valid.then(|| u64::try_from(tx.maxerror).ok()).flatten(),
        offset_us,
        status,
    }
}

// ---------------------------------------------------------------------------------------------
// Load, uptime
// ---------------------------------------------------------------------------------------------

/// Load averages over 1, 5 and 15 minutes (`sysinfo(2)`, the figures `/proc/loadavg` shows).
pub fn load_average() -> Option<[f64; 3]> {
    let (one, five, fifteen) = nix::sys::sysinfo::sysinfo().ok()?.load_average();
    // Two decimals, as `/proc/loadavg` prints them (the kernel's figures are fixed-point).
    Some([one, five, fifteen].map(|l| (l * 100.0).round() / 100.0))
}

/// Time since boot, including time spent suspended (`CLOCK_BOOTTIME`, via `sysinfo(2)`), whole
/// seconds.
pub fn uptime() -> Option<Duration> {
    Some(nix::sys::sysinfo::sysinfo().ok()?.uptime())
}

// ---------------------------------------------------------------------------------------------
// Temperatures
// ---------------------------------------------------------------------------------------------

/// One temperature sensor reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    /// The sensor: a thermal zone's `type` (e.g. `cpu-thermal`, `x86_pkg_temp`), or for hwmon
    /// `<name>/<label>` (e.g. `coretemp/Core 0`, `nct6775/temp2`).
    pub zone: String,
    pub celsius: f64,
}

/// Readings outside this range (°C) are sensor fault codes, not temperatures of a working
/// board, and are dropped.
pub const PLAUSIBLE_CELSIUS: std::ops::RangeInclusive<f64> = -100.0..=250.0;

/// The board's temperature sensors, from `/sys`; empty when it has none.
pub fn temperatures() -> Vec<Temperature> {
    temperatures_in(Path::new("/sys"))
}

/// The temperature sensors under `sys_root` (normally `/sys`): every readable
/// `class/thermal/thermal_zone*/temp`, or, when no thermal zone gives a reading, every
/// `class/hwmon/hwmon*/temp*_input` (the same sensors often appear in both; thermal zones
/// are preferred). Values are millidegrees Celsius. Unreadable, malformed or implausible
/// readings are skipped. Ordered by zone number, then sensor number.
pub fn temperatures_in(sys_root: &Path) -> Vec<Temperature> {
    let thermal = thermal_zones(&sys_root.join("class/thermal"));
    if !thermal.is_empty() {
        return thermal;
    }
    hwmon_sensors(&sys_root.join("class/hwmon"))
}

/// The highest reading, for a single "board temperature" figure.
pub fn max_celsius(readings: &[Temperature]) -> Option<f64> {
    readings.iter().map(|t| t.celsius).reduce(f64::max)
}

/// Parses a `/sys` temperature file: an integer in millidegrees Celsius (`48312\n`).
pub fn parse_millidegrees(text: &str) -> Option<f64> {
    let milli: i64 = text.trim().parse().ok()?;
    let celsius = milli as f64 / 1000.0;
    PLAUSIBLE_CELSIUS.contains(&celsius).then_some(celsius)
}

fn thermal_zones(dir: &Path) -> Vec<Temperature> {
    numbered_entries(dir, "thermal_zone")
        .into_iter()
        .filter_map(|(_, name)| {
            let zone_dir = dir.join(&name);
            let celsius = parse_millidegrees(&fs::read_to_string(zone_dir.join("temp")).ok()?)?;
            let zone = read_trimmed(&zone_dir.join("type")).unwrap_or(name);
            Some(Temperature { zone, celsius })
        })
        .collect()
}

fn hwmon_sensors(dir: &Path) -> Vec<Temperature> {
    let mut out = Vec::new();
    for (_, name) in numbered_entries(dir, "hwmon") {
        let chip_dir = dir.join(&name);
        let chip = read_trimmed(&chip_dir.join("name")).unwrap_or(name);
        let mut inputs: Vec<(u64, String)> = list_dir(&chip_dir)
            .into_iter()
            .filter_map(|file| {
                let n = file
                    .strip_prefix("temp")?
                    .strip_suffix("_input")?
                    .parse()
                    .ok()?;
                Some((n, file))
            })
            .collect();
        inputs.sort();
        for (n, file) in inputs {
            let Some(celsius) = fs::read_to_string(chip_dir.join(&file))
                .ok()
                .and_then(|t| parse_millidegrees(&t))
            else {
                continue;
            };
            let label = read_trimmed(&chip_dir.join(format!("temp{n}_label")))
                .unwrap_or_else(|| format!("temp{n}"));
            out.push(Temperature {
                zone: format!("{chip}/{label}"),
                celsius,
            });
        }
    }
    out
}

/// Entries of `dir` named `<prefix><number>`, in numeric order (`thermal_zone2` before
/// `thermal_zone10`).
fn numbered_entries(dir: &Path, prefix: &str) -> Vec<(u64, String)> {
    let mut found: Vec<(u64, String)> = list_dir(dir)
        .into_iter()
        .filter_map(|name| Some((name.strip_prefix(prefix)?.parse().ok()?, name)))
        .collect();
    found.sort();
    found
}

/// Names (UTF-8 only) in `dir`; empty when it cannot be read.
fn list_dir(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}

/// A small text file's trimmed content; `None` when unreadable or blank.
fn read_trimmed(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Disk space
// ---------------------------------------------------------------------------------------------

/// Space on the file system holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpace {
    /// Bytes available to an unprivileged writer (`f_bavail`; excludes root's reserve).
    pub free_bytes: u64,
    /// Size of the file system.
    pub total_bytes: u64,
}

/// Measures the file system holding `path` (`statvfs`); `None` if it cannot be queried.
// The block counts are 32 bits on some 32-bit targets: the conversions are not useless there.
#[allow(clippy::useless_conversion)]
pub fn disk_space(path: &Path) -> Option<DiskSpace> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = u64::from(s.fragment_size());
    Some(DiskSpace {
        free_bytes: u64::from(s.blocks_available()).saturating_mul(frag),
        total_bytes: u64::from(s.blocks()).saturating_mul(frag),
    })
}

// ---------------------------------------------------------------------------------------------
// Frame and bit rate
// ---------------------------------------------------------------------------------------------

/// Frame and bit rate over one measuring window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Frames per second.
    pub fps: f64,
    /// Bits per second.
    pub bitrate_bps: f64,
}

/// Turns monotonically increasing frame and byte counters into rates: each
/// [`sample`](Self::sample) gives the rate since the previous accepted sample.
#[derive(Debug, Clone, Default)]
pub struct BitrateMeter {
    last: Option<Sample>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    frames: u64,
    bytes: u64,
}

impl BitrateMeter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the counters' values at `now` and returns the rates since the previous sample.
    ///
    /// Returns `None`, and
    /// * keeps this sample as the new baseline: on the first sample, after [`reset`](Self::reset),
    ///   or when a counter went backwards (the counting pipeline was restarted);
    /// * keeps the previous baseline: when `now` is not later than the previous sample's
    ///   instant (no time to divide by).
    pub fn sample(&mut self, now: Instant, frames: u64, bytes: u64) -> Option<Rate> {
        let current = Sample {
            at: now,
            frames,
            bytes,
        };
        let Some(prev) = self.last else {
            self.last = Some(current);
            return None;
        };
        let elapsed = now
            .checked_duration_since(prev.at)
            .filter(|d| !d.is_zero())?;
        self.last = Some(current);
        let frames = frames.checked_sub(prev.frames)?;
        let bytes = bytes.checked_sub(prev.bytes)?;
        let secs = elapsed.as_secs_f64();
        Some(Rate {
            fps: frames as f64 / secs,
            bitrate_bps: bytes as f64 * 8.0 / secs,
        })
    }

    #[cfg(test)]
    /// Forgets the baseline; the next sample starts a new window.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timex(status: libc::c_int, esterror: i64, maxerror: i64, offset: i64) -> libc::timex {
        let mut tx = blank_timex();
        tx.status = status;
        tx.esterror = esterror as _;
        tx.maxerror = maxerror as _;
        tx.offset = offset as _;
        tx
    }

    // --- clock ---

    #[test]
    fn chrony_synced_with_rtcsync() {
        // chrony: PLL off, real error estimates.
        let tx = timex(0, 1_234, 56_789, 0);
        let c = interpret_timex(libc::TIME_OK, &tx);
        assert_eq!(
            c,
            ClockSync {
                synced: true,
                est_error_us: Some(1_234),
                max_error_us: Some(56_789),
                offset_us: None,
                status: "ok".into(),
            }
        );
    }

    #[test]
    fn timesyncd_synced_pll_nanoseconds() {
        let tx = timex(libc::STA_PLL | libc::STA_NANO, 0, 16_000, -2_500_000);
        let c = interpret_timex(libc::TIME_OK, &tx);
        assert!(c.synced);
        assert_eq!(c.est_error_us, Some(0));
        assert_eq!(c.max_error_us, Some(16_000));
        assert_eq!(c.offset_us, Some(-2_500));
        assert_eq!(c.status, "ok");
    }

    #[test]
    fn pll_offset_in_microseconds_without_sta_nano() {
        let tx = timex(libc::STA_PLL, 10, 20, 345);
        assert_eq!(interpret_timex(libc::TIME_OK, &tx).offset_us, Some(345));
    }

    #[test]
    fn unsynchronised_at_boot() {
        let tx = timex(libc::STA_UNSYNC, 16_000_000, 16_000_000, 0);
        let c = interpret_timex(libc::TIME_ERROR, &tx);
        assert!(!c.synced);
        assert_eq!(c.status, "unsynchronised");
        assert_eq!(c.est_error_us, Some(16_000_000));
        assert_eq!(c.max_error_us, Some(16_000_000));
    }

    #[test]
    fn unsync_bit_wins_even_if_state_is_ok() {
        let tx = timex(libc::STA_UNSYNC, 0, 0, 0);
        let c = interpret_timex(libc::TIME_OK, &tx);
        assert!(!c.synced);
        assert_eq!(c.status, "unsynchronised");
    }

    #[test]
    fn time_error_without_unsync_is_not_synced() {
        let tx = timex(libc::STA_PPSTIME, 5, 5, 0);
        let c = interpret_timex(libc::TIME_ERROR, &tx);
        assert!(!c.synced);
        assert_eq!(c.status, "pps error");

        let tx = timex(libc::STA_CLOCKERR, 5, 5, 0);
        let c = interpret_timex(libc::TIME_ERROR, &tx);
        assert!(!c.synced);
        assert_eq!(c.status, "clock error");
    }

    #[test]
    fn leap_states_are_synced() {
        for (ret, text) in [
            (libc::TIME_INS, "insert leap"),
            (libc::TIME_DEL, "delete leap"),
            (libc::TIME_OOP, "leap in progress"),
            (libc::TIME_WAIT, "leap occurred"),
        ] {
            let c = interpret_timex(ret, &timex(libc::STA_INS, 1, 2, 0));
            assert!(c.synced, "{text}");
            assert_eq!(c.status, text);
        }
        let c = interpret_timex(42, &timex(0, 1, 2, 0));
        assert!(c.synced);
        assert_eq!(c.status, "unknown state 42");
    }

    #[test]
    fn failed_call_and_negative_errors() {
        let c = interpret_timex(-1, &timex(libc::STA_PLL, 1, 2, 3));
        assert!(!c.synced);
        assert_eq!(
            (c.est_error_us, c.max_error_us, c.offset_us),
            (None, None, None)
        );
        assert!(c.status.starts_with("adjtimex failed"));

        let c = interpret_timex(libc::TIME_OK, &timex(0, -1, -5, 0));
        assert!(c.synced);
        assert_eq!((c.est_error_us, c.max_error_us), (None, None));
    }

    #[test]
    fn real_clock_sync_does_not_panic() {
        let c = clock_sync();
        assert!(!c.status.is_empty());
        if c.synced {
            assert!(!c.status.contains("failed"));
        }
    }

    #[test]
    fn clock_sync_serializes() {
        let c = interpret_timex(libc::TIME_OK, &timex(0, 7, 8, 0));
        let text = toml::to_string(&c).unwrap();
        assert!(text.contains("synced = true"), "{text}");
        assert!(text.contains("est_error_us = 7"), "{text}");
        let back: ClockSync = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    // --- load, uptime ---

    #[test]
    fn live_proc_files_parse() {
        // /proc is always there on Linux.
        let load = load_average().expect("/proc/loadavg");
        assert!(load.iter().all(|l| *l >= 0.0));
        assert!(uptime().expect("/proc/uptime") > Duration::ZERO);
    }

    // --- temperatures ---

    fn write(root: &Path, rel: &str, content: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    #[test]
    fn millidegrees() {
        assert_eq!(parse_millidegrees("48312\n"), Some(48.312));
        assert_eq!(parse_millidegrees("-5000"), Some(-5.0));
        assert_eq!(parse_millidegrees("0"), Some(0.0));
        for bad in [
            "",
            "\n",
            "48.3",
            "abc",
            "-274000",
            "255000",
            "99999999999999999999",
        ] {
            assert_eq!(parse_millidegrees(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn thermal_zones_in_numeric_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "class/thermal/thermal_zone0/type", "acpitz\n");
        write(root, "class/thermal/thermal_zone0/temp", "27800\n");
        write(root, "class/thermal/thermal_zone10/type", "x86_pkg_temp\n");
        write(root, "class/thermal/thermal_zone10/temp", "45000\n");
        write(root, "class/thermal/thermal_zone2/type", "cpu-thermal\n");
        write(root, "class/thermal/thermal_zone2/temp", "51234\n");
        // A zone without a type file is named after its directory.
        write(root, "class/thermal/thermal_zone3/temp", "40000\n");
        // Malformed and unreadable zones are skipped.
        write(root, "class/thermal/thermal_zone4/type", "broken\n");
        write(root, "class/thermal/thermal_zone4/temp", "n/a\n");
        write(root, "class/thermal/thermal_zone5/type", "no-temp\n");
        fs::create_dir_all(root.join("class/thermal/thermal_zone6/temp")).unwrap();
        // Non-zone entries are ignored.
        write(root, "class/thermal/cooling_device0/type", "Processor\n");
        // hwmon is not consulted when thermal zones gave readings.
        write(root, "class/hwmon/hwmon0/name", "coretemp\n");
        write(root, "class/hwmon/hwmon0/temp1_input", "50000\n");

        let temps = temperatures_in(root);
        let got: Vec<(&str, f64)> = temps.iter().map(|t| (t.zone.as_str(), t.celsius)).collect();
        assert_eq!(
            got,
            vec![
                ("acpitz", 27.8),
                ("cpu-thermal", 51.234),
                ("thermal_zone3", 40.0),
                ("x86_pkg_temp", 45.0),
            ]
        );
        assert_eq!(max_celsius(&temps), Some(51.234));
    }

    #[test]
    fn hwmon_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // A thermal class with no usable zone.
        write(root, "class/thermal/thermal_zone0/temp", "garbage");
        write(root, "class/hwmon/hwmon1/name", "coretemp\n");
        write(root, "class/hwmon/hwmon1/temp1_label", "Package id 0\n");
        write(root, "class/hwmon/hwmon1/temp1_input", "55000\n");
        write(root, "class/hwmon/hwmon1/temp10_input", "49000\n");
        write(root, "class/hwmon/hwmon1/temp2_label", "Core 0\n");
        write(root, "class/hwmon/hwmon1/temp2_input", "53000\n");
        write(root, "class/hwmon/hwmon1/temp3_input", "-274000\n");
        write(root, "class/hwmon/hwmon1/temp3_max", "100000\n");
        write(root, "class/hwmon/hwmon1/temp4_crit", "100000\n");
        write(root, "class/hwmon/hwmon0/temp1_input", "30500\n");
        write(root, "class/hwmon/hwmon2/name", "nvme\n");
        write(root, "class/hwmon/hwmon2/tempX_input", "30000\n");

        let got: Vec<(String, f64)> = temperatures_in(root)
            .into_iter()
            .map(|t| (t.zone, t.celsius))
            .collect();
        assert_eq!(
            got,
            vec![
                ("hwmon0/temp1".to_owned(), 30.5),
                ("coretemp/Package id 0".to_owned(), 55.0),
                ("coretemp/Core 0".to_owned(), 53.0),
                ("coretemp/temp10".to_owned(), 49.0),
            ]
        );
    }

    #[test]
    fn no_sensors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(temperatures_in(dir.path()).is_empty());
        assert!(temperatures_in(&dir.path().join("missing")).is_empty());
        write(dir.path(), "class/thermal/thermal_zone0/type", "empty\n");
        assert!(temperatures_in(dir.path()).is_empty());
        assert_eq!(max_celsius(&[]), None);
        // Whatever this machine has, reading it must not panic.
        let _ = temperatures();
    }

    // --- disk ---

    #[test]
    fn disk_space_of_tempdir() {
        let dir = tempfile::tempdir().unwrap();
        let d = disk_space(dir.path()).expect("statvfs");
        assert!(d.total_bytes > 0);
        assert!(d.free_bytes <= d.total_bytes);
        assert_eq!(disk_space(&dir.path().join("missing/dir")), None);
    }

    // --- bitrate meter ---

    #[test]
    fn meter_rates_over_windows() {
        let t0 = Instant::now();
        let mut m = BitrateMeter::new();
        assert_eq!(m.sample(t0, 100, 1_000_000), None);
        let r = m
            .sample(t0 + Duration::from_secs(2), 150, 2_000_000)
            .unwrap();
        assert_eq!(r.fps, 25.0);
        assert_eq!(r.bitrate_bps, 4_000_000.0);
        // The next window starts at the previous sample.
        let r = m
            .sample(t0 + Duration::from_millis(2_500), 160, 2_125_000)
            .unwrap();
        assert_eq!(r.fps, 20.0);
        assert_eq!(r.bitrate_bps, 2_000_000.0);
        // Nothing arrived: zero rates, not None.
        let r = m
            .sample(t0 + Duration::from_secs(3), 160, 2_125_000)
            .unwrap();
        assert_eq!((r.fps, r.bitrate_bps), (0.0, 0.0));
    }

    #[test]
    fn meter_no_elapsed_time_keeps_baseline() {
        let t0 = Instant::now();
        let mut m = BitrateMeter::new();
        m.sample(t0 + Duration::from_secs(10), 0, 0);
        assert_eq!(m.sample(t0 + Duration::from_secs(10), 10, 10), None);
        assert_eq!(m.sample(t0, 10, 10), None);
        let r = m.sample(t0 + Duration::from_secs(11), 25, 1_000).unwrap();
        assert_eq!((r.fps, r.bitrate_bps), (25.0, 8_000.0));
    }

    #[test]
    fn meter_counter_reset_restarts_window() {
        let t0 = Instant::now();
        let mut m = BitrateMeter::new();
        m.sample(t0, 1_000, 1_000_000);
        // The pipeline restarted: counters back near zero.
        assert_eq!(m.sample(t0 + Duration::from_secs(1), 5, 10_000), None);
        let r = m.sample(t0 + Duration::from_secs(2), 30, 20_000).unwrap();
        assert_eq!((r.fps, r.bitrate_bps), (25.0, 80_000.0));
        // Only the byte counter going backwards also resets.
        assert_eq!(m.sample(t0 + Duration::from_secs(3), 40, 0), None);
        m.reset();
        assert_eq!(m.sample(t0 + Duration::from_secs(4), 50, 10), None);
        assert!(m.sample(t0 + Duration::from_secs(5), 60, 20).is_some());
    }
}
