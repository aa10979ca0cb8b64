//! The deployment files against real tools: a real Prometheus server (Debian package
//! `prometheus`) scrapes a real exporter with the shipped `deploy/prometheus.yml`, and every PromQL
//! query of the README and of the Grafana dashboard must return the series the fixture implies;
//! `promtool` checks the shipped configuration and the dashboard's expressions. (What the compose
//! file, the Dockerfiles and the systemd units name is checked in `deployment.rs`.)
//!
//! The traffic is `testdata/fixtures/mixed-v9-3exporters.pcap` (softflowd and pmacct, one exporter
//! sampling 1:4): replayed once before Prometheus starts, then sent again over UDP a few times, so
//! `rate()` is not 0 and every series grows in proportion to the fixture. The expected shares come
//! from the fixture's `expected.json` (tshark's totals, scaled by the sampling rate), never from
//! the exporter.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use goflow2_exporter::capture::read_datagrams;
use goflow2_exporter::names::protocol_name;
use serde_json::Value;

use crate::common::{
    Exporter, MetricMap, available, family, has_tool, identifiers, repo_path, tshark_expected,
};

const FIXTURE: &str = "testdata/fixtures/mixed-v9-3exporters.pcap";
const EXPECTED: &str = "testdata/fixtures/mixed-v9-3exporters.expected.json";
const DASHBOARD: &str = "deploy/grafana/dashboards/goflow2-exporter.json";
const PROMETHEUS_YML: &str = "deploy/prometheus.yml";
/// What the tests put in place of Grafana's `$__rate_interval`.
const RATE_INTERVAL: &str = "1m";
/// Times the fixture is sent over UDP after the replay.
const BURSTS: u32 = 3;

// ---------------------------------------------------------------------------------------------
// Tools, temporary directories, HTTP

/// A plain HTTP/1.0 GET that returns `None` when the server is not there (yet).
fn try_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// A real Prometheus server

/// One series of an instant query's result.
#[derive(Debug, Clone)]
struct Sample {
    labels: BTreeMap<String, String>,
    value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> &str {
        self.labels.get(name).map(String::as_str).unwrap_or("")
    }
}

