//! Process lifecycle: signals, `--exit-on-eof`, start-up errors, visibility latency, routes.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Exporter, http_get};

const LINE: &str = r#"{"type":"NETFLOW_V9","sampler_address":"192.0.2.9","sampling_rate":1,"bytes":1000,"packets":2,"src_addr":"10.0.0.1","dst_addr":"10.0.0.2","proto":"TCP","src_port":1000,"dst_port":443}"#;

#[test]
fn sigterm_during_a_stream_exits_0_within_2s() {
    let mut exporter = Exporter::start(&["--stdin", "on"]);
    // Keep a writer streaming lines until the pipe breaks.
    let mut stdin = exporter.child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut written = 0u64;
        while writeln!(stdin, "{LINE}").is_ok() {
            written += 1;
        }
        written
    });
    exporter.scrape_until(Duration::from_secs(10), |m| {
        m.get("goflow_stdin_lines_total")
            .is_some_and(|n| *n > 1000.0)
    });
    let start = Instant::now();
    exporter.signal("TERM");
    let status = exporter
        .wait_timeout(Duration::from_secs(2))
        .expect("exited within 2 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(writer.join().unwrap() > 1000);
    let logs = exporter.logs();
    assert!(logs.contains("SIGTERM received"), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
}

#[test]
fn sigint_exits_0() {
    let mut exporter = Exporter::start(&["--stdin", "on"]);
    exporter.signal("INT");
    let status = exporter
        .wait_timeout(Duration::from_secs(2))
        .expect("exits");
    assert!(status.success());
}

#[test]
fn exit_on_eof_exits_0_after_the_last_line_counts() {
    let mut exporter = Exporter::start(&["--stdin", "on", "--exit-on-eof"]);
    let mut data = String::new();
    for _ in 0..5000 {
        data.push_str(LINE);
        data.push('\n');
    }
    exporter.feed_and_close(data.as_bytes());
    let status = exporter
        .wait_timeout(Duration::from_secs(10))
        .expect("exits after EOF");
    assert!(status.success(), "exit status {status:?}");
    let logs = exporter.logs();
    assert!(
        logs.contains("lines=5000") && logs.contains("flows=5000") && logs.contains("errors=0"),
        "the EOF summary must count every line:\n{logs}"
    );
}

#[test]
fn exit_on_eof_from_the_environment() {
    for value in ["1", "true", "yes"] {
        let mut exporter = Exporter::start_env(
            &["--stdin", "on"],
            &[("GOFLOW2_EXPORTER_EXIT_ON_EOF", value)],
            Stdio::piped(),
        );
        exporter.feed_and_close(format!("{LINE}\n").as_bytes());
        let status = exporter.wait_timeout(Duration::from_secs(5));
        assert!(status.is_some_and(|s| s.success()), "EXIT_ON_EOF={value}");
    }
}

#[test]
fn without_exit_on_eof_it_keeps_serving_after_eof() {
    let mut exporter = Exporter::start(&["--stdin", "on"]);
    exporter.feed_and_close(format!("{LINE}\n").as_bytes());
    exporter.scrape_until(Duration::from_secs(5), |m| {
        m.get("goflow_stdin_lines_total") == Some(&1.0)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(exporter.child.try_wait().unwrap().is_none());
    assert!(exporter.logs().contains("stdin reached end of file"));
}

#[test]
fn a_flow_is_visible_within_1s_of_being_read() {
    let mut exporter = Exporter::start(&["--stdin", "on"]);
    writeln!(exporter.stdin(), "{LINE}").unwrap();
    exporter.stdin().flush().unwrap();
    let start = Instant::now();
    exporter.scrape_until(Duration::from_secs(1), |m| {
        m.get(r#"goflow_bytes_by_src_addr_total{src_addr="10.0.0.1"}"#) == Some(&1000.0)
    });
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn metrics_port_in_use_is_a_clear_error_and_exit_1() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_goflow2-exporter"))
        .args(["--metrics-addr", &addr, "--stdin", "off"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen for /metrics on {addr}")) && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn bad_configuration_is_a_clear_error_and_nonzero_exit() {
    for (args, needle) in [
        (
            &["--sampling-rate-default", "0"][..],
            "sampling-rate-default",
        ),
        (&["--sampling-rate-override", "10.0.0.0/8"], "CIDR=RATE"),
        (&["--active-window", "never"], "active-window"),
        (&["--metrics-addr", "nowhere"], "metrics-addr"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_goflow2-exporter"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn environment_variables_configure_flags() {
    // A rate-0 flow is scaled by the default (7); an override from a comma-separated list wins.
    let mut exporter = Exporter::start_env(
        &[],
        &[
            ("GOFLOW2_EXPORTER_STDIN", "on"),
            ("GOFLOW2_EXPORTER_SAMPLING_RATE_DEFAULT", "7"),
            (
                "GOFLOW2_EXPORTER_SAMPLING_RATE_OVERRIDE",
                "192.0.2.0/24=3,198.51.100.0/24=5",
            ),
        ],
        Stdio::piped(),
    );
    writeln!(
        exporter.stdin(),
        r#"{{"type":"IPFIX","sampler_address":"198.51.100.1","sampling_rate":0,"bytes":10,"packets":1}}"#
    )
    .unwrap();
    writeln!(
        exporter.stdin(),
        r#"{{"type":"IPFIX","sampler_address":"203.0.113.1","sampling_rate":0,"bytes":10,"packets":1}}"#
    )
    .unwrap();
    exporter.stdin().flush().unwrap();
    exporter.scrape_until(Duration::from_secs(5), |m| {
        m.get(r#"goflow_bytes_by_sampler_total{sampler_address="203.0.113.1"}"#) == Some(&70.0)
            && m.get(r#"goflow_bytes_by_sampler_total{sampler_address="198.51.100.1"}"#)
                == Some(&50.0)
    });
}

#[test]
fn routes() {
    let exporter = Exporter::start(&["--stdin", "off", "--listen", "netflow://127.0.0.1:0"]);
    assert_eq!(
        http_get(exporter.addr, "/healthz"),
        (200, "ok\n".to_string())
    );
    assert_eq!(http_get(exporter.addr, "/nope").0, 404);
    let (code, body) = http_get(exporter.addr, "/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains(r#"goflow_parse_errors_total{error_type="invalid_json"} 0"#),
        "{body}"
    );
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_goflow2-exporter"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "stdin",
        "listen",
        "metrics-addr",
        "exit-on-eof",
        "sampling-rate-default",
        "sampling-rate-override",
        "active-window",
        "active-flows-max",
        "max-line-bytes",
    ] {
        assert!(
            help.contains(&format!("--{flag}")),
            "--{flag} missing from --help"
        );
        let env = format!("GOFLOW2_EXPORTER_{}", flag.to_uppercase().replace('-', "_"));
        assert!(help.contains(&env), "{env} missing from --help");
    }
}

#[test]
fn listener_port_in_use_is_a_clear_error_and_exit_1() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_goflow2-exporter"))
        .args(["--metrics-addr", "127.0.0.1:0", "--stdin", "off"])
        .args(["--listen", &format!("netflow://{addr}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on netflow://{addr} (--listen)"))
            && err.contains("in use"),
        "{err}"
    );
}

#[test]
fn replay_of_a_file_that_is_not_a_capture_is_a_clear_error() {
    for (file, needle) in [
        ("Cargo.toml", "not a pcap or pcapng capture"),
        ("no/such/file.pcap", "cannot read --replay file"),
    ] {
        let out = crate::common::run_to_exit(&[
            "--metrics-addr",
            "127.0.0.1:0",
            "--stdin",
            "off",
            "--replay",
            file,
        ]);
        assert_eq!(out.status.code(), Some(1), "{file}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle) && err.contains(file), "{file}: {err}");
    }
}

#[test]
fn default_listener_only_when_nothing_else_is_read() {
    // Neither stdin nor --replay: the native collector on 0.0.0.0:2055 (or a clear error if
    // something on this machine holds that port; either way the default was chosen).
    let mut child = Command::new(env!("CARGO_BIN_EXE_goflow2-exporter"))
        .args(["--metrics-addr", "127.0.0.1:0", "--stdin", "off"])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listening for NetFlow/IPFIX on udp://0.0.0.0:2055")
            || err.contains("cannot listen on netflow://0.0.0.0:2055"),
        "{err}"
    );

    // Reading stdin: no listener, so `goflow2 | goflow2-exporter` never fights goflow2.
    let mut exporter = Exporter::start(&["--stdin", "on"]);
    exporter.feed_and_close(b"");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !exporter.logs().contains("listening for NetFlow/IPFIX"),
        "{}",
        exporter.logs()
    );
}

#[test]
fn replay_with_exit_on_eof_exits_0_after_the_file() {
    let pcap = crate::common::repo_path("testdata/fixtures/pmacct-v9-sampled4.pcap");
    let mut exporter = Exporter::start(&[
        "--stdin",
        "off",
        "--exit-on-eof",
        "--replay",
        pcap.to_str().unwrap(),
    ]);
    let status = exporter
        .wait_timeout(Duration::from_secs(10))
        .expect("exits");
    assert!(status.success());
    let logs = exporter.logs();
    assert!(logs.contains("datagrams=34 flows=220 errors=0"), "{logs}");
}

#[test]
fn stdin_and_udp_feed_the_same_metrics() {
    let mut exporter = Exporter::start(&["--stdin", "on", "--listen", "netflow://127.0.0.1:0"]);
    writeln!(exporter.stdin(), "{LINE}").unwrap();
    exporter.stdin().flush().unwrap();
    // The same sampler over UDP (v5 from 127.0.0.1; the JSON line says 192.0.2.9).
    let mut d = vec![0x00, 0x05, 0x00, 0x01];
    d.extend_from_slice(&[0; 20]);
    d.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0, 2]);
    d.extend_from_slice(&1u32.to_be_bytes());
    d.extend_from_slice(&500u32.to_be_bytes());
    d.extend_from_slice(&[0; 8]);
    d.extend_from_slice(&[0x04, 0x00, 0x01, 0xbb, 0, 0, 6, 0]);
    d.extend_from_slice(&[0; 8]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(&d, exporter.udp_addr()).unwrap();
    exporter.scrape_until(Duration::from_secs(5), |m| {
        m.get(r#"goflow_bytes_by_src_addr_total{src_addr="10.0.0.1"}"#) == Some(&1500.0)
            && m.get(r#"goflow_flows_total{flow_type="NETFLOW_V5",sampler_address="127.0.0.1"}"#)
                == Some(&1.0)
    });
}
