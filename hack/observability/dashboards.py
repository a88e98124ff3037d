#!/usr/bin/env python3
"""Writes the Grafana dashboards of charts/ferrum/files/dashboards/ (standard library only).

The JSON files are committed; edit this script and run it again rather than editing them:
    python3 hack/observability/dashboards.py
Every panel query must return data against a live cluster: hack/observability/test.sh checks.
"""

import json
import os
import sys

# DASHBOARDS_OUT: another directory (test.sh writes there to find stale committed files).
OUT = os.environ.get("DASHBOARDS_OUT") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "charts", "ferrum", "files", "dashboards"
)
DS = {"type": "prometheus", "uid": "${datasource}"}
BROKERS = 'job=~".*ferrum-broker.*"'
NAMESRVS = 'job=~".*ferrum-namesrv.*"'
SEL = 'instance=~"$instance"'


def datasource_var():
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
    }


def query_var(name, label, query, multi=True):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "multi": multi,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "sort": 1,
        "hide": 0,
    }


class Board:
    def __init__(self, uid, title, description, variables):
        self.uid, self.title, self.description = uid, title, description
        self.variables = [datasource_var()] + variables
        self.panels = []
        self.x = self.y = 0
        self.row_h = 0

    def panel(self, kind, title, targets, unit="short", w=12, h=8, description="", **extra):
        if self.x + w > 24:
            self.x, self.y = 0, self.y + self.row_h
            self.row_h = 0
        p = {
            "id": len(self.panels) + 1,
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
            "targets": [
                {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
                for i, (expr, legend) in enumerate(targets)
            ],
        }
        if kind == "timeseries":
            p["options"] = {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}}
        if kind == "table":
            for t in p["targets"]:
                t["format"] = "table"
                t["instant"] = True
        p.update(extra)
        self.panels.append(p)
        self.x += w
        self.row_h = max(self.row_h, h)

    def row(self, title):
        """A collapsible-free row header starting a new line of panels."""
        if self.x:
            self.x, self.y = 0, self.y + self.row_h
        self.panels.append(
            {
                "id": len(self.panels) + 1,
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1
        self.row_h = 0

    def stat(self, title, expr, unit="short", legend="", w=6, **kw):
        self.panel("stat", title, [(expr, legend)], unit=unit, w=w, h=4, **kw)

    def ts(self, title, targets, unit="short", w=12, **kw):
        self.panel("timeseries", title, targets, unit=unit, w=w, **kw)

    def json(self):
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["ferrum", "rocketmq"],
            "editable": True,
            "schemaVersion": 39,
            "version": 1,
            "timezone": "browser",
            "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "graphTooltip": 1,
            "templating": {"list": self.variables},
            "annotations": {"list": []},
            "links": [{"title": "Ferrum", "type": "dashboards", "tags": ["ferrum"], "asDropdown": True}],
            "panels": self.panels,
        }


def overview():
    b = Board(
        "ferrum-overview",
        "Ferrum / Cluster overview",
        "Brokers, NameServers, throughput and lag across the cluster.",
        [query_var("cluster", "Cluster", "label_values(ferrum_broker_info, cluster)")],
    )
    b.stat("Brokers up", f"sum(up{{{BROKERS}}})")
    b.stat("NameServers up", f"sum(up{{{NAMESRVS}}})")
    b.stat("Brokers live in the NameServers", "max(ferrum_namesrv_live_brokers)")
    b.stat(
        "Broker groups without a master",
        'count(max by (cluster, broker_name) (ferrum_broker_info{cluster=~"$cluster", role=~".*MASTER"} '
        'or ferrum_broker_info{cluster=~"$cluster"} * 0) < 1) or vector(0)',
    )
    b.stat(
        "Raft groups without a leader",
        'count(max by (raft_group) (ferrum_broker_raft_role{role="leader"}) < 1) or vector(0)',
        description="Raft-mode groups in which no replica Prometheus scrapes is the leader (an election "
        "normally ends within seconds).",
    )
    b.stat(
        "Raft leader changes (1h)",
        "sum(max by (raft_group) (increase(ferrum_broker_raft_elections_total[1h]))) or vector(0)",
        description="New leaders elected in the last hour, over all Raft groups.",
    )
    b.ts(
        "Messages in / out per second",
        [
            ("sum(rate(ferrum_broker_messages_in_total[$__rate_interval]))", "in"),
            ("sum(rate(ferrum_broker_messages_out_total[$__rate_interval]))", "out"),
        ],
        unit="ops",
    )
    b.ts(
        "Bytes in / out per second",
        [
            ("sum(rate(ferrum_broker_bytes_in_total[$__rate_interval]))", "in"),
            ("sum(rate(ferrum_broker_bytes_out_total[$__rate_interval]))", "out"),
        ],
        unit="Bps",
    )
    b.ts(
        "Messages in per second by topic (top 10)",
        [("topk(10, sum by (topic) (rate(ferrum_broker_messages_in_total[$__rate_interval])))", "{{topic}}")],
        unit="ops",
    )
    b.ts(
        "Consumer lag by group",
        [("sum by (group) (ferrum_broker_consumer_lag_messages)", "{{group}}")],
    )
    b.panel(
        "table",
        "Brokers",
        [('ferrum_broker_info{cluster=~"$cluster"}', "")],
        w=12,
        description="One row per broker: cluster, group, id and current role.",
    )
    b.ts(
        "Store disk used (highest broker)",
        [("max(ferrum_broker_disk_used_ratio)", "max used")],
        unit="percentunit",
    )
    b.ts(
        "NameServer route queries by result",
        [("sum by (result) (rate(ferrum_namesrv_route_queries_total[$__rate_interval]))", "{{result}}")],
        unit="reqps",
    )
    b.ts(
        "NameServer registrations and expiries",
        [
            ("sum by (result) (rate(ferrum_namesrv_registrations_total[$__rate_interval]))", "register {{result}}"),
            ("sum by (reason) (increase(ferrum_namesrv_broker_expiries_total[$__rate_interval]))", "removed: {{reason}}"),
        ],
        unit="short",
    )
    b.ts(
        "Send latency p99 by broker",
        [
            (
                "histogram_quantile(0.99, sum by (instance, le) (rate(ferrum_broker_send_latency_seconds_bucket[$__rate_interval])))",
                "{{instance}}",
            )
        ],
        unit="s",
    )
    b.ts(
        "SYSTEM_BUSY refusals",
        [("sum by (instance) (rate(ferrum_broker_system_busy_total[$__rate_interval]))", "{{instance}}")],
        unit="reqps",
    )
    return b


def broker():
    b = Board(
        "ferrum-broker",
        "Ferrum / Broker",
        "One or more brokers in detail: traffic, latency, store and connections.",
        [
            query_var("cluster", "Cluster", "label_values(ferrum_broker_info, cluster)"),
            query_var("instance", "Broker", 'label_values(ferrum_broker_info{cluster=~"$cluster"}, instance)'),
        ],
    )
    b.stat("Role", f"ferrum_broker_info{{{SEL}}}", legend="{{broker_name}} {{broker_id}} {{role}}")
    b.stat("Connections", f"sum(ferrum_broker_connections{{{SEL}}})")
    b.stat("Held long-poll pulls", f"sum(ferrum_broker_pull_requests_held{{{SEL}}})")
    b.stat("NameServers registered with", f"min(ferrum_broker_namesrv_registered{{{SEL}}})")
    b.ts(
        "Messages in by topic",
        [(f"sum by (topic) (rate(ferrum_broker_messages_in_total{{{SEL}}}[$__rate_interval]))", "{{topic}}")],
        unit="ops",
    )
    b.ts(
        "Messages out by topic and group",
        [
            (
                f"sum by (topic, group) (rate(ferrum_broker_messages_out_total{{{SEL}}}[$__rate_interval]))",
                "{{topic}} / {{group}}",
            )
        ],
        unit="ops",
    )
    b.ts(
        "Bytes in / out",
        [
            (f"sum(rate(ferrum_broker_bytes_in_total{{{SEL}}}[$__rate_interval]))", "in"),
            (f"sum(rate(ferrum_broker_bytes_out_total{{{SEL}}}[$__rate_interval]))", "out"),
        ],
        unit="Bps",
    )
    b.ts(
        "Requests by code",
        [
            (
                f"sum by (request_code, response_code) (rate(ferrum_broker_requests_total{{{SEL}}}[$__rate_interval]))",
                "{{request_code}} → {{response_code}}",
            )
        ],
        unit="reqps",
    )
    for name, metric in [("Send", "send_latency"), ("Pull (long-poll hold included)", "pull_latency")]:
        b.ts(
            f"{name} latency",
            [
                (
                    f"histogram_quantile({q}, sum by (le) (rate(ferrum_broker_{metric}_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                    f"p{int(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
            unit="s",
        )
    b.ts(
        "CommitLog flush latency",
        [
            (
                f"histogram_quantile(0.99, sum by (le) (rate(ferrum_broker_commitlog_flush_seconds_bucket{{{SEL}}}[$__rate_interval])))",
                "p99",
            ),
            (
                f"sum(rate(ferrum_broker_commitlog_flush_seconds_sum{{{SEL}}}[$__rate_interval])) / "
                f"sum(rate(ferrum_broker_commitlog_flush_seconds_count{{{SEL}}}[$__rate_interval]))",
                "mean",
            ),
        ],
        unit="s",
    )
    b.ts(
        "SYSTEM_BUSY refusals",
        [(f"sum by (source) (rate(ferrum_broker_system_busy_total{{{SEL}}}[$__rate_interval]))", "{{source}}")],
        unit="reqps",
    )
    b.ts(
        "CommitLog size and unflushed bytes",
        [
            (f"ferrum_broker_commitlog_size_bytes{{{SEL}}}", "kept {{instance}}"),
            (f"ferrum_broker_commitlog_unflushed_bytes{{{SEL}}}", "unflushed {{instance}}"),
        ],
        unit="bytes",
    )
    b.ts(
        "CommitLog min / max offset",
        [
            (f"ferrum_broker_commitlog_min_offset_bytes{{{SEL}}}", "min {{instance}}"),
            (f"ferrum_broker_commitlog_max_offset_bytes{{{SEL}}}", "max {{instance}}"),
        ],
        unit="bytes",
    )
    b.ts(
        "Store disk used",
        [(f"ferrum_broker_disk_used_ratio{{{SEL}}}", "{{instance}}")],
        unit="percentunit",
        description="Alerts fire at 75 %, 85 % and 90 % (writes are refused there).",
    )
    b.ts(
        "Connections and registrations",
        [
            (f"ferrum_broker_connections{{{SEL}}}", "open {{instance}}"),
            (f"sum by (result) (rate(ferrum_broker_registrations_total{{{SEL}}}[$__rate_interval]))", "register {{result}}"),
        ],
    )
    b.stat("Store recovery at start", f"max(ferrum_broker_store_recovery_seconds{{{SEL}}})", unit="s")
    b.stat("Topics", f"max(ferrum_broker_topics{{{SEL}}})")
    b.stat(
        "Connections accepted / s",
        f"sum(rate(ferrum_broker_connections_opened_total{{{SEL}}}[$__rate_interval]))",
        unit="ops",
    )
    # Replication: lag series exist on a master per authenticated slave.
    b.ts(
        "Replication lag (bytes)",
        [(f"max by (instance, slave_broker_id) (ferrum_broker_replication_lag_bytes{{{SEL}}})", "{{instance}} slave {{slave_broker_id}}")],
        unit="bytes",
        description="CommitLog bytes each slave has not acknowledged. SYNC_MASTER sends answer SLAVE_NOT_AVAILABLE beyond haMaxGapNotInSync.",
    )
    b.ts(
        "Replication lag (time)",
        [(f"max by (instance, slave_broker_id) (ferrum_broker_replication_lag_seconds{{{SEL}}})", "{{instance}} slave {{slave_broker_id}}")],
        unit="s",
        description="Time since each slave last held everything its master had; 0 while caught up.",
    )
    b.stat("Slaves connected", f"sum(ferrum_broker_ha_slaves_connected{{{SEL}}})")
    b.stat("HA epoch", f"max(ferrum_broker_ha_epoch{{{SEL}}})", description="A promotion opens the next epoch.")
    b.stat(
        "Divergent messages truncated",
        f"sum(ferrum_broker_ha_truncated_messages_total{{{SEL}}})",
        description="Messages a returning old master dropped because the new master never had them.",
    )
    b.stat(
        "HA handshakes refused / demotions",
        f"sum(ferrum_broker_ha_handshake_rejections_total{{{SEL}}}) + sum(ferrum_broker_ha_demotions_total{{{SEL}}})",
        description="Refused HA handshakes (haSecret, group, version) plus split-brain demotions of a running master.",
    )
    raft_row(b)
    return b


def raft_row(b):
    """Raft mode (enableDLegerCommitLog=true): series exist only on Raft replicas."""
    b.row("Raft")
    b.stat(
        "Raft role",
        f"ferrum_broker_raft_role{{{SEL}}} == 1",
        legend="{{raft_group}} {{instance}} {{role}}",
        w=8,
        description="The current Raft role of each replica; exactly one per group should lead.",
    )
    b.stat(
        "Raft term",
        f"max by (raft_group) (ferrum_broker_raft_term{{{SEL}}})",
        legend="{{raft_group}}",
        w=8,
        description="Each election opens a new term.",
    )
    b.stat(
        "Leader quorum ack age",
        f"max by (raft_group) (ferrum_broker_raft_leader_quorum_ack_age_seconds{{{SEL}}})",
        legend="{{raft_group}}",
        unit="s",
        w=8,
        description="Time since a majority last acknowledged the leader; it grows when the leader is cut off.",
    )
    b.ts(
        "Raft commit and applied index",
        [
            (f"ferrum_broker_raft_commit_index{{{SEL}}}", "commit {{instance}}"),
            (f"ferrum_broker_raft_applied_index{{{SEL}}}", "applied {{instance}}"),
        ],
        description="The newest entry a majority holds and the newest applied (visible to consumers).",
    )
    b.ts(
        "Raft entries committed per second",
        [(f"max by (raft_group) (rate(ferrum_broker_raft_commit_index{{{SEL}}}[$__rate_interval]))", "{{raft_group}}")],
        unit="ops",
    )
    b.ts(
        "Raft follower lag (entries, reported by the leader)",
        [(f"max by (raft_group, peer) (ferrum_broker_raft_peer_lag_entries{{{SEL}}})", "{{raft_group}} {{peer}}")],
        description="Entries of the leader's log each follower does not hold yet. Alert FerrumRaftFollowerLagHigh.",
    )
    b.ts(
        "Raft apply lag (entries)",
        [(f"ferrum_broker_raft_apply_lag_entries{{{SEL}}}", "{{instance}}")],
        description="Committed entries a replica has not applied yet.",
    )
    b.ts(
        "Raft leader changes",
        [
            (
                f"max by (raft_group) (increase(ferrum_broker_raft_elections_total{{{SEL}}}[$__rate_interval]))",
                "{{raft_group}}",
            )
        ],
        description="New leaders seen by the group's replicas. Alert FerrumRaftLeaderChurn.",
    )


def consumer_lag():
    b = Board(
        "ferrum-consumer-lag",
        "Ferrum / Consumer lag",
        "Messages each consumer group still has to read, computed by the brokers at scrape time.",
        [
            query_var("group", "Group", "label_values(ferrum_broker_consumer_lag_messages, group)"),
            query_var("topic", "Topic", 'label_values(ferrum_broker_consumer_lag_messages{group=~"$group"}, topic)'),
        ],
    )
    lag = 'ferrum_broker_consumer_lag_messages{group=~"$group", topic=~"$topic"}'
    b.stat("Total lag", f"sum({lag})", w=8)
    b.stat("Groups", 'count(count by (group) (ferrum_broker_consumer_lag_messages{group=~"$group"}))', w=8)
    b.stat("Lag series dropped (limit)", "sum(ferrum_broker_consumer_lag_series_dropped)", w=8)
    b.ts("Lag by group and topic", [(f"sum by (group, topic) ({lag})", "{{group}} / {{topic}}")], w=24)
    b.ts(
        "Lag change per second (positive: falling behind)",
        [(f"sum by (group, topic) (deriv({lag}[5m]))", "{{group}} / {{topic}}")],
    )
    b.ts(
        "Consumed per second by group",
        [
            (
                'sum by (group, topic) (rate(ferrum_broker_messages_out_total{group=~"$group", topic=~"$topic"}[$__rate_interval]))',
                "{{group}} / {{topic}}",
            )
        ],
        unit="ops",
    )
    b.panel(
        "table",
        "Lag by queue",
        [(f"sum by (group, topic, instance, queue_id) ({lag})", "")],
        w=24,
        h=10,
    )
    return b


def operator():
    b = Board(
        "ferrum-operator",
        "Ferrum / Operator",
        "Reconciles of BrokerGroup and Topic objects by the ferrum operator.",
        [query_var("kind", "Kind", "label_values(ferrum_operator_reconciles_total, kind)")],
    )
    sel = 'kind=~"$kind"'
    b.stat(
        "Managed objects",
        f"sum(ferrum_operator_managed_objects{{{sel}}})",
        w=6,
        description="BrokerGroups and Topics in the operator's watch caches (leader only).",
    )
    b.stat("Reconciles / s", f"sum(rate(ferrum_operator_reconciles_total{{{sel}}}[$__rate_interval]))", unit="ops", w=6)
    b.stat(
        "Errors / s",
        f'sum(rate(ferrum_operator_reconciles_total{{{sel}, result="error"}}[$__rate_interval]))',
        unit="ops",
        w=6,
    )
    b.stat(
        "Error ratio (5m)",
        f'sum(rate(ferrum_operator_reconciles_total{{{sel}, result="error"}}[5m])) / '
        f"sum(rate(ferrum_operator_reconciles_total{{{sel}}}[5m]))",
        unit="percentunit",
        w=6,
    )
    b.ts(
        "Reconciles by kind and result",
        [
            (
                f"sum by (kind, result) (rate(ferrum_operator_reconciles_total{{{sel}}}[$__rate_interval]))",
                "{{kind}} {{result}}",
            )
        ],
        unit="ops",
    )
    b.ts(
        "Reconcile duration",
        [
            (
                f"histogram_quantile({q}, sum by (kind, le) (rate(ferrum_operator_reconcile_duration_seconds_bucket{{{sel}}}[$__rate_interval])))",
                f"{{{{kind}}}} p{int(q * 100)}",
            )
            for q in (0.5, 0.99)
        ],
        unit="s",
    )
    b.ts(
        "Reconciles in the last hour by result",
        [(f"sum by (kind, result) (increase(ferrum_operator_reconciles_total{{{sel}}}[1h]))", "{{kind}} {{result}}")],
    )
    b.ts(
        "Managed objects by kind",
        [(f"sum by (kind) (ferrum_operator_managed_objects{{{sel}}})", "{{kind}}")],
    )
    # Rolling restarts of BrokerGroups (gauges set on every BrokerGroup pass).
    b.row("Rolling restarts")
    b.stat(
        "BrokerGroups rolling",
        "sum(ferrum_operator_rolls_in_progress)",
        w=8,
        description="Groups with pods left to restart onto the current template. Alert FerrumRollStuck.",
    )
    b.stat("Pods left to restart", "sum(ferrum_operator_roll_pods_pending)", w=8)
    b.stat(
        "Pods restarted by rolls (1h)",
        "sum(increase(ferrum_operator_roll_pod_restarts_total[1h])) or vector(0)",
        w=8,
    )
    b.ts(
        "Pods left to restart by group",
        [("sum by (namespace, group) (ferrum_operator_roll_pods_pending)", "{{namespace}}/{{group}}")],
        w=24,
    )
    return b


def main():
    os.makedirs(OUT, exist_ok=True)
    for board in (overview(), broker(), consumer_lag(), operator()):
        path = os.path.join(OUT, f"{board.uid}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(board.json(), f, indent=2, ensure_ascii=False)
            f.write("\n")
        print(f"wrote {os.path.relpath(path)} ({len(board.panels)} panels)", file=sys.stderr)


if __name__ == "__main__":
    main()
