#!/usr/bin/env python3
"""Checks that the chart's RBAC grants what the operator's code uses, and nothing more.

  rbac_check.py MANIFEST --src operator/src --release-ns NS [--watch NS,NS] [--leader]
                [--kubectl KUBECTL --kubeconfig CFG]

1. Every Kubernetes type the operator reaches through `Api<T>` must be listed in NEEDS
   (a new type in the code without a rule here fails the check).
2. The rendered Role/ClusterRole rules bound to the operator's ServiceAccount grant every
   verb in NEEDS, in every managed namespace, and no verb on a resource beyond NEEDS.
3. With --kubectl, the same is asked of a real apiserver where the RBAC objects were applied:
   `kubectl auth can-i --as system:serviceaccount:...` must say yes to each need and no to
   a few things the operator must never do.
"""
import argparse
import pathlib
import re
import subprocess
import sys

import yaml

# type -> (apiGroup, resource, verbs, why). "lease" scoped needs live in the release
# namespace; the others in every managed namespace.
NEEDS = {
    "BrokerGroup": ("ferrum.dev", "brokergroups", {"list", "watch"},
                    "controller watch; sibling list; topic controller's group list"),
    "BrokerGroup/status": ("ferrum.dev", "brokergroups/status", {"patch"}, "status apply"),
    "Topic": ("ferrum.dev", "topics", {"list", "watch", "patch"}, "watch; finalizer patch"),
    "Topic/status": ("ferrum.dev", "topics/status", {"patch"}, "status patch"),
    "StatefulSet": ("apps", "statefulsets", {"get", "list", "watch", "create", "patch"},
                    "owns; get_opt; server-side apply"),
    "Deployment": ("apps", "deployments", {"list", "create", "patch", "delete"},
                   "NameServer apply; pruning NameServers scaled away"),
    "ConfigMap": ("", "configmaps", {"list", "watch", "create", "patch"}, "owns; apply"),
    "Service": ("", "services", {"list", "watch", "create", "patch", "delete"},
                "owns; apply; pruning Services no longer built"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets",
                            {"list", "watch", "create", "patch"}, "owns; apply"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims", {"get", "patch"}, "volume growth"),
    "Pod": ("", "pods", {"list", "watch", "patch"},
            "ready ordinals by label; master role label; watched so a Raft group relabels its leader"),
    "Pod/eviction": ("", "pods/eviction", {"create"}, "rolling restart through the Eviction API"),
    "Event": ("events.k8s.io", "events", {"create", "patch"}, "kube Recorder"),
}
LEASE = ("coordination.k8s.io", "leases", {"get", "create", "update"}, "leader election")
# Types named in Api<...> that need no rule of their own.
IGNORED = {"K", "Self", "DeserializeGuard"}
# Must stay forbidden whatever the mode.
NEVER = [("get", "secrets", ""), ("delete", "statefulsets", "apps"),
         ("delete", "persistentvolumeclaims", ""), ("create", "pods", ""),
         ("delete", "pods", ""),
         ("update", "brokergroups", "ferrum.dev")]


def used_types(src):
    """Type names appearing as Api<T>, Api::<T> or Api<DeserializeGuard<T>> in the sources."""
    found = {}
    # `apply::<T>` and `scoped::<T>` are the controller's helpers around Api<T>.
    pat = re.compile(r"\b(?:Api|apply|scoped)(?:::)?<\s*(?:DeserializeGuard<\s*)?([A-Za-z_][A-Za-z0-9_:]*)")
    for f in sorted(pathlib.Path(src).rglob("*.rs")):
        text = f.read_text()
        # Unit-test modules build objects without a cluster; only the code above them counts.
        text = text.split("#[cfg(test)]")[0]
        for m in pat.finditer(text):
            name = m.group(1).split("::")[-1]
            found.setdefault(name, set()).add(f.name)
        if "patch_status(" in text:
            for t in ("BrokerGroup", "Topic"):
                if re.search(rf"Api<{t}>", text):
                    found.setdefault(f"{t}/status", set()).add(f.name)
        if "Recorder" in text:
            found.setdefault("Event", set()).add(f.name)
    return found


def grants(docs, sa, sa_ns):
    """{(namespace or '*'): {(group, resource): verbs}} granted to the ServiceAccount."""
    roles = {}
    for d in docs:
        if d["kind"] in ("Role", "ClusterRole"):
            roles[(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"])] = d
    out = {}
    for d in docs:
        if d["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and s["name"] == sa
                   and s.get("namespace") == sa_ns for s in d.get("subjects", [])):
            continue
        ns = d["metadata"].get("namespace") if d["kind"] == "RoleBinding" else "*"
        ref = d["roleRef"]
        role = roles.get((ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"]))
        if role is None:
            sys.exit(f"{d['kind']} {d['metadata']['name']} refers to a missing {ref['kind']} {ref['name']}")
        for rule in role.get("rules", []):
            for verb in rule["verbs"] + rule.get("apiGroups", []) + rule.get("resources", []):
                if verb == "*":
                    sys.exit(f"{ref['kind']} {ref['name']} uses a wildcard: not least privilege")
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    out.setdefault(ns, {}).setdefault((g, r), set()).update(rule["verbs"])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("manifest")
    ap.add_argument("--src", required=True)
    ap.add_argument("--release-ns", required=True)
    ap.add_argument("--watch", default="")
    ap.add_argument("--leader", action="store_true")
    ap.add_argument("--kubectl")
    ap.add_argument("--kubeconfig")
    a = ap.parse_args()

    failures = []
    used = used_types(a.src)
    for t, files in sorted(used.items()):
        if t in IGNORED or t == "Lease":
            continue
        if t not in NEEDS:
            failures.append(f"the operator uses Api<{t}> ({', '.join(sorted(files))}) but "
                            "hack/chart/rbac_check.py has no rule for it: add it to NEEDS and "
                            "to ferrum.managedRules in charts/ferrum/templates/_helpers.tpl")
    if "Lease" not in used:
        failures.append("the operator no longer uses Api<Lease>: drop the leader-election Role")

    docs = [d for d in yaml.safe_load_all(open(a.manifest)) if d]
    sas = [d for d in docs if d["kind"] == "ServiceAccount"]
    if len(sas) != 1:
        sys.exit(f"expected one ServiceAccount, found {len(sas)}")
    sa = sas[0]["metadata"]["name"]
    dep = next(d for d in docs if d["kind"] == "Deployment")
    if dep["spec"]["template"]["spec"]["serviceAccountName"] != sa:
        failures.append("the Deployment does not run as the chart's ServiceAccount")
    g = grants(docs, sa, a.release_ns)

    watch = [n for n in a.watch.split(",") if n]
    scopes = watch if watch else ["*"]
    if not watch and any(k != "*" and k != a.release_ns for k in g):
        failures.append(f"cluster-wide mode also binds namespaced Roles: {sorted(g)}")
    if watch and "*" in g:
        failures.append("namespaced mode must not bind a ClusterRole")
    needs = list(NEEDS.values())
    for scope in scopes:
        have = g.get(scope, {})
        for group, res, verbs, why in needs:
            missing = verbs - have.get((group, res), set())
            if missing:
                failures.append(f"{scope}: {res}.{group or 'core'} lacks {sorted(missing)} ({why})")
        allowed = {(gr, r): v for gr, r, v, _ in needs}
        for key, verbs in have.items():
            extra = verbs - allowed.get(key, set())
            if key == (LEASE[0], LEASE[1]) and scope == a.release_ns:
                extra -= LEASE[2]
            if extra:
                failures.append(f"{scope}: {key[1]}.{key[0] or 'core'} grants unused {sorted(extra)}")
    lease_have = g.get(a.release_ns, {}).get((LEASE[0], LEASE[1]), set())
    if a.leader and LEASE[2] - lease_have:
        failures.append(f"{a.release_ns}: leases lack {sorted(LEASE[2] - lease_have)}")
    if not a.leader and lease_have:
        failures.append("leader election is off but a Lease Role is bound")

    checks = 0
    if a.kubectl:
        who = f"system:serviceaccount:{a.release_ns}:{sa}"
        namespaces = watch if watch else [a.release_ns, "default"]

        def can(verb, res, group, ns):
            resource = f"{res}.{group}" if group else res
            sub = None
            if "/" in res:
                resource, sub = res.split("/")
                resource = f"{resource}.{group}" if group else resource
            cmd = [a.kubectl, "--kubeconfig", a.kubeconfig, "auth", "can-i", verb, resource,
                   "-n", ns, "--as", who]
            if sub:
                cmd += ["--subresource", sub]
            r = subprocess.run(cmd, capture_output=True, text=True)
            return r.stdout.strip() == "yes"

        for ns in namespaces:
            for group, res, verbs, why in needs:
                for verb in sorted(verbs):
                    checks += 1
                    if not can(verb, res, group, ns):
                        failures.append(f"apiserver: {who} cannot {verb} {res} in {ns} ({why})")
            for verb, res, group in NEVER:
                checks += 1
                if can(verb, res, group, ns):
                    failures.append(f"apiserver: {who} can {verb} {res} in {ns}, which it never needs")
        if watch:
            checks += 1
            if can("list", "brokergroups", "ferrum.dev", "kube-public"):
                failures.append("apiserver: namespaced mode can list brokergroups outside its namespaces")
        if a.leader:
            for verb in sorted(LEASE[2]):
                checks += 1
                if not can(verb, LEASE[1], LEASE[0], a.release_ns):
                    failures.append(f"apiserver: {who} cannot {verb} leases in {a.release_ns}")

    for f in failures:
        print("RBAC: " + f, file=sys.stderr)
    if failures:
        sys.exit(1)
    mode = f"namespaces {','.join(watch)}" if watch else "cluster-wide"
    covered = len([t for t in used if t not in IGNORED])
    print(f"RBAC ok ({mode}): {covered} API types in the operator covered"
          + (f", {checks} `kubectl auth can-i` answers as expected" if checks else ""))


if __name__ == "__main__":
    main()
