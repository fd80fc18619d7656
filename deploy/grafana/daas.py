#!/usr/bin/env python3
"""Writes daas.json, the Grafana dashboard of daas-server, beside this file.

Edit the panels here, then run `python3 deploy/grafana/daas.py`; the
dashboard test (server/tests/it/dashboard.rs) fails while daas.json differs
from what this prints (`--stdout`), and checks that every metric queried is
exported by a live server. Standard library only.
"""

import json
import sys
from pathlib import Path

DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
T = 'template=~"$template"'
W = "$window"


class Layout:
    """Places panels left to right on Grafana's 24-column grid."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_height = 0

    def next_id(self):
        return len(self.panels) + 1

    def row(self, title):
        self.newline()
        self.panels.append(
            {
                "type": "row",
                "id": self.next_id(),
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def newline(self):
        self.y += self.row_height
        self.x = 0
        self.row_height = 0

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.newline()
        panel["id"] = self.next_id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.panels.append(panel)
        self.x += w
        self.row_height = max(self.row_height, h)


def targets(queries):
    """[(expr, legend)] -> Grafana targets A, B, ..."""
    return [
        {
            "datasource": DS,
            "expr": expr,
            "legendFormat": legend,
            "range": True,
            "refId": chr(ord("A") + i),
        }
        for i, (expr, legend) in enumerate(queries)
    ]


def timeseries(title, description, unit, queries, stack=False, bars=False):
    custom = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1,
        "fillOpacity": 60 if bars else 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {
            "defaults": {"unit": unit, "min": 0, "custom": custom},
            "overrides": [],
        },
        "options": {
            "legend": {
                "showLegend": True,
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets(queries),
    }


def stat(title, description, unit, queries, red_above=None, text_mode="auto"):
    steps = [{"color": "green", "value": None}]
    if red_above is not None:
        steps.append({"color": "red", "value": red_above})
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area" if text_mode == "auto" else "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "textMode": text_mode,
        },
        "targets": targets(queries),
    }


def quantiles(metric, by, selector, legend):
    """p50 and p95 of a histogram, per `by` labels."""
    selector = f"{{{selector}}}" if selector else ""
    return [
        (
            f"histogram_quantile({q}, sum by (le, {by}) "
            f"(rate({metric}_bucket{selector}[{W}])))",
            f"p{int(q * 100)} {legend}",
        )
        for q in (0.5, 0.95)
    ]


def mean(metric, by, selector, window=W):
    """rate(_sum) / rate(_count) of a histogram, per `by` labels (None: one series)."""
    agg = f"sum by ({by})" if by else "sum"
    return (
        f"{agg} (rate({metric}_sum{{{selector}}}[{window}]))\n"
        f"/ {agg} (rate({metric}_count{{{selector}}}[{window}]))"
    )


def dashboard():
    d = Layout()

    d.row("Sessions")
    d.add(
        stat(
            "Desktops READY",
            "Sessions in READY (claimed or not), of the selected templates.",
            "short",
            [(f'sum(daas_sessions{{state="READY", {T}}})', "READY")],
        ),
        4,
        5,
    )
    d.add(
        stat(
            "Sessions in progress",
            "Sessions queued, being built or being destroyed.",
            "short",
            [
                (
                    f'sum(daas_sessions{{state=~"QUEUED|PROVISIONING|BOOTING|CONFIGURING|DESTROYING", {T}}})',
                    "in progress",
                )
            ],
        ),
        4,
        5,
    )
    d.add(
        stat(
            "Mean session duration",
            "Mean time a desktop spent READY, over the dashboard's time range "
            "(desktops whose READY stage ended in it).",
            "s",
            [
                (
                    mean("daas_stage_duration_seconds", None, f'stage="READY", {T}', "$__range"),
                    "mean",
                )
            ],
        ),
        4,
        5,
    )
    d.add(
        stat(
            "Failed creates",
            "Creates that ended FAILED over the dashboard's time range.",
            "short",
            [
                (
                    f'sum(increase(daas_creates_total{{result="failed", {T}}}[$__range]))',
                    "failed",
                )
            ],
            red_above=1,
        ),
        4,
        5,
    )
    d.add(
        stat(
            "daas-server version",
            "From daas_build_info; one value per running server.",
            "short",
            [("count by (version) (daas_build_info)", "{{version}}")],
            text_mode="name",
        ),
        8,
        5,
    )
    d.add(
        timeseries(
            "Active sessions by state",
            "Sessions in the store by state (DESTROYED and FAILED left out).",
            "short",
            [
                (
                    f'sum by (state) (daas_sessions{{state!~"DESTROYED|FAILED", {T}}})',
                    "{{state}}",
                )
            ],
            stack=True,
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "Active sessions by template",
            "Sessions READY by template.",
            "short",
            [
                (
                    f'sum by (template) (daas_sessions{{state="READY", {T}}})',
                    "{{template}}",
                )
            ],
            stack=True,
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "Creates per minute",
            "Creates that ended, by result (ready, failed) and origin "
            "(create: built for its user; claim: a warm pool desktop claimed; "
            "pool: a pool's build).",
            "short",
            [
                (
                    f"sum by (result, origin) (rate(daas_creates_total{{{T}}}[{W}])) * 60",
                    "{{result}} ({{origin}})",
                )
            ],
        ),
        8,
        8,
    )
    d.add(
        timeseries(
            "Destroys per minute",
            "Destroys that ended, by result (destroyed, failed) and origin.",
            "short",
            [
                (
                    f"sum by (result, origin) (rate(daas_destroys_total{{{T}}}[{W}])) * 60",
                    "{{result}} ({{origin}})",
                )
            ],
        ),
        8,
        8,
    )
    d.add(
        timeseries(
            "Mean session duration",
            "Mean time desktops spent READY, over the last 6 hours, by template.",
            "s",
            [
                (
                    mean("daas_stage_duration_seconds", "template", f'stage="READY", {T}', "6h"),
                    "{{template}}",
                )
            ],
        ),
        8,
        8,
    )

    d.row("Provisioning")
    d.add(
        timeseries(
            "Time to READY",
            "From the request (a claim: from the claim) to READY, by template and origin.",
            "s",
            quantiles(
                "daas_time_to_ready_seconds",
                "template, origin",
                T,
                "{{template}} ({{origin}})",
            ),
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "Time per stage (p95)",
            "How long sessions stayed in each build and destroy stage.",
            "s",
            [
                (
                    "histogram_quantile(0.95, sum by (le, stage) "
                    "(rate(daas_stage_duration_seconds_bucket"
                    f'{{stage=~"PROVISIONING|BOOTING|CONFIGURING|DESTROYING", {T}}}[{W}])))',
                    "p95 {{stage}}",
                )
            ],
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "Time waiting in QUEUED",
            "Wait for a provisioning permit ([limits] max_parallel_provisions).",
            "s",
            quantiles("daas_stage_duration_seconds", "template", f'stage="QUEUED", {T}', "{{template}}")
            + [
                (
                    mean("daas_stage_duration_seconds", "template", f'stage="QUEUED", {T}'),
                    "mean {{template}}",
                )
            ],
        ),
        8,
        8,
    )
    d.add(
        timeseries(
            "Provisions in flight",
            "Sessions in PROVISIONING, BOOTING or CONFIGURING (all templates), "
            "and sessions waiting in QUEUED.",
            "short",
            [
                ("daas_provisions_in_flight", "in flight"),
                (f'sum(daas_sessions{{state="QUEUED", {T}}})', "queued"),
            ],
        ),
        8,
        8,
    )
    d.add(
        timeseries(
            "Mean time per stage",
            "Mean time in each build and destroy stage.",
            "s",
            [
                (
                    mean(
                        "daas_stage_duration_seconds",
                        "stage",
                        f'stage=~"PROVISIONING|BOOTING|CONFIGURING|DESTROYING", {T}',
                    ),
                    "{{stage}}",
                )
            ],
        ),
        8,
        8,
    )

    d.row("Tools")
    for tool, name in (("terraform", "Terraform"), ("ansible", "Ansible")):
        d.add(
            stat(
                f"{name} errors",
                f"Runs of {tool} that did not end ok, over the dashboard's time range.",
                "short",
                [
                    (
                        f'sum(increase(daas_tool_runs_total{{tool="{tool}", reason!="ok"}}[$__range]))',
                        "errors",
                    )
                ],
                red_above=1,
            ),
            4,
            8,
        )
    d.add(
        timeseries(
            "Tool errors per minute",
            "Runs of terraform, ssh and ansible-playbook that did not end ok, "
            "by tool and reason (exit_<code>, signal, timeout, cancelled, "
            "spawn_failed, io_error).",
            "short",
            [
                (
                    f'sum by (tool, reason) (rate(daas_tool_runs_total{{reason!="ok"}}[{W}])) * 60',
                    "{{tool}} {{reason}}",
                )
            ],
            bars=True,
        ),
        16,
        8,
    )
    d.add(
        timeseries(
            "Tool runs per minute",
            "Every run by tool and how it ended.",
            "short",
            [
                (
                    f"sum by (tool, reason) (rate(daas_tool_runs_total[{W}])) * 60",
                    "{{tool}} {{reason}}",
                )
            ],
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "Tool run duration",
            "How long each run of terraform, ssh and ansible-playbook took.",
            "s",
            quantiles("daas_tool_run_duration_seconds", "tool", "", "{{tool}}"),
        ),
        12,
        8,
    )

    d.row("Reaper & agents")
    d.add(
        timeseries(
            "Reaps by reason (per hour)",
            "Desktops the reaper destroyed in the last hour, by rule "
            "(idle, disconnected, max_lifetime, agent_lost, pool_max_age).",
            "short",
            [("sum by (reason) (increase(daas_reaps_total[1h]))", "{{reason}}")],
            stack=True,
        ),
        8,
        8,
    )
    d.add(
        timeseries(
            "Agent report age (oldest 10)",
            "Seconds since each READY desktop's agent last reported; the reaper "
            "destroys a desktop whose agent is silent past agent_lost_timeout.",
            "s",
            [
                (
                    f"topk(10, daas_agent_last_report_age_seconds{{{T}}})",
                    "{{session}} ({{template}})",
                )
            ],
        ),
        8,
        8,
    )
    d.add(
        timeseries(
            "Agent reports per minute",
            "Activity reports received from the agents.",
            "short",
            [("sum(rate(daas_agent_reports_total[" + W + "])) * 60", "reports")],
        ),
        8,
        8,
    )

    d.row("API")
    unary = 'method!~".*/(CreateSession|WatchSession)"'
    d.add(
        timeseries(
            "gRPC requests by code",
            "Requests per second by status code.",
            "reqps",
            [
                (
                    f"sum by (code) (rate(daas_grpc_requests_total[{W}]))",
                    "{{code}}",
                )
            ],
            stack=True,
        ),
        8,
        8,
    )
    d.add(
        timeseries(
            "gRPC errors by method",
            "Requests that did not end Ok, by method and code.",
            "reqps",
            [
                (
                    f'sum by (method, code) (rate(daas_grpc_requests_total{{code!="Ok"}}[{W}]))',
                    "{{method}} {{code}}",
                )
            ],
        ),
        8,
        8,
    )
    d.add(
        timeseries(
            "gRPC latency (unary, p95)",
            "From the request to the response's end; the streams "
            "(CreateSession, WatchSession) are left out: they last as long "
            "as the session's build.",
            "s",
            [
                (
                    "histogram_quantile(0.95, sum by (le, method) "
                    f"(rate(daas_grpc_request_duration_seconds_bucket{{{unary}}}[{W}])))",
                    "{{method}}",
                )
            ],
        ),
        8,
        8,
    )

    d.row("Webhooks")
    d.add(
        timeseries(
            "Webhook deliveries per minute",
            "Events delivered to each [[webhooks]] entry by result (delivered, "
            "failed, dropped: to a webhook the server lacks), and the POSTs sent, retries included.",
            "short",
            [
                (
                    f"sum by (webhook, result) (rate(daas_webhook_deliveries_total[{W}])) * 60",
                    "{{webhook}} {{result}}",
                ),
                (
                    f"sum by (webhook) (rate(daas_webhook_attempts_total[{W}])) * 60",
                    "{{webhook}} POSTs",
                ),
            ],
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "Webhook delivery failures (per hour)",
            "Deliveries that failed after their retries, or were dropped, "
            "in the last hour, by webhook and event.",
            "short",
            [
                (
                    'sum by (webhook, event, result) (increase(daas_webhook_deliveries_total{result=~"failed|dropped"}[1h]))',
                    "{{webhook}} {{event}} {{result}}",
                )
            ],
            bars=True,
        ),
        12,
        8,
    )

    d.row("Cluster nodes")
    d.add(
        timeseries(
            "Desktops per node",
            "Live desktops the server placed on each node: user (claimed pool "
            "desktops too) and pool (unclaimed). Empty when the module reports no nodes.",
            "short",
            [("sum by (node, kind) (daas_node_desktops)", "{{node}} {{kind}}")],
            stack=True,
        ),
        8,
        8,
    )
    d.add(
        timeseries(
            "Node memory committed",
            "What all guests of each node are configured for, over its memory, "
            "as placement counts it (daas_node_memory_mib).",
            "percentunit",
            [
                (
                    'max by (node) (daas_node_memory_mib{kind="configured"}) '
                    '/ max by (node) (daas_node_memory_mib{kind="total"})',
                    "{{node}}",
                )
            ],
        ),
        8,
        8,
    )
    d.add(
        timeseries(
            "Nodes: down, drained, clones, lost desktops",
            "Nodes offline or in maintenance, nodes drained by an administrator, "
            "clones running, and desktops LOST with their node.",
            "short",
            [
                ('sum(daas_node_state{state=~"offline|maintenance"})', "nodes down"),
                ("sum(daas_node_drained)", "nodes drained"),
                ("sum(daas_node_clones)", "clones"),
                ('sum(daas_sessions{state="LOST"})', "lost desktops"),
            ],
        ),
        8,
        8,
    )

    d.row("Organisations")
    d.add(
        timeseries(
            "Organisation use of its quota",
            "What each organisation's live desktops hold over its quota, per "
            "resource it limits (desktops, cores, memory_mib). Empty without [orgs].",
            "percentunit",
            [
                (
                    "max by (org, resource) (daas_org_usage) "
                    "/ max by (org, resource) (daas_org_quota)",
                    "{{org}} {{resource}}",
                )
            ],
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "Creates refused by a quota",
            "Creates refused over the window, by organisation and quota: org "
            "(the organisation's) or user (a member's in it).",
            "short",
            [
                (
                    f"sum by (org, quota) (increase(daas_quota_refusals_total[{W}]))",
                    "{{org}} {{quota}}",
                )
            ],
            bars=True,
        ),
        12,
        8,
    )

    d.row("Proxmox (prometheus-pve-exporter)")
    node = 'id=~"node/.*"'
    d.add(
        timeseries(
            "Node CPU",
            "CPU use of each Proxmox node, from prometheus-pve-exporter "
            "(not daas-server).",
            "percentunit",
            [(f"pve_cpu_usage_ratio{{{node}}}", "{{id}}")],
        ),
        12,
        8,
    )
    d.add(
        timeseries(
            "Node memory",
            "Memory used on each Proxmox node, from prometheus-pve-exporter "
            "(not daas-server).",
            "percentunit",
            [
                (
                    f"pve_memory_usage_bytes{{{node}}} / pve_memory_size_bytes{{{node}}}",
                    "{{id}}",
                )
            ],
        ),
        12,
        8,
    )

    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": "daas-server: sessions, provisioning, tools, reaper, API, "
        "webhooks, cluster nodes, organisations; Proxmox nodes from prometheus-pve-exporter.",
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": d.panels,
        "refresh": "1m",
        "schemaVersion": 39,
        "tags": ["daas"],
        "templating": {
            "list": [
                {
                    "name": "DS_PROMETHEUS",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "includeAll": False,
                    "multi": False,
                    "options": [],
                    "refresh": 1,
                    "regex": "",
                },
                {
                    "name": "template",
                    "label": "Template",
                    "type": "query",
                    "datasource": DS,
                    "definition": "label_values(daas_sessions, template)",
                    "query": {
                        "qryType": 1,
                        "query": "label_values(daas_sessions, template)",
                        "refId": "PrometheusVariableQueryEditor-VariableQuery",
                    },
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "hide": 0,
                    "includeAll": True,
                    "allValue": ".*",
                    "multi": True,
                    "options": [],
                    "refresh": 2,
                    "regex": "",
                    "sort": 1,
                },
                {
                    "name": "window",
                    "label": "Rate window",
                    "type": "interval",
                    "query": "5m,15m,1h,6h",
                    "current": {"selected": True, "text": "5m", "value": "5m"},
                    "options": [
                        {"selected": v == "5m", "text": v, "value": v}
                        for v in ("5m", "15m", "1h", "6h")
                    ],
                    "auto": False,
                    "hide": 0,
                    "refresh": 2,
                },
            ]
        },
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": "DaaS",
        "uid": "daas-server",
        "version": 1,
        "weekStart": "",
    }


def render():
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--stdout"]:
        sys.stdout.write(render())
    elif sys.argv[1:]:
        sys.exit("usage: daas.py [--stdout]")
    else:
        (Path(__file__).resolve().parent / "daas.json").write_text(render())
