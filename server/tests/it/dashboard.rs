//! The Grafana dashboard, `deploy/grafana/daas.json`, against a live
//! server: every metric its queries name is exported, with the labels its
//! matchers and groupings use; the scrape is valid OpenMetrics to the
//! official Python client's parser and passes `promtool check metrics`
//! (`scripts/check-openmetrics.py`); and the file is what its generator,
//! `deploy/grafana/daas.py`, writes.
//!
//! prometheus-client (0.24.1 on) leaves a labelled family out of the scrape
//! until it has a child, so the live test makes each one appear: a desktop
//! built (tools, stages, creates, gRPC), its agent's report, the reaper
//! destroying it when the agent falls silent (reaps, destroys), a second
//! create refused by its organisation's quota, and a webhook delivered to a
//! local receiver.

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Stdio,
    time::{Duration, Instant},
};

use crate::common::*;
use daas_api::v1::{GetSessionRequest, SessionState};
use daas_server::testkit::{TestOptions, TestServer, workspace_root};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

/// Metrics the dashboard queries that daas-server does not export, and
/// where they come from.
const EXTERNAL: &[(&str, &str)] = &[
    (
        "pve_cpu_usage_ratio",
        "prometheus-pve-exporter: the Proxmox row",
    ),
    (
        "pve_memory_usage_bytes",
        "prometheus-pve-exporter: the Proxmox row",
    ),
    (
        "pve_memory_size_bytes",
        "prometheus-pve-exporter: the Proxmox row",
    ),
];

const DASHBOARD: &str = "deploy/grafana/daas.json";

// ---------------------------------------------------------------------------
// The dashboard's queries.

/// Every PromQL text of the dashboard: the panels' targets (rows' panels
/// too) and the query variables.
fn queries(dashboard: &serde_json::Value) -> Vec<String> {
    fn panels(list: &serde_json::Value, out: &mut Vec<String>) {
        for panel in list.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                out.extend(target["expr"].as_str().map(String::from));
            }
            panels(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    panels(&dashboard["panels"], &mut out);
    for var in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if var["type"] == "query" {
            let query = &var["query"];
            out.extend(query.as_str().or(query["query"].as_str()).map(String::from));
        }
    }
    out
}

#[derive(Debug, PartialEq)]
enum Token {
    Ident(String),
    /// A string, a number or duration, a Grafana variable (`$window`).
    Literal,
    Punct(char),
}