/// A Prometheus server on loopback with its own storage, killed (and its files removed) on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    started: Instant,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` and waits until it is ready.
    fn start(config: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        let mut prom = Prometheus {
            child,
            addr,
            started: Instant::now(),
            dir,
        };
        let start = Instant::now();
        loop {
            if let Some(status) = prom.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", prom.log());
            }
            if try_get(addr, "/-/ready").is_some_and(|(code, _)| code == 200) {
                return prom;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "prometheus not ready within 30 s:\n{}",
                prom.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `/api/v1/query` at `time` (Unix seconds; `None`: now); the result must be a vector.
    fn query(&self, promql: &str, time: Option<f64>) -> Vec<Sample> {
        let mut path = format!("/api/v1/query?query={}", url_encode(promql));
        if let Some(t) = time {
            path.push_str(&format!("&time={t:.3}"));
        }
        let (code, body) = try_get(self.addr, &path)
            .unwrap_or_else(|| panic!("no answer from prometheus:\n{}", self.log()));
        let v: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{promql}: the answer is not JSON ({e}): {body}"));
        assert!(
            code == 200 && v["status"] == "success",
            "{promql}: HTTP {code}: {body}"
        );
        assert_eq!(
            v["data"]["resultType"], "vector",
            "{promql}: not a vector: {body}"
        );
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| Sample {
                labels: s["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect(),
                value: s["value"][1].as_str().unwrap().parse().unwrap(),
            })
            .collect()
    }

    /// Queries `promql` until `done` holds for its result, or panics after `timeout`.
    fn query_until(
        &self,
        timeout: Duration,
        what: &str,
        promql: &str,
        done: impl Fn(&[Sample]) -> bool,
    ) {
        let start = Instant::now();
        loop {
            let res = self.query(promql, None);
            if done(&res) {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "{what}: not reached within {timeout:?}; {promql} = {res:?}\nprometheus log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The queries: README and dashboard

/// Every line of the README's ```promql blocks that is not blank or a comment.
fn readme_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let mut out = Vec::new();
    let mut inside = false;
    for line in readme.lines() {
        let t = line.trim();
        if inside {
            if t.starts_with("```") {
                inside = false;
            } else if !t.is_empty() && !t.starts_with('#') {
                out.push(t.to_string());
            }
        } else if t == "```promql" {
            inside = true;
        }
    }
    out
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(repo_path(DASHBOARD)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

/// Every panel, rows' nested panels included.
fn panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// (panel title, expression as written) of every target of every panel.
fn dashboard_targets(dash: &Value) -> Vec<(String, String)> {
    panels(dash)
        .into_iter()
        .flat_map(|p| {
            let title = p["title"].as_str().unwrap_or("").to_string();
            p["targets"].as_array().into_iter().flatten().map(move |t| {
                let expr = t["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title:?}: a target without expr: {t}"));
                (title.clone(), expr.to_string())
            })
        })
        .collect()
}

/// A dashboard expression as Prometheus gets it: Grafana's `$__rate_interval` replaced. No other
/// dashboard variable is used (`$1` in a `label_replace` is PromQL's, not a variable).
fn substitute(expr: &str) -> String {
    let out = expr.replace("$__rate_interval", RATE_INTERVAL);
    let variable = out
        .split('$')
        .skip(1)
        .any(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()));
    assert!(
        !variable,
        "{expr}: a dashboard variable the tests do not substitute"
    );
    out
}

/// The dashboard's expressions, substituted, in panel order.
fn dashboard_queries() -> Vec<String> {
    dashboard_targets(&dashboard())
        .into_iter()
        .map(|(_, e)| substitute(&e))
        .collect()
}

/// The query with every range selector's duration replaced by `R`, so that the README's `[5m]`
/// and the dashboard's `[$__rate_interval]` share one expectation.
fn normalize(q: &str) -> String {
    let mut out = String::new();
    let mut rest = q;
    while let Some(i) = rest.find('[') {
        let Some(j) = rest[i..].find(']') else { break };
        out.push_str(&rest[..i]);
        out.push_str("[R]");
        rest = &rest[i + j + 1..];
    }
    out.push_str(rest);
    out
}

/// The duration of the query's (first) range selector.
fn range_of(q: &str) -> &str {
    let i = q.find('[').expect("a range selector");
    let j = q[i..].find(']').unwrap();
    &q[i + 1..i + j]
}

/// The `goflow_*` metric names a query mentions.
fn metric_names(q: &str) -> BTreeSet<String> {
    identifiers(q, "goflow_")
        .into_iter()
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The `error_type` values of README's Error types table (all present at 0 from the start).
fn readme_error_types() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let types: BTreeSet<String> = readme
        .lines()
        .skip_while(|l| !l.starts_with("### Error types"))
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .filter_map(|l| l.split('`').nth(1))
        .map(str::to_string)
        .collect();
    assert!(
        types.contains("invalid_json") && types.len() >= 7,
        "README's Error types table: {types:?}"
    );
    types
}

/// The metric names of the README's Metrics table.
fn readme_metrics() -> BTreeSet<String> {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `goflow_"))
        .map(|l| format!("goflow_{}", l.split('`').next().unwrap()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// What the fixture implies (tshark's totals, scaled by the sampling rate)

struct Fixture {
    datagrams: u64,
    scaled_bytes: f64,
    src_bytes: BTreeMap<String, f64>,
    dst_bytes: BTreeMap<String, f64>,
    protocol_bytes: BTreeMap<String, f64>,
    sampler_bytes: BTreeMap<String, f64>,
    sampler_packets: BTreeMap<String, f64>,
    sampler_flows: BTreeMap<String, f64>,
    /// (sampler address, flow type) pairs.
    sampler_types: usize,
    sampler_datagrams: BTreeMap<String, f64>,
    sampler_rate: BTreeMap<String, f64>,
    /// Bytes by "sampler|direction" and "sampler|interface|in-or-out" (tshark's totals with
    /// [`LOCAL_NET`] and interfaces: `scripts/tshark-expected.py` run here).
    direction_bytes: BTreeMap<String, f64>,
    interface_bytes: BTreeMap<String, f64>,
}

/// The exporter's `--local-net` in this test (the fixture's 192.0.2.0/24 hosts talk to the
/// documentation networks 198.51.100.0/24 and 203.0.113.0/24).
const LOCAL_NET: &str = "192.0.2.0/24";
/// The test ASN database (`scripts/make-asn-test-db.py`): 198.51.100.0/24 is AS64500 "Example
/// Transit", 203.0.113.0/24 AS64501 "Example Content", 2001:db8:1::/48 AS64502 "Example Six".
const ASN_DB: &str = "testdata/asn-test.mmdb";

/// The "asn|as_name" of an address in [`ASN_DB`], `None` for addresses it does not name.
fn test_asn(addr: &str) -> Option<&'static str> {
    if addr.starts_with("198.51.100.") {
        Some("64500|Example Transit")
    } else if addr.starts_with("203.0.113.") {
        Some("64501|Example Content")
    } else if addr.starts_with("2001:db8:1:") {
        Some("64502|Example Six")
    } else {
        None
    }
}

/// The fixture's collector port (`testdata/fixtures/README.md`).
const FIXTURE_PORT: u16 = 39012;

fn field(map: &Value, key: &str) -> BTreeMap<String, f64> {
    map.as_object()
        .unwrap()
        .iter()
        .map(|(k, t)| (k.clone(), t[key].as_f64().unwrap()))
        .collect()
}

/// Datagrams per sampler address (an address's exporters added up).
fn datagrams_by_sampler(want: &Value) -> BTreeMap<String, f64> {
    let mut sampler_datagrams = BTreeMap::new();
    for e in want["exporters"].as_array().unwrap() {
        *sampler_datagrams
            .entry(e["address"].as_str().unwrap().to_string())
            .or_default() += e["datagrams"].as_f64().unwrap();
    }
    sampler_datagrams
}

/// The sampling rate of each sampler address: one per exporter, the same for an address's
/// exporters.
fn rate_by_sampler(want: &Value) -> BTreeMap<String, f64> {
    let mut sampler_rate = BTreeMap::new();
    for (k, rates) in want["sampling"]["rate_by_exporter"].as_object().unwrap() {
        let addr: SocketAddr = k.parse().unwrap();
        let rates = rates.as_array().unwrap();
        assert_eq!(rates.len(), 1, "{k}: one rate per exporter");
        let rate = rates[0].as_f64().unwrap();
        let prev = sampler_rate.insert(addr.ip().to_string(), rate);
        assert!(
            prev.is_none_or(|p| p == rate),
            "{k}: the exporters of one address disagree"
        );
    }
    sampler_rate
}

/// tshark's bytes `by_interface` ("sampler|index|side") as "sampler|interface|side", with the
/// interface names the exporters send in options data (softflowd names interface 0 after the
/// capture it read), as tshark decoded them: the exporter labels by them.
fn interface_bytes(want: &Value, by_interface: &Value) -> BTreeMap<String, f64> {
    let mut if_names = HashMap::new();
    for r in want["options_data_records"].as_array().unwrap() {
        if let (Some(index), Some(name)) =
            (r["scope_interface"].as_u64(), r["if_name_ie82"].as_str())
        {
            let addr: SocketAddr = r["exporter"].as_str().unwrap().parse().unwrap();
            if_names.insert(format!("{}|{index}", addr.ip()), name.to_string());
        }
    }
    field(by_interface, "bytes")
        .into_iter()
        .map(|(k, v)| {
            let (router_index, side) = k.rsplit_once('|').unwrap();
            let (router, index) = router_index.split_once('|').unwrap();
            let label = if_names.get(router_index).map_or(index, String::as_str);
            (format!("{router}|{label}|{side}"), v)
        })
        .collect()
}

impl Fixture {
    fn load() -> Fixture {
        let want: Value =
            serde_json::from_str(&std::fs::read_to_string(repo_path(EXPECTED)).unwrap()).unwrap();
        let s = &want["sampling"]["scaled_by"];
        let by_sampler = |key: &str| {
            let mut m = BTreeMap::new();
            for (k, t) in s["by_exporter"].as_object().unwrap() {
                let addr = k.split_once('|').unwrap().0.to_string();
                *m.entry(addr).or_default() += t[key].as_f64().unwrap();
            }
            m
        };
        let protocol_bytes = field(&s["by_protocol"], "bytes")
            .into_iter()
            .map(|(p, v)| (protocol_name(p.parse::<u8>().ok()).to_string(), v))
            .collect();
        let with_options = tshark_expected(
            &repo_path(FIXTURE),
            FIXTURE_PORT,
            &["--local-net", LOCAL_NET, "--interfaces"],
        );
        let o = &with_options["sampling"]["scaled_by"];
        Fixture {
            direction_bytes: field(&o["by_direction"], "bytes"),
            interface_bytes: interface_bytes(&want, &o["by_interface"]),
            datagrams: want["datagrams"].as_u64().unwrap(),
            scaled_bytes: want["sampling"]["scaled_totals"]["bytes"].as_f64().unwrap(),
            src_bytes: field(&s["by_src_addr"], "bytes"),
            dst_bytes: field(&s["by_dst_addr"], "bytes"),
            protocol_bytes,
            sampler_bytes: by_sampler("bytes"),
            sampler_packets: by_sampler("packets"),
            sampler_flows: by_sampler("flows"),
            sampler_types: s["by_exporter"].as_object().unwrap().len(),
            sampler_datagrams: datagrams_by_sampler(&want),
            sampler_rate: rate_by_sampler(&want),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Checks of one query's result

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
}

fn by_label<'a>(q: &str, res: &'a [Sample], label: &str) -> BTreeMap<&'a str, f64> {
    let mut m = BTreeMap::new();
    for s in res {
        assert!(
            m.insert(s.label(label), s.value).is_none(),
            "{q}: two series with {label}={:?}: {res:?}",
            s.label(label)
        );
    }
    m
}

fn keys<V>(m: &BTreeMap<impl AsRef<str> + Ord, V>) -> BTreeSet<&str> {
    m.keys().map(AsRef::as_ref).collect()
}

/// One series per value of `label`, exactly the keys of `want`, each > 0 and in the proportions
/// of `want`.
fn assert_shares(q: &str, res: &[Sample], label: &str, want: &BTreeMap<String, f64>) {
    let got = by_label(q, res, label);
    assert_eq!(keys(&got), keys(want), "{q}: {label} values");
    let got_sum: f64 = got.values().sum();
    let want_sum: f64 = want.values().sum();
    for (k, w) in want {
        let g = got[k.as_str()];
        assert!(g > 0.0, "{q}: {label}={k} is {g}, not > 0");
        assert!(
            close(g / got_sum, w / want_sum),
            "{q}: {label}={k} is {g} of {got_sum}, want {w} of {want_sum}"
        );
    }
}

/// A `topk(k, ...)` result: the k largest of `want` by `label`, in its proportions; the largest
/// is `want`'s largest.
fn assert_top(q: &str, res: &[Sample], label: &str, want: &BTreeMap<String, f64>, k: usize) {
    let mut sorted: Vec<(&str, f64)> = want.iter().map(|(a, v)| (a.as_str(), *v)).collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert!(sorted[0].1 > sorted[1].1, "the fixture has one top talker");
    let got = by_label(q, res, label);
    assert_eq!(got.len(), k.min(sorted.len()), "{q}: {got:?}");
    let kth = sorted[got.len() - 1].1;
    for (a, v) in &sorted {
        if *v > kth {
            assert!(
                got.contains_key(a),
                "{q}: {label}={a} ({v}) missing: {got:?}"
            );
        }
    }
    let (top, top_value) = got
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(a, v)| (*a, *v))
        .unwrap();
    assert_eq!(top, sorted[0].0, "{q}: the top {label}");
    for (a, g) in &got {
        let w = want
            .get(*a)
            .unwrap_or_else(|| panic!("{q}: unexpected {label}={a}"));
        assert!(*w >= kth, "{q}: {label}={a} ({w}) is not in the top {k}");
        assert!(
            close(g / top_value, w / sorted[0].1),
            "{q}: {label}={a} is {g} against {top_value} for {top}, want {w} against {}",
            sorted[0].1
        );
    }
}

/// The value of a one-series result.
fn single(q: &str, res: &[Sample]) -> f64 {
    assert_eq!(res.len(), 1, "{q}: one series: {res:?}");
    res[0].value
}

/// Everything a check may look at.
struct Ctx<'a> {
    prom: &'a Prometheus,
    time: f64,
    fx: &'a Fixture,
    /// The exporter's own /metrics at the end (for gauges the fixture does not give).
    scrape: &'a MetricMap,
}

impl Ctx<'_> {
    fn query(&self, q: &str) -> Vec<Sample> {
        self.prom.query(q, Some(self.time))
    }

    /// The sum of another query's series, over the same range as `q`.
    fn sum_of(&self, q: &str, template: &str) -> f64 {
        let other = template.replace("{R}", range_of(q));
        self.query(&other).iter().map(|s| s.value).sum()
    }
}

