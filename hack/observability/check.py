#!/usr/bin/env python3
"""Asks a running Prometheus whether every dashboard and alert query returns data.

    check.py PROMETHEUS_URL DASHBOARD_DIR ALLOW_LIST

Dashboards are read from their JSON (panel targets and templating queries, Grafana variables
replaced by match-all values). Alert rules are read back from Prometheus' /api/v1/rules, i.e.
as Prometheus loaded the real rule file. An alert expression `<value> <cmp> <number>` must be
accepted as a whole and its <value> part must return data (the comparison itself is false on a
healthy cluster). Expressions that reference a metric of the allow-list are reported, not
failed. Exit status 1 if anything returned no data. Standard library only.
"""

import json
import os
import re
import sys
import urllib.parse
import urllib.request

VARIABLES = {
    "$__rate_interval": "15s",
    "$__interval": "5s",
    "$__range": "1m",
}
# Grafana template variables of these dashboards, all multi-value with an "All" of ".*".
VARIABLE = re.compile(r"\$\{?(cluster|instance|group|topic|kind)\}?")
TRAILING_COMPARISON = re.compile(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.eE+-]+\s*$")


def query(base, expr):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    if body.get("status") != "success":
        return None, body.get("error", "query failed")
    return body["data"]["result"], None


def substitute(expr):
    for k, v in VARIABLES.items():
        expr = expr.replace(k, v)
    return VARIABLE.sub(".*", expr)


def dashboard_queries(directory):
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            board = json.load(f)
        for var in board.get("templating", {}).get("list", []):
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if var.get("type") == "query" and q:
                # label_values(<selector>, label) has data when <selector> has.
                m = re.match(r"label_values\((.*),\s*\w+\)\s*$", q)
                yield f"{name} variable ${var['name']}", m.group(1) if m else q
        for panel in board.get("panels", []):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    yield f"{name} panel '{panel['title']}' {target['refId']}", target["expr"]


def alert_queries(base):
    url = base + "/api/v1/rules"
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.load(resp)
    for group in body["data"]["groups"]:
        for rule in group["rules"]:
            if rule["type"] == "alerting":
                yield f"alert {rule['name']}", rule["query"]


def load_allow_list(path):
    allowed = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                metric, _, reason = line.partition("|")
                allowed[metric.strip()] = reason.strip()
    return allowed


def main():
    base, directory, allow_path = sys.argv[1:4]
    allowed = load_allow_list(allow_path)
    checked = failed = excused = 0
    items = [(w, e, False) for w, e in dashboard_queries(directory)]
    items += [(w, e, True) for w, e in alert_queries(base)]
    alerts = sum(1 for *_, a in items if a)
    if alerts == 0:
        print("FAIL no alert rules are loaded")
        return 1
    for where, expr, is_alert in items:
        checked += 1
        expr = substitute(expr)
        value = TRAILING_COMPARISON.sub("", expr) if is_alert else expr
        problem = None
        if is_alert:
            _, err = query(base, expr)
            if err:
                problem = f"rejected: {err}"
        if problem is None:
            result, err = query(base, value)
            if err:
                problem = f"rejected: {err}"
            elif not result:
                problem = "no data"
        if problem is None:
            continue
        excuse = next((m for m in allowed if m in expr), None)
        if excuse and problem == "no data":
            excused += 1
            print(f"SKIP {where}: {problem} (allow-listed {excuse}: {allowed[excuse]})")
            continue
        failed += 1
        print(f"FAIL {where}: {problem}\n     {value}")
    print(
        f"queries checked: {checked} ({alerts} alerts), with data: {checked - failed - excused}, "
        f"allow-listed: {excused}, failed: {failed}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
