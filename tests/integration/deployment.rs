//! The deployment files checked against the repository and the README without running them:
//! `docker-compose.yml` (services, published ports, mounts) with the Grafana provisioning and the
//! `deploy/prometheus.yml` it mounts, the two Dockerfiles with `.dockerignore`, and the systemd
//! units. Every file, port and variable they name must exist or be documented.
//!
//! The YAML files are parsed with `yaml-rust2` (a maintained, pure-Rust YAML 1.2 parser), so a
//! check sees the structure compose and Grafana read, whatever the indentation or quoting. Running
//! these files is done elsewhere: `prometheus.rs` runs `promtool` and a real Prometheus with the
//! shipped configuration; `scripts/docker-build-steps.sh` runs the Dockerfiles' steps.

use std::collections::{BTreeMap, BTreeSet};

use yaml_rust2::{Yaml, YamlLoader};

use crate::common::{identifiers, repo_path};

const COMPOSE: &str = "docker-compose.yml";
const PROMETHEUS_YML: &str = "deploy/prometheus.yml";
const DASHBOARD: &str = "deploy/grafana/dashboards/goflow2-exporter.json";
const DATASOURCES: &str = "deploy/grafana/provisioning/datasources/prometheus.yml";
const DASHBOARD_PROVIDERS: &str = "deploy/grafana/provisioning/dashboards/dashboards.yml";
const DOCKERFILES: [&str; 2] = ["Dockerfile", "Dockerfile.standalone"];
const UNITS: [&str; 2] = [
    "deploy/systemd/goflow2-exporter.service",
    "deploy/systemd/goflow2-exporter-pipe.service",
];
/// The build command of the README's Build section.
const BUILD_COMMAND: &str = "cargo build --release --locked";

// ---------------------------------------------------------------------------------------------
// Reading the files

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The one document of a YAML file.
fn load_yaml(rel: &str) -> Yaml {
    let docs = YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    assert_eq!(docs.len(), 1, "{rel}: one YAML document");
    docs.into_iter().next().unwrap()
}

/// A scalar as text (compose accepts `PORT: 9090` as well as `PORT: "9090"`); `what` names the
/// node in the failure message.
fn scalar(node: &Yaml, what: &str) -> String {
    match node {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        other => panic!("{what}: not a scalar: {other:?}"),
    }
}

/// A list of scalars; an absent key is an empty list.
fn list(node: &Yaml, what: &str) -> Vec<String> {
    match node {
        Yaml::BadValue => Vec::new(),
        Yaml::Array(items) => items.iter().map(|i| scalar(i, what)).collect(),
        other => panic!("{what}: not a list: {other:?}"),
    }
}

/// A mapping of scalars (keys in file order); an absent key is an empty mapping.
fn mapping(node: &Yaml, what: &str) -> Vec<(String, String)> {
    match node {
        Yaml::BadValue => Vec::new(),
        // A key with nothing after it (`prometheus-data:`) is null: "".
        Yaml::Hash(h) => h
            .iter()
            .map(|(k, v)| {
                let v = if v.is_null() {
                    String::new()
                } else {
                    scalar(v, what)
                };
                (scalar(k, what), v)
            })
            .collect(),
        other => panic!("{what}: not a mapping: {other:?}"),
    }
}

/// The keys of a mapping, sorted.
fn keys(node: &Yaml, what: &str) -> Vec<String> {
    let Yaml::Hash(h) = node else {
        panic!("{what}: not a mapping: {node:?}");
    };
    let mut keys: Vec<String> = h.keys().map(|k| scalar(k, what)).collect();
    keys.sort();
    keys
}

/// The string at `node`, which must be one.
fn string<'a>(node: &'a Yaml, what: &str) -> &'a str {
    node.as_str()
        .unwrap_or_else(|| panic!("{what}: not a string: {node:?}"))
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

/// One service of the compose file.
struct Service<'a> {
    name: &'a str,
    node: &'a Yaml,
}

fn service<'a>(compose: &'a Yaml, name: &'a str) -> Service<'a> {
    let node = &compose["services"][name];
    assert!(!node.is_badvalue(), "{COMPOSE}: no service {name}");
    Service { name, node }
}