/// [`assert_shares`] on the values of several labels joined by `|` (e.g. "sampler|direction").
fn assert_shares_of(q: &str, res: &[Sample], labels: &[&str], want: &BTreeMap<String, f64>) {
    let joined: Vec<Sample> = res
        .iter()
        .map(|s| Sample {
            labels: BTreeMap::from([(
                "key".to_string(),
                labels
                    .iter()
                    .map(|l| s.label(l))
                    .collect::<Vec<_>>()
                    .join("|"),
            )]),
            value: s.value,
        })
        .collect();
    assert_shares(q, &joined, "key", want);
}

/// A check of one query's result: the query as written, its result, what it may look at.
type Check = fn(&str, &[Sample], &Ctx);

/// What every README and dashboard query must return, by query with its range selectors
/// normalized (`[R]`, see [`normalize`]). Every query needs a row here.
const EXPECTATIONS: &[(&str, Check)] = &[
    (
        r#"topk(10, sum by (asn, as_name) (label_replace(rate(goflow_bytes_by_src_asn_total[R]) * 8, "asn", "$1", "src_asn", "(.*)") * on(asn) group_left(as_name) goflow_asn_info))"#,
        source_as_bytes_in_the_database_s_shares,
    ),
    (
        "sum by (sampler_address, direction) (rate(goflow_bytes_by_direction_total[R]) * 8)",
        |q, res, ctx| {
            let labels = ["sampler_address", "direction"];
            assert_shares_of(q, res, &labels, &ctx.fx.direction_bytes);
        },
    ),
    (
        "sum by (sampler_address, interface, direction) (rate(goflow_bytes_by_interface_total[R]) * 8)",
        |q, res, ctx| {
            let labels = ["sampler_address", "interface", "direction"];
            assert_shares_of(q, res, &labels, &ctx.fx.interface_bytes);
        },
    ),
    (
        "topk(10, rate(goflow_bytes_by_src_addr_total[R]) * 8)",
        |q, res, ctx| assert_top(q, res, "src_addr", &ctx.fx.src_bytes, 10),
    ),
    (
        "topk(10, rate(goflow_bytes_by_dst_addr_total[R]) * 8)",
        |q, res, ctx| assert_top(q, res, "dst_addr", &ctx.fx.dst_bytes, 10),
    ),
    (
        "sum by (protocol) (rate(goflow_bytes_by_protocol_total[R]) * 8)",
        |q, res, ctx| assert_shares(q, res, "protocol", &ctx.fx.protocol_bytes),
    ),
    (
        "sum by (sampler_address) (rate(goflow_bytes_by_sampler_total[R]) * 8)",
        sampler_bits_add_up_to_the_protocols_bits,
    ),
    (
        "sum(rate(goflow_bytes_by_sampler_total[R])) * 8 / 1e6",
        |q, res, ctx| {
            let v = single(q, res);
            let bps = ctx.sum_of(
                q,
                "sum by (sampler_address) (rate(goflow_bytes_by_sampler_total[{R}]) * 8)",
            );
            assert!(v > 0.0 && close(v, bps / 1e6), "{q}: {v} Mbps, {bps} bps");
        },
    ),
    (
        "sum(rate(goflow_bytes_by_sampler_total[R])) * 8",
        |q, res, ctx| {
            let v = single(q, res);
            let bps = ctx.sum_of(
                q,
                "sum by (sampler_address) (rate(goflow_bytes_by_sampler_total[{R}]) * 8)",
            );
            assert!(v > 0.0 && close(v, bps), "{q}: {v} bps, per sampler {bps}");
        },
    ),
    (
        "sum by (sampler_address) (rate(goflow_packets_by_sampler_total[R]))",
        |q, res, ctx| assert_shares(q, res, "sampler_address", &ctx.fx.sampler_packets),
    ),
    (
        "sum by (sampler_address) (rate(goflow_flows_by_sampler_total[R]))",
        |q, res, ctx| assert_shares(q, res, "sampler_address", &ctx.fx.sampler_flows),
    ),
    (
        "sum(rate(goflow_flows_by_sampler_total[R]))",
        flow_rate_is_the_sum_of_the_samplers,
    ),
    (
        "sum by (sampler_address) (rate(goflow_exporter_datagrams_total[R]))",
        |q, res, ctx| assert_shares(q, res, "sampler_address", &ctx.fx.sampler_datagrams),
    ),
    ("goflow_active_flows", active_flows_are_the_exporter_s),
    ("sum(goflow_active_flows)", |q, res, ctx| {
        let v = single(q, res);
        let want: f64 = family(ctx.scrape, "goflow_active_flows{").values().sum();
        assert!(v > 0.0 && v == want, "{q}: {v}, the exporter says {want}");
    }),
    ("goflow_sampling_rate", |q, res, ctx| {
        let got = by_label(q, res, "sampler_address");
        let want: BTreeMap<&str, f64> = ctx
            .fx
            .sampler_rate
            .iter()
            .map(|(a, r)| (a.as_str(), *r))
            .collect();
        assert_eq!(got, want, "{q}");
    }),
    (
        "sum by (error_type) (rate(goflow_parse_errors_total[R]))",
        error_types_are_the_readme_s_and_only_invalid_json_moves,
    ),
    (
        "sum by (error_type) (rate(goflow_parse_errors_total[R])) > 0",
        |q, res, _| {
            let got = by_label(q, res, "error_type");
            assert_eq!(keys(&got), ["invalid_json"].into_iter().collect(), "{q}");
        },
    ),
    ("sum(rate(goflow_parse_errors_total[R]))", |q, res, ctx| {
        let v = single(q, res);
        let by_type = ctx.sum_of(
            q,
            "sum by (error_type) (rate(goflow_parse_errors_total[{R}]))",
        );
        assert!(v > 0.0 && close(v, by_type), "{q}: {v}, by type {by_type}");
    }),
    (
        "goflow_metric_series",
        series_per_family_are_the_fixture_s_label_sets,
    ),
    ("rate(goflow_metric_overflow_total[R]) > 0", |q, res, _| {
        assert!(res.is_empty(), "{q}: no family is full: {res:?}");
    }),
    (
        "sum by (metric) (rate(goflow_metric_overflow_total[R]))",
        one_idle_overflow_counter_per_metric,
    ),
    (
        "rate(goflow_active_flows_overflow_total[R])",
        |q, res, _| {
            assert_eq!(single(q, res), 0.0, "{q}");
        },
    ),
    (
        "sum by (listener) (rate(goflow_udp_kernel_drops_total[R]))",
        |q, res, _| {
            let got = by_label(q, res, "listener");
            let want: BTreeMap<&str, f64> = [("netflow://127.0.0.1:0", 0.0)].into();
            assert_eq!(got, want, "{q}");
        },
    ),
];

