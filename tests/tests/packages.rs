//! The Debian packages (issue 18), built by `scripts/package` and installed on this machine
//! with `dpkg`, as a technician would: lintian finds nothing; installing creates the service
//! user, folders and modes and starts nothing; `check` and `status` run against the installed
//! files; an upgrade keeps the edited config, the station key and the recordings; removing and
//! purging keep the recordings and the key, and purge says so.
//!
//! Needs root (it installs packages and creates system users) and a machine without
//! Stationwatch installed; it removes what it installed. Skipped otherwise (a failure under
//! CI=true).

use std::path::Path;
use std::process::{Command, Output};

use stationwatch_tests::process::{set_by_cargo_for_the_test, workspace_root};
use stationwatch_tests::{have_binary, is_root, require};

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    eprintln!(
        "$ {cmd:?} -> {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The agent's, the controller's and the gateway's package, in that order.
fn package(version: &str, out: &Path) -> [String; 3] {
    let mut cmd = Command::new(workspace_root().join("scripts/package"));
    // The nested cargo build must see the environment the outer one saw (tests/src/process.rs).
    for (k, _) in std::env::vars() {
        if set_by_cargo_for_the_test(&k) {
            cmd.env_remove(&k);
        }
    }
    let text = ok(cmd
        .args(["--profile", "dev", "--version", version])
        .arg(out));
    let debs: Vec<String> = text
        .lines()
        .filter(|l| l.ends_with(".deb"))
        .map(str::to_owned)
        .collect();
    let find = |name: &str| {
        debs.iter()
            .find(|d| d.contains(&format!("/{name}_{version}_")))
            .unwrap_or_else(|| panic!("no {name} package in {text}"))
            .clone()
    };
    assert_eq!(debs.len(), 3, "{text}");
    [
        find("stationwatch-agent"),
        find("stationwatch-controller"),
        find("stationwatch-gateway"),
    ]
}

fn mode_owner(path: &str) -> String {
    ok(Command::new("stat").args(["-c", "%a %U:%G", path]))
        .trim()
        .to_owned()
}

fn cleanup() {
    for p in [
        "stationwatch-agent",
        "stationwatch-controller",
        "stationwatch-gateway",
    ] {
        let _ = Command::new("dpkg").args(["-P", p]).output();
    }
    for d in [
        "/var/lib/stationwatch",
        "/var/lib/stationwatch-controller",
        "/var/lib/stationwatch-gateway",
        "/etc/stationwatch",
    ] {
        let _ = std::fs::remove_dir_all(d);
    }
    for u in [
        "stationwatch",
        "stationwatch-controller",
        "stationwatch-gateway",
    ] {
        let _ = Command::new("userdel").arg(u).output();
        let _ = Command::new("groupdel").arg(u).output();
    }
}

#[test]
fn packages_install_upgrade_and_remove_keeping_config_key_and_recordings() {
    if !require(
        is_root(),
        "needs root: installs packages and creates system users",
    ) || !require(
        have_binary("dpkg-deb") && have_binary("lintian"),
        "dpkg-deb or lintian missing (run scripts/install-deps)",
    ) || !require(
        !Path::new("/var/lib/stationwatch").exists()
            && !Path::new("/etc/stationwatch").exists()
            && !run(Command::new("dpkg").args(["-s", "stationwatch-agent"]))
                .status
                .success(),
        "Stationwatch is already installed on this machine: the test would change it",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let [agent1, controller1, gateway1] = package("0.1.0", &dir.path().join("v1"));
    let [agent2, _, gateway2] = package("0.1.1", &dir.path().join("v2"));
    struct Clean;
    impl Drop for Clean {
        fn drop(&mut self) {
            cleanup();
        }
    }
    let _clean = Clean;

    // lintian: no error, no warning (overrides are in packaging/, each explained).
    ok(Command::new("lintian")
        .args(["--fail-on", "error,warning"])
        .args([&agent1, &controller1, &gateway1]));

    // Installing: the user, folders and modes; nothing started.
    let out = ok(Command::new("dpkg").args(["-i", &agent1]));
    assert!(out.contains("station-agent: not started"), "{out}");
    assert!(Path::new("/usr/bin/station-agent").exists());
    assert!(Path::new("/lib/systemd/system/station-agent.service").exists());
    // The manual, one page per subcommand, in the package and readable by `man` (where this
    // machine's dpkg installs manual pages and has man-db).
    let contents = ok(Command::new("dpkg-deb").args(["-c", &agent1]));
    for page in [
        "station-agent",
        "station-agent-enroll",
        "station-agent-probe",
    ] {
        let file = format!("/usr/share/man/man1/{page}.1.gz");
        assert!(contents.contains(&format!(".{file}")), "{contents}");
        if Path::new(&file).exists() && have_binary("man") {
            let text = ok(Command::new("man").args(["-P", "cat", page]));
            assert!(text.contains(page), "{text}");
        }
    }
    ok(Command::new("getent").args(["passwd", "stationwatch"]));
    let groups = ok(Command::new("id").args(["-nG", "stationwatch"]));
    assert!(groups.split_whitespace().any(|g| g == "video"), "{groups}");
    assert_eq!(
        mode_owner("/var/lib/stationwatch/recordings"),
        "750 stationwatch:stationwatch"
    );
    assert_eq!(
        mode_owner("/etc/stationwatch/agent.toml"),
        "640 root:stationwatch"
    );
    // (Machines without systemd have nothing that could have started it.)
    if let Ok(status) = Command::new("systemctl")
        .args(["is-active", "station-agent"])
        .output()
    {
        assert!(
            !String::from_utf8_lossy(&status.stdout).starts_with("active"),
            "started on install"
        );
    }

    // `check` against the installed (not yet enrolled) config names the file and the key;
    // `status` says there is no status yet.
    let out = run(Command::new("/usr/bin/station-agent").args([
        "check",
        "--config",
        "/etc/stationwatch/agent.toml",
    ]));
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the template passed check: {text}");
    assert!(
        text.contains("/etc/stationwatch/agent.toml") && text.contains("mqtt."),
        "{text}"
    );
    let out = run(Command::new("/usr/bin/station-agent").args([
        "status",
        "--config",
        "/etc/stationwatch/agent.toml",
    ]));
    assert_eq!(out.status.code(), Some(2));

    // On site: the config edited, the key made, recordings written.
    let config = "/etc/stationwatch/agent.toml";
    let edited = std::fs::read_to_string(config).unwrap() + "\n# edited on site\n";
    std::fs::write(config, &edited).unwrap();
    ok(Command::new("runuser").args([
        "-u",
        "stationwatch",
        "--",
        "/usr/bin/station-agent",
        "key",
        "--config",
        config,
    ]));
    let key = std::fs::read("/var/lib/stationwatch/station.key").unwrap();
    let rec = "/var/lib/stationwatch/recordings/desk/20261204T080000.000Z.ts";
    std::fs::create_dir_all(Path::new(rec).parent().unwrap()).unwrap();
    std::fs::write(rec, b"evidence").unwrap();

    // Upgrade: config, key and recordings kept.
    ok(Command::new("dpkg").args(["-i", "--force-confold", &agent2]));
    let v = ok(Command::new("dpkg-query").args(["-W", "-f", "${Version}", "stationwatch-agent"]));
    assert_eq!(v.trim(), "0.1.1");
    assert_eq!(std::fs::read_to_string(config).unwrap(), edited);
    assert_eq!(
        std::fs::read("/var/lib/stationwatch/station.key").unwrap(),
        key
    );
    assert_eq!(std::fs::read(rec).unwrap(), b"evidence");

    // Remove: the program goes, the rest stays. Purge: the config goes, and it says what stays.
    ok(Command::new("dpkg").args(["-r", "stationwatch-agent"]));
    assert!(!Path::new("/usr/bin/station-agent").exists());
    assert!(Path::new(config).exists());
    let out = ok(Command::new("dpkg").args(["-P", "stationwatch-agent"]));
    assert!(
        out.contains("KEPT") && out.contains("/var/lib/stationwatch/recordings"),
        "{out}"
    );
    assert!(!Path::new(config).exists());
    assert_eq!(
        std::fs::read("/var/lib/stationwatch/station.key").unwrap(),
        key
    );
    assert_eq!(std::fs::read(rec).unwrap(), b"evidence");

    // The controller's package: its own user and folder, nothing started.
    let out = ok(Command::new("dpkg").args(["-i", &controller1]));
    assert!(out.contains("station-controller: not started"), "{out}");
    assert_eq!(
        mode_owner("/var/lib/stationwatch-controller"),
        "750 stationwatch-controller:stationwatch-controller"
    );
    assert_eq!(
        mode_owner("/etc/stationwatch/controller.toml"),
        "640 root:stationwatch-controller"
    );

    // The live gateway's package, installed next to the controller (as at a small centre): its
    // own user; the HLS folder (unmasked video) readable by its group only, which the
    // controller's user joins; the template refused by `check`, naming the file and the key;
    // nothing started; an upgrade keeps the edited config and the token; purge deletes the
    // live copies (not evidence) and says so, and keeps the token.
    let out = ok(Command::new("dpkg").args(["-i", &gateway1]));
    assert!(out.contains("live-gateway: not started"), "{out}");
    assert!(Path::new("/usr/bin/live-gateway").exists());
    assert!(Path::new("/lib/systemd/system/live-gateway.service").exists());
    assert_eq!(
        mode_owner("/var/lib/stationwatch-gateway/hls"),
        "750 stationwatch-gateway:stationwatch-gateway"
    );
    assert_eq!(
        mode_owner("/etc/stationwatch/gateway.toml"),
        "640 root:stationwatch-gateway"
    );
    let groups = ok(Command::new("id").args(["-nG", "stationwatch-controller"]));
    assert!(
        groups
            .split_whitespace()
            .any(|g| g == "stationwatch-gateway"),
        "{groups}"
    );
    let gw_config = "/etc/stationwatch/gateway.toml";
    let gateway_check = || {
        let mut cmd = Command::new("runuser");
        cmd.args([
            "-u",
            "stationwatch-gateway",
            "--",
            "/usr/bin/live-gateway",
            "check",
            "--config",
            gw_config,
        ]);
        cmd
    };
    let out = run(&mut gateway_check());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the template passed check: {text}");
    assert!(
        text.contains(gw_config) && text.contains("controller.token_file"),
        "{text}"
    );
    // Set up as the postinst says: a token, the controller's URL. Now `check` passes as the
    // service's user (it reads the token through the group).
    let token = "/etc/stationwatch/gateway.token";
    std::fs::write(token, "0123456789abcdef0123456789abcdef\n").unwrap();
    ok(Command::new("chgrp").args(["stationwatch-gateway", token]));
    ok(Command::new("chmod").args(["0640", token]));
    let gw_edited = std::fs::read_to_string(gw_config)
        .unwrap()
        .replace("https://controller.example/", "http://127.0.0.1:9/");
    std::fs::write(gw_config, &gw_edited).unwrap();
    ok(&mut gateway_check());
    ok(Command::new("dpkg").args(["-i", "--force-confold", &gateway2]));
    assert_eq!(std::fs::read_to_string(gw_config).unwrap(), gw_edited);
    let live = "/var/lib/stationwatch-gateway/hls/private/S-1/desk/index.m3u8";
    std::fs::create_dir_all(Path::new(live).parent().unwrap()).unwrap();
    std::fs::write(live, "#EXTM3U\n").unwrap();
    let out = ok(Command::new("dpkg").args(["-P", "stationwatch-gateway"]));
    assert!(
        out.contains("DELETED") && out.contains("KEPT") && out.contains("gateway token"),
        "{out}"
    );
    assert!(!Path::new("/usr/bin/live-gateway").exists());
    assert!(!Path::new(gw_config).exists());
    assert!(!Path::new("/var/lib/stationwatch-gateway").exists());
    assert!(Path::new(token).exists(), "purge deleted the token");

    let out = ok(Command::new("dpkg").args(["-P", "stationwatch-controller"]));
    assert!(out.contains("KEPT"), "{out}");
}