impl Service<'_> {
    fn what(&self, key: &str) -> String {
        format!("{COMPOSE}: services.{}.{key}", self.name)
    }

    fn list(&self, key: &str) -> Vec<String> {
        list(&self.node[key], &self.what(key))
    }

    fn image(&self) -> &str {
        string(&self.node["image"], &self.what("image"))
    }

    fn environment(&self) -> BTreeMap<String, String> {
        mapping(&self.node["environment"], &self.what("environment"))
            .into_iter()
            .collect()
    }

    /// `build:` as a mapping; the short form `build: DIR` is `{context: DIR}`.
    fn build(&self) -> BTreeMap<String, String> {
        let build = &self.node["build"];
        if build.as_str().is_some() {
            return [("context".into(), scalar(build, &self.what("build")))].into();
        }
        mapping(build, &self.what("build")).into_iter().collect()
    }

    /// The container port each published `HOST:CONTAINER[/proto]` maps to, by `HOST/proto`.
    fn published(&self) -> BTreeMap<String, String> {
        self.list("ports")
            .iter()
            .map(|p| {
                let (host, container) = p.split_once(':').expect("HOST:CONTAINER");
                let proto = container.split_once('/').map_or("tcp", |(_, p)| p);
                let container = container.split('/').next().unwrap();
                (format!("{host}/{proto}"), container.to_string())
            })
            .collect()
    }

    /// `(source, target)` of each `SOURCE:TARGET[:MODE]` volume.
    fn volumes(&self) -> Vec<(String, String)> {
        self.list("volumes")
            .iter()
            .map(|v| {
                let mut parts = v.split(':');
                let source = parts.next().unwrap().to_string();
                let target = parts.next().unwrap_or_else(|| panic!("{v}: no target"));
                (source, target.to_string())
            })
            .collect()
    }
}

/// Host path (`./...`) → container path of every bind mount of the compose file.
fn bind_mounts(compose: &Yaml) -> BTreeMap<String, String> {
    keys(&compose["services"], "services")
        .iter()
        .flat_map(|name| service(compose, name).volumes())
        .filter(|(source, _)| source.starts_with("./"))
        .collect()
}

#[test]
fn compose_runs_the_exporter_prometheus_and_grafana() {
    let compose = load_yaml(COMPOSE);
    assert_eq!(
        keys(&compose["services"], "services"),
        ["exporter", "grafana", "prometheus"],
        "services"
    );
    let (prometheus, grafana) = (
        service(&compose, "prometheus"),
        service(&compose, "grafana"),
    );
    assert_eq!(grafana.list("depends_on"), ["prometheus"]);
    assert_eq!(prometheus.list("depends_on"), ["exporter"]);
    assert!(prometheus.image().starts_with("prom/prometheus:"));
    assert!(grafana.image().starts_with("grafana/grafana:"));
}

#[test]
fn compose_publishes_the_documented_ports() {
    let compose = load_yaml(COMPOSE);
    // Service, host port, container port.
    let want = [
        ("exporter", "2055/udp", "2055"),
        ("exporter", "9090/tcp", "9090"),
        ("prometheus", "9091/tcp", "9090"),
        ("grafana", "3000/tcp", "3000"),
    ];
    for (name, host, container) in want {
        let published = service(&compose, name).published();
        assert_eq!(
            published.get(host).map(String::as_str),
            Some(container),
            "{name}: {host} published: {published:?}"
        );
    }
}

#[test]
fn compose_mounts_existing_files_and_declared_volumes() {
    let compose = load_yaml(COMPOSE);
    let declared: BTreeSet<String> = mapping(&compose["volumes"], "volumes")
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for name in keys(&compose["services"], "services") {
        for (source, _) in service(&compose, &name).volumes() {
            if let Some(rel) = source.strip_prefix("./") {
                assert!(
                    repo_path(rel).exists(),
                    "{name}: mounts {source}, which does not exist"
                );
            } else {
                assert!(
                    declared.contains(&source),
                    "{name}: volume {source} is not declared"
                );
            }
        }
    }
}

#[test]
fn compose_builds_the_exporter_from_dockerfile_standalone_here() {
    let compose = load_yaml(COMPOSE);
    let build = service(&compose, "exporter").build();
    assert_eq!(build.get("context").map(String::as_str), Some("."));
    let dockerfile = build.get("dockerfile").expect("build.dockerfile");
    assert!(repo_path(dockerfile).is_file(), "{dockerfile}");
}