/// Asserts what `q` must return: its row of [`EXPECTATIONS`].
fn check(q: &str, res: &[Sample], ctx: &Ctx) {
    let normalized = normalize(q);
    let Some((_, check)) = EXPECTATIONS.iter().find(|(n, _)| *n == normalized) else {
        panic!(
            "no expectation for the query {q:?} (normalized: {normalized:?}): add a row to \
             EXPECTATIONS in tests/integration/prometheus.rs"
        );
    };
    check(q, res, ctx);
}

/// Source bytes of the addresses the database names, by their AS (AS 0 has no name, so the join
/// leaves it out).
fn source_as_bytes_in_the_database_s_shares(q: &str, res: &[Sample], ctx: &Ctx) {
    let mut want = BTreeMap::new();
    for (addr, bytes) in &ctx.fx.src_bytes {
        if let Some(asn) = test_asn(addr) {
            *want.entry(asn.to_string()).or_default() += bytes;
        }
    }
    assert!(want.len() >= 2, "{want:?}");
    assert_shares_of(q, res, &["asn", "as_name"], &want);
}

/// The samplers' shares; all routers' bytes are all protocols' bytes.
fn sampler_bits_add_up_to_the_protocols_bits(q: &str, res: &[Sample], ctx: &Ctx) {
    assert_shares(q, res, "sampler_address", &ctx.fx.sampler_bytes);
    let total: f64 = res.iter().map(|s| s.value).sum();
    let by_protocol = ctx.sum_of(
        q,
        "sum by (protocol) (rate(goflow_bytes_by_protocol_total[{R}]) * 8)",
    );
    assert!(close(total, by_protocol), "{q}: {total} != {by_protocol}");
}

