//! A real browser for end-to-end tests: Debian's headless Chromium driven through chromedriver
//! (WebDriver, with `fantoccini`), and the page helpers the dashboard tests share.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::{free_port, have_binary};

// ---- the browser

pub fn chromium_bin() -> Option<PathBuf> {
    let env = std::env::var_os("STATIONWATCH_CHROMIUM").map(PathBuf::from);
    env.into_iter()
        .chain(["/usr/bin/chromium", "/usr/bin/chromium-browser"].map(PathBuf::from))
        .find(|p| have_binary(&p.to_string_lossy()))
}

pub fn chromedriver_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STATIONWATCH_CHROMEDRIVER") {
        return Some(PathBuf::from(p));
    }
    if have_binary("/usr/bin/chromedriver") {
        return Some(PathBuf::from("/usr/bin/chromedriver"));
    }
    have_binary("chromedriver").then(|| PathBuf::from("chromedriver"))
}

/// chromedriver and the Chromium it starts. Dropping it kills both, also when the test panics:
/// chromedriver runs in its own process group (Chromium inherits it), and any process whose
/// command line names this browser's private profile folder is killed as well.
pub struct Browser {
    driver: Option<Child>,
    port: u16,
    profile: tempfile::TempDir,
    log: PathBuf,
}

impl Browser {
    pub fn start(driver_bin: &Path, dir: &Path) -> Browser {
        let port = free_port();
        let log = dir.join("chromedriver.log");
        let out = std::fs::File::create(&log).unwrap();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("spawning chromedriver");
        let browser = Browser {
            driver: Some(driver),
            port,
            profile: tempfile::Builder::new()
                .prefix("stationwatch-chromium-")
                .tempdir()
                .unwrap(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 15 s:\n{}",
                browser.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        browser
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn session(&self, chromium: &Path) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                    "--lang=en-US",
                    "--window-size=1600,1000",
                    format!("--user-data-dir={}", self.profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .unwrap_or_else(|e| panic!("no WebDriver session: {e}\n{}", self.log()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            // SAFETY: killpg(2) on the process group our own, not yet reaped, child leads.
            unsafe {
                libc::killpg(driver.id() as libc::pid_t, libc::SIGKILL);
            }
            let _ = driver.kill();
            let _ = driver.wait();
        }
        kill_processes_naming(self.profile.path());
    }
}

/// SIGKILLs every process whose command line contains `path` (a folder only our browser uses).
fn kill_processes_naming(path: &Path) {
    let needle = path.to_string_lossy().into_owned();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<libc::pid_t>() else {
            continue;
        };
        let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            // SAFETY: kill(2) on a process that runs with our private profile folder.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

// ---- page helpers

/// When the scenario started (after the builds), for the progress lines.
pub static START: OnceLock<Instant> = OnceLock::new();

pub fn step(what: &str) {
    let t = START.get().map(Instant::elapsed).unwrap_or_default();
    eprintln!("[{:>5.1} s] {what}", t.as_secs_f64());
}

/// Evaluates `expr` (a JavaScript expression) in the page.
pub async fn js(c: &Client, expr: &str) -> Value {
    c.execute(&format!("return ({expr});"), vec![])
        .await
        .unwrap_or_else(|e| panic!("evaluating {expr}: {e}"))
}

/// Polls `expr` until it is truthy; returns its value. On timeout, fails with what the page
/// shows.
pub async fn wait_js(c: &Client, expr: &str, secs: u64, what: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(v) = c.execute(&format!("return ({expr});"), vec![]).await {
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                step(what);
                return v;
            }
        }
        if Instant::now() > deadline {
            let url = c.current_url().await.map(|u| u.to_string());
            let text = js(
                c,
                "document.body ? document.body.innerText.slice(0, 3000) : ''",
            )
            .await;
            panic!(
                "{what}: not seen within {secs} s ({expr}); page {url:?} shows:\n{}",
                text.as_str().unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Clicks the element `css` names. Live updates re-render the stations list every second, so
/// an element found a moment ago may be replaced before the click lands ("stale element"):
/// find it again, as a user's second click would, up to a few times.
pub async fn click(c: &Client, css: &str) {
    for attempt in 1.. {
        let el = c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        // In the middle of the window, not under the sticky top bar (as a user would scroll).
        let _ = c
            .execute(
                "arguments[0].scrollIntoView({block: 'center'}); return true;",
                vec![serde_json::to_value(&el).unwrap()],
            )
            .await;
        match el.click().await {
            Ok(_) => return,
            Err(e) if attempt < 5 && e.to_string().contains("stale element") => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("clicking {css}: {e}"),
        }
    }
}

pub async fn type_into(c: &Client, css: &str, text: &str) {
    let el = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"));
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

pub async fn screenshot(c: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("STATIONWATCH_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        let path = Path::new(&dir).join(format!("{name}.png"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }
}
