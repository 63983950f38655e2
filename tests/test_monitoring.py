"""The Prometheus side: alert rules and their unit tests, the dashboard, a live scrape.

promtool and prometheus come from Debian's ``prometheus`` package; without
them these tests are skipped.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from .procs import ROOT, Simulator, config_for, email, running

MONITORING = ROOT / "monitoring"
RULES = MONITORING / "rules.yml"
RULE_TESTS = MONITORING / "rules_test.yml"
DASHBOARD = MONITORING / "grafana" / "ringbearer.json"
METRICS_SOURCE = ROOT / "src" / "ringbearer" / "_metrics.py"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
INSTALL = "apt-get install prometheus (it provides promtool and prometheus)"
# Series the lead engineer adds to _metrics.py, and Prometheus' own per-target series.
ANNOUNCED = {"ringbearer_queue_oldest_age_seconds", "ringbearer_wedding_day_mode", "up"}
# Deliverability's series (provider events, the reputation guard, suppressed sends).
ANNOUNCED |= {
    "ringbearer_email_events_total",
    "ringbearer_email_complaint_ratio",
    "ringbearer_suppressed_total",
}
# Growth's series (the viral coefficient, experiments).
ANNOUNCED |= {
    "ringbearer_growth_k",
    "ringbearer_experiment_exposures_total",
    "ringbearer_experiment_conversions_total",
}
DEADLINE = 30.0
T = TypeVar("T")

needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason=f"no promtool: {INSTALL}")
needs_prometheus = pytest.mark.skipif(
    PROMTOOL is None or PROMETHEUS is None, reason=f"no prometheus/promtool: {INSTALL}"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, cwd=MONITORING, timeout=60
    )


@needs_promtool
def test_rules_pass_promtool_check() -> None:
    """``promtool check rules`` accepts rules.yml."""
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


@needs_promtool
def test_rule_unit_tests_pass() -> None:
    """``promtool test rules`` passes every case in rules_test.yml."""
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
def test_example_scrape_config_is_valid() -> None:
    """The example prometheus.yml, and the rules it loads, pass ``promtool check config``."""
    checked = promtool("check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_is_tested_firing_and_silent() -> None:
    """Each alert in rules.yml has a unit test where it fires and one where it does not."""
    alerts = set(re.findall(r"^\s*- alert: (\w+)$", RULES.read_text(), re.MULTILINE))
    cases = re.findall(r"alertname: (\w+)\n\s*exp_alerts:(.*)$", RULE_TESTS.read_text(), re.M)
    silent = {name for name, rest in cases if rest.strip() == "[]"}
    firing = {name for name, rest in cases if rest.strip() == ""}
    assert alerts and {name for name, _ in cases} == alerts
    assert silent == alerts and firing == alerts


def test_every_alert_has_severity_summary_and_description() -> None:
    """Each rule carries a severity label and summary and description annotations."""
    rules = re.split(r"^\s*- alert: ", RULES.read_text(), flags=re.MULTILINE)[1:]
    assert len(rules) >= 8
    for rule in rules:
        name = rule.split("\n", 1)[0]
        assert re.search(r"^\s+severity: (critical|warning)$", rule, re.M), name
        assert re.search(r"^\s+summary: .*\{\{ \$labels\.\w+ \}\}", rule, re.M), name
        assert re.search(r"^\s+description: ", rule, re.M), name


# --- the dashboard ---------------------------------------------------------------

_FAMILY_SUFFIXES = {
    "Counter": ("_total",),
    "CounterMetricFamily": ("_total",),
    "Gauge": ("",),
    "GaugeMetricFamily": ("",),
    "Histogram": ("_bucket", "_sum", "_count"),
    "HistogramMetricFamily": ("_bucket", "_sum", "_count"),
    "Summary": ("", "_sum", "_count"),
    "SummaryMetricFamily": ("", "_sum", "_count"),
}


def exported_series() -> set[str]:
    """Series names _metrics.py exports, read from its source (robust to signature changes)."""
    names = set()
    for node in ast.walk(ast.parse(METRICS_SOURCE.read_text())):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        kind = getattr(node.func, "id", getattr(node.func, "attr", None))
        first = node.args[0]
        if kind in _FAMILY_SUFFIXES and isinstance(first, ast.Constant):
            base = str(first.value).removesuffix("_total")  # as prometheus_client does
            names |= {f"{base}{suffix}" for suffix in _FAMILY_SUFFIXES[kind]}
    return names


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
_KEYWORDS |= {"and", "or", "unless", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (with Grafana variables) selects."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)  # matchers, ranges ($__rate_interval)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for found in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", expr):
        is_call = expr[found.end() :].lstrip().startswith("(")
        if not is_call and found.group().lower() not in _KEYWORDS:
            names.add(found.group())
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'histogram_quantile(0.99, sum by (integration, le) (rate(a_bucket{x=~"$x"}'
            "[$__rate_interval])))",
            {"a_bucket"},
        ),
        ("up{job='r'} == 0 unless on(job, instance) (last_over_time(m[6h]) == 1)", {"up", "m"}),
        ("sum(rate(a_total[1m])) * 60 > 1e3 and b offset 5m", {"a_total", "b"}),
    ],
)
def test_metric_names_reads_promql(expr: str, names: set[str]) -> None:
    """The dashboard check's PromQL reader finds exactly the selected metrics."""
    assert metric_names(expr) == names


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_dashboard_queries_only_metrics_that_exist() -> None:
    """The dashboard parses, asks for its datasource, and queries only exported series."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    exprs = [n["expr"] for n in _walk(dashboard["panels"]) if "expr" in n]
    variables = [v["definition"] for v in dashboard["templating"]["list"]]
    selected = {name for e in exprs for name in metric_names(e)}
    selected |= {m for v in variables for m in re.findall(r"label_values\((\w+)", v)}
    known = exported_series() | ANNOUNCED
    assert {"ringbearer_messages_total", "ringbearer_delivery_seconds_bucket"} <= known
    assert selected <= known, f"unknown series: {selected - known}"
    wanted = {
        "ringbearer_messages_total",
        "ringbearer_delivery_seconds_bucket",
        "ringbearer_provider_request_seconds_bucket",
        "ringbearer_breaker_state",
        "ringbearer_health_state",
        "ringbearer_queue_depth",
        "ringbearer_queue_oldest_age_seconds",
        "ringbearer_actor_restarts_total",
        "ringbearer_budget_remaining",
        "ringbearer_wedding_day_mode",
        "ringbearer_email_events_total",
        "ringbearer_email_complaint_ratio",
        "ringbearer_suppressed_total",
        "ringbearer_growth_k",
        "ringbearer_experiment_exposures_total",
    }
    assert wanted <= selected, f"not on the dashboard: {wanted - selected}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    sources = [n["datasource"] for n in _walk(dashboard["panels"]) if "datasource" in n]
    assert all(s == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"} for s in sources)


# --- a live daemon, promtool and a real Prometheus ------------------------------------


@pytest.fixture
def metrics_url(tmp_path: Path) -> Iterator[str]:
    """A real daemon on a real simulator that has delivered five emails: its /metrics URL."""
    sim = Simulator(tmp_path / "simulator.log")
    try:
        with running(tmp_path, config_for(tmp_path, sim)) as daemon:
            daemon.call("submit", {"messages": [email(i) for i in range(5)]})
            daemon.wait_idle()
            yield daemon.status()["metrics"]
    finally:
        sim.stop()


@pytest.mark.e2e
@needs_prometheus
async def test_live_scrape_is_clean_and_prometheus_stores_it(
    tmp_path: Path, metrics_url: str
) -> None:
    """promtool finds nothing wrong in a live scrape; Prometheus scrapes it and runs the rules."""
    assert PROMTOOL is not None
    async with httpx.AsyncClient(timeout=10) as http:
        scrape = (await http.get(metrics_url)).content
    assert b'outcome="delivered"' in scrape
    lint = await trio.run_process(
        [PROMTOOL, "check", "metrics"],
        stdin=scrape,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, b"", b"")
    await _prometheus_scrapes(tmp_path, metrics_url)


async def _prometheus_scrapes(tmp_path: Path, metrics_url: str) -> None:
    assert PROMETHEUS is not None
    target = urlsplit(metrics_url)
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{json.dumps(str(RULES))}]\n"
        "scrape_configs:\n"
        "  - job_name: ringbearer\n"
        f"    metrics_path: {json.dumps(target.path)}\n"
        f"    static_configs: [{{targets: [{json.dumps(target.netloc)}]}}]\n"
    )
    command = [
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    log = tmp_path / "prometheus.log"
    with log.open("wb") as output:
        async with trio.open_nursery() as nursery:
            process = await nursery.start(
                partial(trio.run_process, command, stdout=output, stderr=output, check=False)
            )
            try:
                with trio.fail_after(DEADLINE):
                    await _check_prometheus(f"http://127.0.0.1:{port}", target.netloc)
            except trio.TooSlowError:
                pytest.fail(f"Prometheus did not get there in {DEADLINE} s:\n{log.read_text()}")
            finally:
                # Cancelling run_process sends SIGTERM (SIGKILL 5 s later) and waits.
                nursery.cancel_scope.cancel()
    assert process.returncode == 0, log.read_text()


async def _check_prometheus(base: str, instance: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=5) as http:
        delivered = await _poll(http, _delivered_series)
        seen = time.time()
        assert {s["metric"]["job"] for s in delivered} == {"ringbearer"}
        assert {s["metric"]["instance"] for s in delivered} == {instance}
        assert sum(float(s["value"][1]) for s in delivered) == 5
        rules = await _poll(http, partial(_rules_evaluated_since, seen))
        assert all(rule["health"] == "ok" for rule in rules), rules
        alerts = (await http.get("/api/v1/alerts")).json()["data"]["alerts"]
        assert alerts == []  # a healthy daemon raises nothing


async def _poll(http: httpx.AsyncClient, probe: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Ask ``probe`` until it answers something; the caller bounds the time."""
    while True:
        try:
            found = await probe(http)
        except httpx.TransportError:  # not listening yet
            found = None
        if found:
            return found
        await trio.sleep(0.2)


async def _delivered_series(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    reply = await http.get("/api/v1/query", params={"query": "ringbearer_messages_total"})
    if reply.status_code != 200:
        return []
    result: list[dict[str, Any]] = reply.json()["data"]["result"]
    return [s for s in result if s["metric"].get("outcome") == "delivered"]


async def _rules_evaluated_since(seen: float, http: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The ringbearer group's rules, once the group has been evaluated after ``seen``."""
    reply = await http.get("/api/v1/rules")
    groups = reply.json()["data"]["groups"] if reply.status_code == 200 else []
    group = next((g for g in groups if g["name"] == "ringbearer"), None)
    if group is None or _timestamp(group["lastEvaluation"]) <= seen:
        return []
    rules: list[dict[str, Any]] = group["rules"]
    return rules


def _timestamp(rfc3339: str) -> float:
    # Go writes nanoseconds; datetime takes microseconds.
    trimmed = re.sub(r"(\.\d{6})\d*", r"\1", rfc3339).replace("Z", "+00:00")
    return datetime.fromisoformat(trimmed).timestamp()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