fn flow_rate_is_the_sum_of_the_samplers(q: &str, res: &[Sample], ctx: &Ctx) {
    let v = single(q, res);
    let per = ctx.query(&format!(
        "sum by (sampler_address) (rate(goflow_flows_by_sampler_total[{}]))",
        range_of(q)
    ));
    assert_shares(q, &per, "sampler_address", &ctx.fx.sampler_flows);
    let sum: f64 = per.iter().map(|s| s.value).sum();
    assert!(v > 0.0 && close(v, sum), "{q}: {v}, per sampler {sum}");
}

/// One series per sampler, each > 0 and equal to the exporter's own /metrics.
fn active_flows_are_the_exporter_s(q: &str, res: &[Sample], ctx: &Ctx) {
    let got = by_label(q, res, "sampler_address");
    let want: BTreeMap<String, f64> = family(ctx.scrape, "goflow_active_flows{")
        .into_iter()
        .map(|(k, v)| {
            let addr = k.split('"').nth(1).unwrap().to_string();
            (addr, v)
        })
        .collect();
    assert_eq!(keys(&got), keys(&ctx.fx.sampler_bytes), "{q}: samplers");
    for (a, v) in &got {
        assert!(*v > 0.0, "{q}: {a} has no active flow");
        assert_eq!(Some(v), want.get(*a), "{q}: {a}, the exporter says");
    }
}