/// PromQL (with Grafana's `$variables`) as tokens.
fn tokens(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c.is_whitespace() {
            continue;
        }
        if matches!(c, '"' | '\'' | '`') {
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' && c != '`' { 2 } else { 1 };
            }
            i += 1;
            out.push(Token::Literal);
        } else if c == '$' {
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            }
            while i < chars.len() && word(chars[i]) {
                i += 1;
            }
            out.push(Token::Literal);
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (word(chars[i]) || chars[i] == '.') {
                i += 1;
            }
            out.push(Token::Literal);
        } else if word(c) {
            let start = i - 1;
            while i < chars.len() && word(chars[i]) {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            out.push(Token::Punct(c));
        }
    }
    out
}

/// What one query names.
#[derive(Debug, Default, PartialEq)]
struct Query {
    /// Each series selected, with the label names of its matchers.
    selectors: Vec<(String, Vec<String>)>,
    /// The labels of `by`, `without`, `on`, `ignoring`, `group_left/right`.
    grouping: Vec<String>,
}

/// Words that are not series names (functions are known by their `(`).
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
];
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The identifiers between `open` at `tokens[*i]` and its `close`; `*i`
/// ends after `close`.
fn idents_within(tokens: &[Token], i: &mut usize, open: char, close: char) -> Vec<String> {
    let mut found = Vec::new();
    if tokens.get(*i) != Some(&Token::Punct(open)) {
        return found;
    }
    *i += 1;
    while *i < tokens.len() && tokens[*i] != Token::Punct(close) {
        if let Token::Ident(name) = &tokens[*i] {
            found.push(name.clone());
        }
        *i += 1;
    }
    *i += 1;
    found
}

fn parse(expr: &str) -> Query {
    let mut query = Query::default();
    parse_tokens(&tokens(expr), expr, &mut query);
    query
}

fn parse_tokens(tokens: &[Token], expr: &str, query: &mut Query) {
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Ident(word) if GROUPING.contains(&word.as_str()) => {
                i += 1;
                query
                    .grouping
                    .extend(idents_within(tokens, &mut i, '(', ')'));
            }
            // Grafana's label_values(SERIES, LABEL) or label_values(LABEL).
            Token::Ident(word) if word == "label_values" => {
                let (mut depth, start) = (0, i + 2);
                let mut comma = None;
                i += 1;
                while i < tokens.len() {
                    match tokens[i] {
                        Token::Punct('(') => depth += 1,
                        Token::Punct(')') if depth == 1 => break,
                        Token::Punct(')') => depth -= 1,
                        Token::Punct(',') if depth == 1 => comma = Some(i),
                        _ => {}
                    }
                    i += 1;
                }
                let label_from = comma.map_or(start, |c| c + 1);
                if let Some(c) = comma {
                    parse_tokens(&tokens[start..c], expr, query);
                }
                for token in &tokens[label_from..i.min(tokens.len())] {
                    if let Token::Ident(label) = token {
                        query.grouping.push(label.clone());
                    }
                }
                i += 1;
            }
            Token::Ident(word)
                if KEYWORDS.contains(&word.as_str())
                    || tokens.get(i + 1) == Some(&Token::Punct('(')) =>
            {
                i += 1
            }
            Token::Ident(name) => {
                i += 1;
                let labels = idents_within(tokens, &mut i, '{', '}');
                query.selectors.push((name.clone(), labels));
            }
            // A range or subquery: durations and variables only.
            Token::Punct('[') => {
                idents_within(tokens, &mut i, '[', ']');
            }
            Token::Punct('{') => panic!("a selector without a metric name in {expr:?}"),
            _ => i += 1,
        }
    }
}

// ---------------------------------------------------------------------------
// What a scrape exports.

/// The series names Prometheus stores from a scrape, and the label names
/// of the samples seen under each.
#[derive(Debug, Default)]
struct Exported {
    /// From each `# TYPE` (a counter `x`: `x_total`; a histogram `x`:
    /// `x_bucket`, `x_sum`, `x_count`; an info `x`: `x_info`) and each
    /// sample.
    names: BTreeSet<String>,
    labels: BTreeMap<String, BTreeSet<String>>,
}

impl Exported {
    fn add(&mut self, scrape: &str) {
        for line in scrape.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (family, kind) = rest.split_once(' ').expect("# TYPE NAME KIND");
                let suffixes: &[&str] = match kind {
                    "counter" => &["_total"],
                    "histogram" => &["_bucket", "_sum", "_count"],
                    "gaugehistogram" => &["_bucket", "_gsum", "_gcount"],
                    "summary" => &["", "_sum", "_count"],
                    "info" => &["_info"],
                    _ => &[""],
                };
                for suffix in suffixes {
                    self.names.insert(format!("{family}{suffix}"));
                }
            } else if !line.starts_with('#') && !line.is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                let name = &line[..end];
                self.names.insert(name.to_string());
                let labels = self.labels.entry(name.to_string()).or_default();
                labels.extend(sample_labels(&line[end..]));
            }
        }
    }
}

