//! `promtool check metrics` on a real scrape: the exposition passes Prometheus's own linter.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{Exporter, available, repo_path};

#[test]
fn promtool_check_metrics_reports_nothing() {
    let has_promtool = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !available(has_promtool, "promtool (Debian package prometheus)") {
        return;
    }
    let data = std::fs::read(repo_path("testdata/golden.jsonl")).unwrap();
    let mut exporter = Exporter::start(&["--stdin", "on", "--max-line-bytes", "4096"]);
    exporter.feed_and_close(&data);
    exporter.scrape_until(Duration::from_secs(10), |m| {
        m.get("goflow_stdin_lines_total") == Some(&16.0)
    });
    let body = exporter.scrape_text();
    assert!(
        body.contains("goflow_bytes_by_src_addr_total"),
        "a full scrape"
    );
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool failed:\n{report}");
    assert_eq!(report.trim(), "", "promtool reported problems");
}