/// The error types of README's table, all 0 but the bad stdin lines the test wrote.
fn error_types_are_the_readme_s_and_only_invalid_json_moves(q: &str, res: &[Sample], _: &Ctx) {
    let got = by_label(q, res, "error_type");
    let documented = readme_error_types();
    assert_eq!(
        keys(&got),
        documented.iter().map(String::as_str).collect(),
        "{q}: the error types of README's table"
    );
    for (t, v) in &got {
        if *t == "invalid_json" {
            assert!(*v > 0.0, "{q}: invalid_json is {v}");
        } else {
            assert_eq!(*v, 0.0, "{q}: {t}");
        }
    }
}

/// Label sets per family: the fixture's addresses, protocols, samplers and (sampler, flow type)
/// pairs.
fn series_per_family_are_the_fixture_s_label_sets(q: &str, res: &[Sample], ctx: &Ctx) {
    let fx = ctx.fx;
    let got = by_label(q, res, "metric");
    let (src, dst) = (fx.src_bytes.len(), fx.dst_bytes.len());
    let (protocols, samplers) = (fx.protocol_bytes.len(), fx.sampler_bytes.len());
    let want = [
        ("goflow_flows_by_src_addr_total", src),
        ("goflow_bytes_by_src_addr_total", src),
        ("goflow_flows_by_dst_addr_total", dst),
        ("goflow_bytes_by_dst_addr_total", dst),
        ("goflow_flows_by_protocol_total", protocols),
        ("goflow_bytes_by_protocol_total", protocols),
        ("goflow_packets_by_protocol_total", protocols),
        ("goflow_flows_by_sampler_total", samplers),
        ("goflow_bytes_by_sampler_total", samplers),
        ("goflow_packets_by_sampler_total", samplers),
        ("goflow_flows_total", fx.sampler_types),
        ("goflow_bytes_total", fx.sampler_types),
        ("goflow_packets_total", fx.sampler_types),
    ];
    for (m, n) in want {
        assert_eq!(got.get(m), Some(&(n as f64)), "{q}: {m}: {got:?}");
    }
}

/// One overflow counter per metric of `goflow_metric_series`, none moving.
fn one_idle_overflow_counter_per_metric(q: &str, res: &[Sample], ctx: &Ctx) {
    let got = by_label(q, res, "metric");
    let series: BTreeSet<String> = ctx
        .query("goflow_metric_series")
        .iter()
        .map(|s| s.label("metric").to_string())
        .collect();
    assert_eq!(
        keys(&got),
        series.iter().map(String::as_str).collect(),
        "{q}: one overflow counter per metric of goflow_metric_series"
    );
    assert!(got.values().all(|v| *v == 0.0), "{q}: {got:?}");
}

// ---------------------------------------------------------------------------------------------
// The tests