/// The label names of a sample's `{a="x",b="y"} 1` (values may hold any
/// escaped character).
fn sample_labels(rest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let Some(mut rest) = rest.strip_prefix('{') else {
        return names;
    };
    while let Some((name, after)) = rest.split_once("=\"") {
        names.push(name.trim_start_matches(',').to_string());
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((at, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = at + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end..];
        if rest.starts_with('}') {
            break;
        }
    }
    names
}

/// What is wrong with the `queries` against what the server exported:
/// a series name neither exported nor in [`EXTERNAL`], a matcher's label
/// its series do not carry, a grouping label none of the query's series
/// carry.
fn problems(queries: &[String], exported: &Exported) -> Vec<String> {
    let external = |name: &str| EXTERNAL.iter().any(|(n, _)| *n == name);
    let mut problems = Vec::new();
    for expr in queries {
        let query = parse(expr);
        let mut carried = BTreeSet::new();
        let mut all_known = true;
        for (name, matchers) in &query.selectors {
            if external(name) {
                all_known = false;
                continue;
            }
            if !exported.names.contains(name) {
                problems.push(format!("{name} is not exported (in {expr:?})"));
                all_known = false;
                continue;
            }
            let Some(labels) = exported.labels.get(name) else {
                all_known = false;
                continue;
            };
            for label in matchers {
                if !labels.contains(label) && label != "__name__" {
                    problems.push(format!("{name} has no label {label} (in {expr:?})"));
                }
            }
            carried.extend(labels.iter().cloned());
        }
        if all_known {
            for label in &query.grouping {
                if !carried.contains(label) {
                    problems.push(format!("no series has the label {label} (in {expr:?})"));
                }
            }
        }
    }
    problems
}

/// The dashboard's series names that daas-server should export.
fn own_names(queries: &[String]) -> BTreeSet<String> {
    queries
        .iter()
        .flat_map(|q| parse(q).selectors)
        .map(|(name, _)| name)
        .filter(|name| !EXTERNAL.iter().any(|(n, _)| n == name))
        .collect()
}

fn load_dashboard() -> serde_json::Value {
    let path = workspace_root().join(DASHBOARD);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

// ---------------------------------------------------------------------------
// The checks on their own: they catch what they are meant to.

/// A scrape as prometheus-client writes it.
const SCRAPE: &str = "\
# HELP daas_sessions Sessions.
# TYPE daas_sessions gauge
daas_sessions{state=\"READY\",template=\"a\\\"}b\"} 1
# HELP daas_creates Creates.
# TYPE daas_creates counter
daas_creates_total{template=\"a\",origin=\"create\",result=\"ready\"} 1
# HELP daas_time_to_ready_seconds Time to READY.
# TYPE daas_time_to_ready_seconds histogram
daas_time_to_ready_seconds_sum{template=\"a\",origin=\"create\"} 3.5
daas_time_to_ready_seconds_count{template=\"a\",origin=\"create\"} 1
daas_time_to_ready_seconds_bucket{le=\"4.0\",template=\"a\",origin=\"create\"} 1
daas_time_to_ready_seconds_bucket{le=\"+Inf\",template=\"a\",origin=\"create\"} 1
# HELP daas_build The version.
# TYPE daas_build info
daas_build_info{version=\"0.1.0\"} 1
# EOF
";

fn exported_from(scrape: &str) -> Exported {
    let mut exported = Exported::default();
    exported.add(scrape);
    exported
}

#[test]
fn the_tokenizer_finds_series_labels_and_groupings() {
    let query = parse(
        "sum by (le, template) (rate(daas_x_bucket{template=~\"$template\", a=\"b{c} d\"}[$window]))\n\
         / on (x) group_left (y) daas_y offset 5m * 60 > bool 1e3",
    );
    assert_eq!(
        query,
        Query {
            selectors: vec![
                ("daas_x_bucket".into(), vec!["template".into(), "a".into()]),
                ("daas_y".into(), vec![]),
            ],
            grouping: ["le", "template", "x", "y"].map(String::from).to_vec(),
        }
    );
    assert_eq!(
        parse("label_values(daas_sessions{state=\"READY\"}, template)"),
        Query {
            selectors: vec![("daas_sessions".into(), vec!["state".into()])],
            grouping: vec!["template".into()],
        }
    );
    assert_eq!(sample_labels("{a=\"x\\\"},b=\\\"\",b=\"\"} 1"), ["a", "b"]);
}

#[test]
fn a_wrong_name_or_label_in_a_dashboard_is_caught() {
    let dashboard = serde_json::json!({
        "templating": {"list": [
            {"name": "DS_PROMETHEUS", "type": "datasource", "query": "prometheus"},
            {"name": "template", "type": "query",
             "query": {"query": "label_values(daas_sessions, template)"}},
            {"name": "bad", "type": "query", "query": "label_values(daas_templates, template)"},
            {"name": "worse", "type": "query", "query": "label_values(daas_sessions, templat)"},
        ]},
        "panels": [
            {"type": "row", "panels": [{"targets": [
                {"expr": "sum by (state) (daas_sessions{template=~\"$template\"})"},
                {"expr": "sum(rate(daas_creates_total[$window]))"},
                {"expr": "histogram_quantile(0.95, sum by (le, origin) (rate(daas_time_to_ready_seconds_bucket[5m])))"},
                {"expr": "count by (version) (daas_build_info)"},
                {"expr": "pve_cpu_usage_ratio{id=~\"node/.*\"}"},
            ]}]},
            {"targets": [
                {"expr": "sum(rate(daas_creates[5m]))"},
                {"expr": "daas_sesions"},
                {"expr": "rate(daas_sessions_count[5m])"},
                {"expr": "daas_build"},
                {"expr": "sum by (stat) (daas_sessions)"},
                {"expr": "daas_sessions{stat=\"READY\"}"},
                {"expr": "node_cpu_seconds_total"},
            ]},
        ],
    });
    let found = problems(&queries(&dashboard), &exported_from(SCRAPE));
    let expected = [
        "daas_templates is not exported",
        "daas_creates is not exported",
        "daas_sesions is not exported",
        "daas_sessions_count is not exported",
        "daas_build is not exported",
        "no series has the label stat",
        "daas_sessions has no label stat",
        "node_cpu_seconds_total is not exported",
        "no series has the label templat",
    ];
    for start in expected {
        assert!(
            found.iter().any(|p| p.starts_with(start)),
            "{start:?} not found in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    // The same queries, right: nothing to say.
    let good = serde_json::json!({"panels": [{"targets": [
        {"expr": "sum by (state) (daas_sessions{template=~\"$template\"})"},
        {"expr": "sum(rate(daas_creates_total[$window]))"},
    ]}]});
    assert_eq!(problems(&queries(&good), &exported_from(SCRAPE)), [""; 0]);
}

#[test]
fn the_dashboard_is_what_its_generator_writes() {
    let root = workspace_root();
    let out = std::process::Command::new("python3")
        .arg(root.join("deploy/grafana/daas.py"))
        .arg("--stdout")
        .output()
        .expect("run python3 (installed by scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = std::fs::read_to_string(root.join(DASHBOARD)).expect("read the dashboard");
    assert!(
        file == String::from_utf8_lossy(&out.stdout),
        "{DASHBOARD} differs from what deploy/grafana/daas.py writes: run it"
    );
    // The shape Grafana imports, and its variables.
    let dashboard = load_dashboard();
    assert_eq!(dashboard["schemaVersion"], 39);
    let vars: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(vars, ["DS_PROMETHEUS", "template", "window"]);
    let names = own_names(&queries(&dashboard));
    for name in [
        "daas_sessions",
        "daas_creates_total",
        "daas_time_to_ready_seconds_bucket",
        "daas_tool_runs_total",
        "daas_reaps_total",
        "daas_webhook_deliveries_total",
        "daas_node_desktops",
    ] {
        assert!(names.contains(name), "the dashboard does not query {name}");
    }
}

// ---------------------------------------------------------------------------
// Against a live server.

/// A webhook receiver that answers 200 to every POST; the number received.
async fn receiver() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Headers, then the body by its Content-Length.
                loop {
                    let Ok(n) = conn.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (url, count)
}

/// Runs `scripts/check-openmetrics.py` (the strict OpenMetrics parser,
/// then `promtool check metrics`) on `scrape`. Without the tools it skips,
/// and fails when `CI` is set: CI must run the check.
async fn check_text_format(scrape: &str) {
    let root = workspace_root();
    let python = root.join(".venv/bin/python");
    let promtool = root.join(".venv/bin/promtool");
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    let has_client = tokio::process::Command::new(&python)
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    let mut missing = Vec::new();
    if !has_client {
        missing.push(format!("{python:?} with prometheus_client"));
    }
    if !promtool.exists() {
        missing.push(format!("{promtool:?}"));
    }
    if !missing.is_empty() {
        let why = format!(
            "the text format check needs {}: run scripts/setup.sh",
            missing.join(" and ")
        );
        assert!(!ci, "{why}");
        eprintln!("SKIPPED: {why}");
        if !has_client {
            return;
        }
    }
    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(root.join("scripts/check-openmetrics.py"));
    if promtool.exists() {
        cmd.arg("--promtool").arg(&promtool);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/check-openmetrics.py");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(scrape.as_bytes()).await.expect("write");
    drop(stdin);
    let out = child.wait_with_output().await.expect("wait");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}\nthe scrape:\n{scrape}");
    eprintln!("{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_metric_the_dashboard_queries_is_exported_by_a_live_server() {
    let dashboard_queries = queries(&load_dashboard());
    let (hook, deliveries) = receiver().await;
    let server = TestServer::start(TestOptions {
        extra_toml: format!(
            "[http]\nmetrics_listen = \"127.0.0.1:0\"\n\
             [agent]\nendpoint = \"https://10.0.2.2:50051\"\n\
             [policy]\nreaper_interval = \"200ms\"\nagent_lost_timeout = \"3s\"\nwarning = \"1s\"\n\
             [[webhooks]]\nname = \"test\"\nurl = \"{hook}\"\nformat = \"slack\"\n\
             [orgs.staff]\ngroups = [\"staff\"]\n[orgs.staff.quota]\ndesktops = 1\n"
        ),
        // Two simulated nodes: the daas_node_* gauges are exported.
        terraform_variables: vec![
            "node_count = 2".into(),
            "node_templates = \"debian-12-xfce\"".into(),
        ],
        ..TestOptions::default()
    })
    .await;
    let metrics = format!(
        "{}/metrics",
        server
            .metrics_endpoint()
            .expect("http.metrics_listen is on")
    );
    let scrape = || async {
        let (_, code, body) = curl(&metrics, None).await;
        assert_eq!(code, 200, "{body}");
        body
    };

    // A desktop built, and its agent's report: READY with a report age.
    let mut client = server.client_in_groups("alice", &["staff"]).await;
    let events = create(&mut client, request("alice")).await;
    assert_eq!(events.last().map(state), Some(SessionState::Ready));
    // Her organisation's quota refuses a second one (daas_quota_refusals).
    let status = client
        .create_session(request("alice"))
        .await
        .expect_err("staff has room for one desktop");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let id = events[0].session_id.clone();
    agent_for(&server, &id)
        .await
        .report_activity(report(&id, 0, 1))
        .await
        .expect("a report");
    let while_ready = scrape().await;
    assert!(
        while_ready.contains("daas_agent_last_report_age_seconds{"),
        "{while_ready}"
    );
    let mut exported = Exported::default();
    exported.add(&while_ready);

    // The agent falls silent: the reaper destroys the desktop. Scrape until
    // every queried metric has appeared (webhooks are delivered in the
    // background), or a minute has passed.
    let mut admin = server.client().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = scrape().await;
        exported.add(&last);
        let destroyed = admin
            .get_session(GetSessionRequest {
                session_id: id.clone(),
            })
            .await
            .expect("get")
            .into_inner()
            .state()
            == SessionState::Destroyed;
        if destroyed && problems(&dashboard_queries, &exported).is_empty()
            || Instant::now() > deadline
        {
            break;
        }
    }

    let unused: Vec<_> = exported
        .labels
        .keys()
        .filter(|n| !own_names(&dashboard_queries).contains(n.as_str()))
        .filter(|n| !n.ends_with("_sum") && !n.ends_with("_count"))
        .collect();
    eprintln!("exported, not on the dashboard: {unused:?}");
    eprintln!(
        "webhook POSTs received: {}",
        deliveries.load(std::sync::atomic::Ordering::SeqCst)
    );
    let found = problems(&dashboard_queries, &exported);
    assert!(
        found.is_empty(),
        "the dashboard queries what the server does not export:\n{}\nthe last scrape:\n{last}",
        found.join("\n")
    );

    check_text_format(&while_ready).await;
    check_text_format(&last).await;
    server.stop().await;
}