/// Prometheus reads the mounted `deploy/prometheus.yml`, which scrapes the exporter service on its
/// container port every 15 s.
#[test]
fn compose_prometheus_reads_the_shipped_config_which_scrapes_the_exporter() {
    let compose = load_yaml(COMPOSE);
    let (exporter, prometheus) = (
        service(&compose, "exporter"),
        service(&compose, "prometheus"),
    );
    let config_target = &bind_mounts(&compose)[&format!("./{PROMETHEUS_YML}")];
    let command = prometheus.list("command");
    assert!(
        command.contains(&format!("--config.file={config_target}")),
        "prometheus command: {command:?}"
    );

    let config = load_yaml(PROMETHEUS_YML);
    let job = config["scrape_configs"]
        .as_vec()
        .expect("scrape_configs")
        .iter()
        .find(|job| job["job_name"].as_str() == Some("goflow2-exporter"))
        .expect("job goflow2-exporter");
    // The job's own interval, else the global one.
    let interval = job["scrape_interval"]
        .as_str()
        .or(config["global"]["scrape_interval"].as_str());
    assert_eq!(interval, Some("15s"), "15 s scrape interval");
    let targets: Vec<String> = job["static_configs"]
        .as_vec()
        .expect("static_configs")
        .iter()
        .flat_map(|c| list(&c["targets"], "targets"))
        .collect();
    assert_eq!(targets, ["exporter:9090"], "target exporter:9090");
    assert!(exporter.published().values().any(|p| p == "9090"));
}

/// Grafana gets the provisioning folder, and the dashboards folder where the provider looks; its
/// home dashboard is one of those; admin/admin.
#[test]
fn compose_grafana_is_provisioned_with_the_dashboard() {
    let compose = load_yaml(COMPOSE);
    let mounts = bind_mounts(&compose);
    assert_eq!(
        mounts["./deploy/grafana/provisioning"],
        "/etc/grafana/provisioning"
    );
    for f in [DATASOURCES, DASHBOARD_PROVIDERS, DASHBOARD] {
        assert!(repo_path(f).is_file(), "{f}");
    }
    let providers = load_yaml(DASHBOARD_PROVIDERS);
    let provider_path = string(&providers["providers"][0]["options"]["path"], "path");
    assert_eq!(
        mounts["./deploy/grafana/dashboards"], provider_path,
        "the dashboard provider reads the mounted folder"
    );
    let env = service(&compose, "grafana").environment();
    let home = &env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"];
    let home_file = home
        .strip_prefix(&format!("{provider_path}/"))
        .expect("home dashboard in the provider's folder");
    assert!(repo_path(&format!("deploy/grafana/dashboards/{home_file}")).is_file());
    assert_eq!(env["GF_SECURITY_ADMIN_USER"], "admin");
    assert_eq!(env["GF_SECURITY_ADMIN_PASSWORD"], "admin");
}

/// Grafana's datasource is the compose stack's prometheus service, with the uid the dashboard
/// uses and the scrape interval of `deploy/prometheus.yml`.
#[test]
fn grafana_datasource_is_the_compose_prometheus_service() {
    let compose = load_yaml(COMPOSE);
    let datasources = load_yaml(DATASOURCES);
    let ds = &datasources["datasources"][0];
    assert_eq!(string(&ds["url"], "url"), "http://prometheus:9090");
    assert_eq!(string(&ds["type"], "type"), "prometheus");
    assert_eq!(
        string(&ds["uid"], "uid"),
        "prometheus",
        "the uid the dashboard uses"
    );
    assert_eq!(
        string(&ds["jsonData"]["timeInterval"], "timeInterval"),
        "15s",
        "the scrape interval"
    );
    let prometheus = service(&compose, "prometheus");
    assert!(prometheus.published().values().any(|p| p == "9090"));
}

// ---------------------------------------------------------------------------------------------
// Dockerfiles, .dockerignore, systemd units

/// The `GOFLOW2_EXPORTER_*` names of README's Flags table.
fn readme_env_vars() -> BTreeSet<String> {
    read("README.md")
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .filter_map(|l| l.split('`').nth(3))
        .filter(|v| v.starts_with("GOFLOW2_EXPORTER_"))
        .map(str::to_string)
        .collect()
}