/// `deploy/prometheus.yml` for the test: scrape every second (timeout likewise), the exporter at
/// `target` instead of the compose service.
fn test_config(target: SocketAddr) -> String {
    let shipped = std::fs::read_to_string(repo_path(PROMETHEUS_YML)).unwrap();
    let (mut interval, mut replaced) = (0, 0);
    let mut out = String::new();
    for line in shipped.lines() {
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        if t.starts_with("scrape_interval:") {
            out.push_str(&format!(
                "{indent}scrape_interval: 1s\n{indent}scrape_timeout: 1s\n"
            ));
            interval += 1;
        } else if !t.starts_with('#') && line.contains("exporter:9090") {
            out.push_str(&line.replace("exporter:9090", &target.to_string()));
            out.push('\n');
            replaced += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_eq!(
        (interval, replaced),
        (1, 1),
        "{PROMETHEUS_YML}: one scrape_interval and one exporter:9090 target"
    );
    out
}

fn total(m: &MetricMap, name: &str) -> f64 {
    family(m, &format!("{name}{{")).values().sum()
}

/// The exporter with the fixture replayed and counted, stdin open (for the bad lines) and UDP on
/// loopback.
fn exporter_with_the_fixture_replayed(fx: &Fixture) -> Exporter {
    let pcap = repo_path(FIXTURE);
    let exporter = Exporter::start(&[
        "--stdin",
        "on",
        "--listen",
        "netflow://127.0.0.1:0",
        "--rcvbuf",
        "4194304",
        "--local-net",
        LOCAL_NET,
        "--interfaces",
        "--asn-db",
        ASN_DB,
        "--replay",
        pcap.to_str().unwrap(),
    ]);
    let n = fx.datagrams as f64;
    exporter.scrape_settled(Duration::from_secs(30), |m| {
        m.get("goflow_replay_datagrams_total") == Some(&n)
            && total(m, "goflow_bytes_by_sampler_total") == fx.scaled_bytes
    });
    exporter
}

/// The fixture again over UDP, [`BURSTS`] times, from the exporters' original loopback addresses,
/// with one bad line on stdin each time (invalid_json). Each burst is complete (and counted, none
/// dropped) before the next, a little over a scrape interval apart.
fn send_the_fixture_in_bursts(exporter: &mut Exporter, fx: &Fixture) {
    let n = fx.datagrams as f64;
    let bytes = std::fs::read(repo_path(FIXTURE)).unwrap();
    let (datagrams, _) = read_datagrams(&bytes).expect("a capture");
    assert_eq!(datagrams.len() as u64, fx.datagrams);
    let target = exporter.udp_addr();
    let mut sockets: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    for burst in 1..=BURSTS {
        let base = n * f64::from(burst);
        for (i, d) in datagrams.iter().enumerate() {
            let ip: IpAddr = d.src.ip();
            assert!(ip.is_loopback(), "the fixture's exporters are on loopback");
            let socket = sockets
                .entry(d.src)
                .or_insert_with(|| UdpSocket::bind((ip, 0)).expect("bind a loopback source"));
            socket.send_to(d.payload, target).unwrap();
            if (i + 1) % 50 == 0 {
                // Paced by the exporter: no datagram may be dropped.
                let sent = base + (i + 1) as f64;
                exporter.scrape_until(Duration::from_secs(30), |m| {
                    total(m, "goflow_exporter_datagrams_total") >= sent
                });
            }
        }
        writeln!(exporter.stdin(), "not json").unwrap();
        exporter.stdin().flush().unwrap();
        let copies = f64::from(burst + 1);
        exporter.scrape_settled(Duration::from_secs(30), |m| {
            total(m, "goflow_exporter_datagrams_total") == n * copies
                && m.get("goflow_stdin_lines_total") == Some(&f64::from(burst))
                && total(m, "goflow_bytes_by_sampler_total") == fx.scaled_bytes * copies
        });
        std::thread::sleep(Duration::from_millis(1100));
    }
}

/// Runs every README and dashboard query (each distinct one once) through [`check`]; returns how
/// many ran.
fn check_every_query(ctx: &Ctx) -> usize {
    let readme = readme_queries();
    assert!(readme.len() >= 6, "README's ```promql blocks: {readme:?}");
    let dash = dashboard_queries();
    assert!(dash.len() >= 10, "dashboard expressions: {dash:?}");
    let mut ran = BTreeSet::new();
    for q in readme.iter().chain(&dash) {
        if ran.insert(q.clone()) {
            let res = ctx.query(q);
            check(q, &res, ctx);
            eprintln!("ok: {q} -> {} series", res.len());
        }
    }
    for q in &dash {
        assert!(ran.contains(q), "dashboard query not run: {q}");
    }
    for q in &readme {
        assert!(ran.contains(q), "README query not run: {q}");
    }
    ran.len()
}

#[test]
fn real_prometheus_answers_every_readme_and_dashboard_query() {
    if !available(
        has_tool("prometheus"),
        "prometheus (Debian package prometheus)",
    ) || !available(has_tool("tshark"), "tshark (Debian package tshark)")
    {
        return;
    }
    let test_start = Instant::now();
    let fx = Fixture::load();
    let mut exporter = exporter_with_the_fixture_replayed(&fx);

    // Prometheus with the shipped configuration; two scrapes of the replayed fixture before more
    // traffic, so every rate() window starts at a complete copy of it.
    let prom = Prometheus::start(&test_config(exporter.addr));
    prom.query_until(
        Duration::from_secs(20),
        "two scrapes of the replayed capture",
        r#"count_over_time(goflow_replay_datagrams_total{job="goflow2-exporter"}[1m])"#,
        |r| r.len() == 1 && r[0].value >= 2.0,
    );

    send_the_fixture_in_bursts(&mut exporter, &fx);
    let scrape = exporter.scrape();
    assert_eq!(
        total(&scrape, "goflow_udp_kernel_drops_total"),
        0.0,
        "kernel drops"
    );
    let copies = f64::from(BURSTS + 1);
    prom.query_until(
        Duration::from_secs(15),
        "a scrape after the last burst",
        "sum(goflow_bytes_by_sampler_total) + sum(goflow_stdin_lines_total)",
        |r| r.len() == 1 && r[0].value == fx.scaled_bytes * copies + f64::from(BURSTS),
    );
    // Every query is evaluated at one instant whose 1m window reaches back to Prometheus' first
    // scrape (the replayed fixture): every rate is then (BURSTS copies) / (the same duration).
    let time = unix_now();
    assert!(
        prom.started.elapsed() < Duration::from_secs(50),
        "too slow: the 1m windows no longer reach the first scrape"
    );

    let ctx = Ctx {
        prom: &prom,
        time,
        fx: &fx,
        scrape: &scrape,
    };
    let ran = check_every_query(&ctx);
    eprintln!(
        "{ran} queries checked against a real Prometheus in {:.1} s",
        test_start.elapsed().as_secs_f64()
    );
}

/// Every panel has a title and a unique id; every panel but a row has a grid position and at
/// least one query, on the `prometheus` datasource, with unique refIds.
fn assert_panels_are_well_formed(dash: &Value) {
    let mut ids = BTreeSet::new();
    for p in panels(dash) {
        let title = p["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "{title}: duplicate panel id"
        );
        if p["type"] == "row" {
            continue;
        }
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].is_u64(), "{title}: gridPos.{k}");
        }
        assert_eq!(p["datasource"]["uid"], "prometheus", "{title}: datasource");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(
                refs.insert(t["refId"].as_str().expect("refId")),
                "{title}: duplicate refId"
            );
            assert_eq!(t["datasource"]["uid"], "prometheus", "{title}: datasource");
        }
    }
}

