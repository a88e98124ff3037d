#!/usr/bin/env python3
"""The Prometheus job label each PodMonitor / ServiceMonitor of a rendered chart produces.

    jobs.py RENDERED_YAML                 prints "<object name> <job>" per monitor
    jobs.py RENDERED_YAML --job NAME      prints the job of the monitor whose job is NAME,
                                          exit 1 when no monitor produces it
    jobs.py RENDERED_YAML --pods DIR      also checks the monitors against the pod templates
                                          of DIR/*.json (StatefulSets, Deployments as kubectl
                                          -o json prints them): the selector matches a pod
                                          template, the jobLabel is one of its labels and the
                                          endpoint's port is a named container port

The job follows the Prometheus Operator's relabelling (pkg/prometheus/promcfg.go): first
"<namespace>/<name>" of the monitor, then the value of the pod's (or Service's) label named by
spec.jobLabel when present, then the endpoint's own relabelings, in order. A jobLabel value is
read from the selector's matchLabels (it must be there, or the job depends on each pod).
Needs PyYAML.
"""

import json
import os
import sys

import yaml

MONITORS = ("PodMonitor", "ServiceMonitor")


def endpoints(mon):
    spec = mon.get("spec", {})
    return spec.get("podMetricsEndpoints") or spec.get("endpoints") or []


def job_of(mon):
    """The job label of every target of `mon`; ValueError when it depends on each target."""
    meta = mon["metadata"]
    job = f"{meta.get('namespace', '')}/{meta['name']}"
    spec = mon.get("spec", {})
    key = spec.get("jobLabel")
    if key:
        match = spec.get("selector", {}).get("matchLabels", {})
        if key not in match:
            raise ValueError(f"{meta['name']}: jobLabel {key} is not fixed by the selector")
        job = match[key]
    jobs = set()
    for ep in endpoints(mon) or [{}]:
        j = job
        for r in ep.get("relabelings", []):
            if r.get("targetLabel") != "job":
                continue
            if r.get("action", "replace").lower() != "replace" or r.get("sourceLabels"):
                raise ValueError(f"{meta['name']}: a job relabeling that depends on the target")
            j = r.get("replacement", "$1")
        jobs.add(j)
    if len(jobs) != 1:
        raise ValueError(f"{meta['name']}: endpoints with different jobs {sorted(jobs)}")
    return jobs.pop()


def monitors(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d and d.get("kind") in MONITORS]


def pod_templates(directory):
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            doc = json.load(f)
        for item in doc.get("items", [doc]):
            tpl = item.get("spec", {}).get("template", {})
            if tpl:
                yield f"{item['kind']}/{item['metadata']['name']}", tpl


def check_against_pods(mon, templates):
    """Problems of a PodMonitor against the pod templates it is meant to select."""
    if mon["kind"] != "PodMonitor":
        return []
    spec = mon["spec"]
    want = spec.get("selector", {}).get("matchLabels", {})
    chosen = [
        (name, tpl)
        for name, tpl in templates
        if want.items() <= (tpl.get("metadata", {}).get("labels") or {}).items()
    ]
    if not chosen:
        return [f"{mon['metadata']['name']}: selector {want} matches no pod template"]
    problems = []
    for name, tpl in chosen:
        labels = tpl["metadata"]["labels"]
        if spec.get("jobLabel") and spec["jobLabel"] not in labels:
            problems.append(f"{mon['metadata']['name']}: {name} has no label {spec['jobLabel']}")
        ports = {
            p.get("name")
            for c in tpl.get("spec", {}).get("containers", [])
            for p in c.get("ports", [])
        }
        for ep in endpoints(mon):
            if ep.get("port") and ep["port"] not in ports:
                problems.append(
                    f"{mon['metadata']['name']}: {name} has no container port named {ep['port']} "
                    f"(named: {sorted(p for p in ports if p)})"
                )
    return problems


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    mons = monitors(argv[1])
    rest = argv[2:]
    if rest[:1] == ["--job"] and len(rest) == 2:
        found = [job_of(m) for m in mons if job_of(m) == rest[1]]
        if not found:
            print(f"no monitor produces job {rest[1]}; jobs: "
                  f"{sorted(job_of(m) for m in mons)}", file=sys.stderr)
            return 1
        print(found[0])
        return 0
    problems = []
    if rest[:1] == ["--pods"] and len(rest) == 2:
        templates = list(pod_templates(rest[1]))
        for m in mons:
            problems += check_against_pods(m, templates)
    elif rest:
        print(__doc__, file=sys.stderr)
        return 2
    for m in mons:
        print(f"{m['kind']}/{m['metadata']['name']} {job_of(m)}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