/// `GOFLOW2_EXPORTER_*` names set in `text` (`NAME=` or `NAME: `), commented-out examples
/// included: a reader uncomments them as they are.
fn env_vars_set(text: &str) -> BTreeSet<String> {
    identifiers(text, "GOFLOW2_EXPORTER_")
        .into_iter()
        .filter(|(name, rest)| {
            (rest.starts_with('=') || rest.starts_with(':')) && *name != "GOFLOW2_EXPORTER_BIN"
        })
        .map(|(name, _)| name.to_string())
        .collect()
}

#[test]
fn dockerfiles_build_with_the_readme_command() {
    assert!(
        read("README.md").contains(BUILD_COMMAND),
        "README gives the build command the Dockerfiles run"
    );
    for name in DOCKERFILES {
        assert!(
            read(name).contains(BUILD_COMMAND),
            "{name}: the README's build command"
        );
    }
}

#[test]
fn dockerfiles_run_unprivileged_with_a_healthcheck_and_expose_the_ports() {
    for name in DOCKERFILES {
        let text = read(name);
        let user = text
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("USER "))
            .expect("USER");
        assert!(
            !["root", "0", "0:0"].contains(&user.trim()),
            "{name}: USER {user}"
        );
        assert!(text.contains("HEALTHCHECK"), "{name}: HEALTHCHECK");
        let expose = text
            .lines()
            .find_map(|l| l.strip_prefix("EXPOSE "))
            .expect("EXPOSE");
        for port in ["2055/udp", "9090/tcp"] {
            assert!(
                expose.split_whitespace().any(|p| p == port),
                "{name}: EXPOSE {port}"
            );
        }
    }
}

/// Every `COPY` from the build context names files that exist and that `.dockerignore` keeps.
#[test]
fn dockerfiles_copy_existing_files_that_dockerignore_keeps() {
    let ignore = read(".dockerignore");
    let ignored: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for name in DOCKERFILES {
        let text = read(name);
        let copies = text
            .lines()
            .filter_map(|l| l.strip_prefix("COPY "))
            .filter(|args| !args.contains("--from="));
        for args in copies {
            let words: Vec<&str> = args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            // All words but the last (the destination), the whole context (".") aside.
            for src in words[..words.len() - 1].iter().filter(|s| **s != ".") {
                assert!(repo_path(src).exists(), "{name}: COPY {src}: missing");
                let first = src.split('/').next().unwrap();
                assert!(
                    !ignored.contains(first),
                    "{name}: COPY {src}: in .dockerignore"
                );
            }
        }
    }
}

#[test]
fn deployment_files_set_only_documented_variables() {
    let documented = readme_env_vars();
    assert!(
        documented.contains("GOFLOW2_EXPORTER_STDIN") && documented.len() >= 15,
        "README's Flags table: {documented:?}"
    );
    for file in DOCKERFILES.iter().chain(&UNITS).chain(&[COMPOSE]) {
        for var in env_vars_set(&read(file)) {
            assert!(
                documented.contains(&var),
                "{file}: {var} is not a documented variable"
            );
        }
    }
}

/// The standalone image collects natively (stdin off); the all-in-one image is the pinned goflow2
/// image with the exporter added.
#[test]
fn dockerfile_images_default_to_the_native_collector_and_pin_goflow2() {
    let standalone = read("Dockerfile.standalone");
    assert!(standalone.contains("\nENV GOFLOW2_EXPORTER_STDIN=off\n"));
    let all_in_one = read("Dockerfile");
    assert!(all_in_one.contains("ARG GOFLOW2_VERSION=v2.2.6"));
    assert!(all_in_one.contains("FROM netsampler/goflow2:${GOFLOW2_VERSION}"));
}

#[test]
fn systemd_units_are_sandboxed_and_the_pipe_unit_feeds_goflow2_to_the_exporter() {
    let pipe = read("deploy/systemd/goflow2-exporter-pipe.service");
    assert!(pipe.contains(
        "-format json -transport file | exec /usr/local/bin/goflow2-exporter --exit-on-eof"
    ));
    for unit in UNITS {
        let text = read(unit);
        for opt in [
            "DynamicUser=yes",
            "ProtectSystem=strict",
            "NoNewPrivileges=yes",
            "ExecStart=",
        ] {
            assert!(text.contains(opt), "{unit}: {opt}");
        }
    }
}