/// The metrics the dashboard's expressions query; each expression names at least one, and only
/// `documented` ones.
fn dashboard_metrics(dash: &Value, documented: &BTreeSet<String>) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for (title, expr) in &dashboard_targets(dash) {
        eprintln!("{title}: {expr}");
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{title}: {expr} names no goflow_ metric");
        for name in names {
            assert!(
                documented.contains(&name),
                "{title}: {name} is not in README's Metrics table"
            );
            used.insert(name);
        }
    }
    used
}

/// The metrics issue 5 asks the dashboard's panels to show.
const ISSUE_5_PANELS: [&str; 11] = [
    "goflow_bytes_by_sampler_total",
    "goflow_bytes_by_protocol_total",
    "goflow_bytes_by_src_addr_total",
    "goflow_bytes_by_dst_addr_total",
    "goflow_packets_by_sampler_total",
    "goflow_active_flows",
    "goflow_sampling_rate",
    "goflow_parse_errors_total",
    "goflow_metric_series",
    "goflow_metric_overflow_total",
    "goflow_udp_kernel_drops_total",
];

#[test]
fn dashboard_json_is_valid_and_uses_documented_metrics() {
    let dash = dashboard();
    assert!(
        dash["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion"
    );
    assert_eq!(dash["uid"], "goflow2-exporter");
    assert!(dash["title"].as_str().is_some_and(|t| !t.is_empty()));
    let documented = readme_metrics();
    assert!(
        documented.contains("goflow_bytes_by_src_addr_total") && documented.len() >= 20,
        "README's Metrics table: {documented:?}"
    );
    assert_panels_are_well_formed(&dash);
    let used = dashboard_metrics(&dash, &documented);
    for m in ISSUE_5_PANELS {
        assert!(used.contains(m), "no panel queries {m}");
    }
    // README's queries name documented metrics too.
    for q in readme_queries() {
        for name in metric_names(&q) {
            assert!(documented.contains(&name), "README query {q}: {name}");
        }
    }
}

#[test]
fn promtool_checks_the_config_and_the_dashboard_as_rules() {
    if !available(has_tool("promtool"), "promtool (Debian package prometheus)") {
        return;
    }
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(repo_path(PROMETHEUS_YML))
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.contains("SUCCESS"),
        "promtool check config {PROMETHEUS_YML}:\n{report}"
    );

    // Every dashboard expression (and README query) as a recording rule.
    let mut rules = String::from("groups:\n  - name: goflow2-exporter-dashboard\n    rules:\n");
    let mut count = 0;
    for (i, q) in dashboard_queries().iter().enumerate() {
        rules.push_str(&format!(
            "      - record: goflow2_exporter:dashboard_target_{i}\n        expr: '{}'\n",
            q.replace('\'', "''")
        ));
        count += 1;
    }
    rules.push_str("  - name: goflow2-exporter-readme\n    rules:\n");
    for (i, q) in readme_queries().iter().enumerate() {
        rules.push_str(&format!(
            "      - record: goflow2_exporter:readme_query_{i}\n        expr: '{}'\n",
            q.replace('\'', "''")
        ));
        count += 1;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("rules.yml");
    std::fs::write(&path, &rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.contains(&format!("SUCCESS: {count} rules found")),
        "promtool check rules:\n{report}\nrules:\n{rules}"
    );
}
