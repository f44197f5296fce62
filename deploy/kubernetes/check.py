#!/usr/bin/env python3
"""Offline schema and policy check of deploy/kubernetes/ (run by deploy/check).

Schema: every object is checked against the Kubernetes API's own types as the official Python
client carries them (generated from the API server's OpenAPI document): an unknown field, a value
of the wrong type or a missing required field is an error. No cluster and no network is needed.

Policy: what deploy/README.md promises of these manifests (non-root, read-only root filesystem,
no privilege escalation, RuntimeDefault seccomp, probes on /live and /ready, config from a
Secret, default-deny NetworkPolicy with egress only to the upstream, PROXY protocol on each
cloud's Service) and that the example config agrees with the ports and paths.

  deploy/kubernetes/check.py              check the manifests
  deploy/kubernetes/check.py --self-test  also show that broken manifests are refused
"""

import copy
import pathlib
import re
import sys
import tomllib

import yaml
from kubernetes import client

HERE = pathlib.Path(__file__).resolve().parent
PRIMITIVES = {"str": str, "bytes": str, "int": int, "bool": bool, "float": (int, float)}


def model(api_version, kind):
    version = api_version.split("/")[-1]
    name = version[0].upper() + version[1:] + kind
    klass = getattr(client.models, name, None)
    if klass is None:
        raise ValueError(f"unknown apiVersion/kind {api_version} {kind}")
    return name


def check_type(value, type_name, path, errors):
    if value is None:
        return
    if type_name in PRIMITIVES:
        expected = PRIMITIVES[type_name]
        if isinstance(value, bool) and type_name != "bool":
            errors.append(f"{path}: expected {type_name}, got a boolean")
        elif not isinstance(value, expected):
            errors.append(f"{path}: expected {type_name}, got {type(value).__name__}")
        return
    if type_name in ("object", "datetime", "date"):
        return
    m = re.fullmatch(r"[lL]ist\[(.+)\]", type_name)
    if m:
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list")
            return
        for i, item in enumerate(value):
            check_type(item, m.group(1), f"{path}[{i}]", errors)
        return
    m = re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name)
    if m:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a map")
            return
        for k, item in value.items():
            check_type(item, m.group(1) or m.group(2), f"{path}.{k}", errors)
        return
    klass = getattr(client.models, type_name)
    if not isinstance(value, dict):
        errors.append(f"{path}: expected an object ({type_name})")
        return
    by_json = {j: p for p, j in klass.attribute_map.items()}
    for key, item in value.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: unknown field of {type_name}")
            continue
        check_type(item, klass.openapi_types[by_json[key]], f"{path}.{key}", errors)


def check_schema(doc, where):
    errors = []
    try:
        name = model(doc.get("apiVersion", ""), doc.get("kind", ""))
    except ValueError as e:
        return [f"{where}: {e}"]
    check_type(doc, name, where, errors)
    if not errors:
        # Required fields: the client's models refuse to be built without them.
        try:
            client.ApiClient()._ApiClient__deserialize(doc, name)
        except (ValueError, TypeError) as e:
            errors.append(f"{where}: {e}")
    return errors


def load():
    docs = []
    for f in sorted(HERE.rglob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(f.read_text())):
            if doc:
                docs.append((f"{f.relative_to(HERE)}#{i}", doc))
    return docs


def find(docs, kind, name=None):
    return [d for w, d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def check_policy(docs):
    errors = []

    def need(cond, what):
        if not cond:
            errors.append(f"policy: {what}")

    sts = find(docs, "StatefulSet", "oneway")
    need(len(sts) == 1, "one StatefulSet named oneway")
    if not sts:
        return errors
    pod = sts[0]["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    need(psc.get("runAsNonRoot") is True, "pod runAsNonRoot")
    need(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod seccomp RuntimeDefault")
    need(pod.get("automountServiceAccountToken") is False, "no service account token")
    c = pod["containers"][0]
    sc = c.get("securityContext", {})
    need(sc.get("readOnlyRootFilesystem") is True, "read-only root filesystem")
    need(sc.get("allowPrivilegeEscalation") is False, "no privilege escalation")
    need(sc.get("capabilities", {}).get("drop") == ["ALL"], "all capabilities dropped")
    need(c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/live", "liveness on /live")
    need(c.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/ready", "readiness on /ready")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    secret_volumes = [v for v in pod["volumes"] if "secret" in v]
    need(secret_volumes and secret_volumes[0]["name"] == "config", "config from a Secret")
    need(c["args"][-1].startswith(mounts.get("config", "?")), "--config inside the Secret's mount")

    secret = find(docs, "Secret", "oneway-config")
    need(len(secret) == 1, "the oneway-config Secret example")
    config = tomllib.loads(secret[0]["stringData"]["oneway.toml"]) if secret else {}
    need(config.get("sandbox") == "required", "the example config requires the sandbox")
    port_of = lambda a: int(a.rsplit(":", 1)[1])
    need(port_of(config["listener"]["address"]) == ports.get("ingest"), "listener port = ingest port")
    need(port_of(config["admin"]["address"]) == ports.get("admin"), "admin port = admin port")
    need(config["spool"]["directory"] == mounts.get("spool"), "spool directory = the volume's mount")
    need("proxy_protocol" in config["listener"], "PROXY protocol from the load balancer")
    upstream_ports = {port_of(a) for a in config["upstream"]["addresses"]}

    deny = [p for p in find(docs, "NetworkPolicy") if p["spec"]["podSelector"] == {}]
    need(deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
         and not deny[0]["spec"].get("egress") and not deny[0]["spec"].get("ingress"),
         "a default-deny NetworkPolicy for both directions")
    allow = find(docs, "NetworkPolicy", "oneway")
    need(len(allow) == 1, "the oneway NetworkPolicy")
    if allow:
        egress = allow[0]["spec"].get("egress", [])
        need(egress, "egress rules exist")
        for rule in egress:
            need(rule.get("to") and all("ipBlock" in t for t in rule["to"]), "egress only to IP blocks")
            need({p["port"] for p in rule.get("ports", [])} <= upstream_ports and rule.get("ports"),
                 "egress only to the upstream port")
        ingress_ports = {p["port"] for r in allow[0]["spec"]["ingress"] for p in r["ports"]}
        need(ingress_ports == {ports.get("ingest"), ports.get("admin")}, "ingress only to the two ports")

    for cloud, annotation, value in [
        ("aws", "service.beta.kubernetes.io/aws-load-balancer-proxy-protocol", "*"),
        ("alibaba", "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-proxy-protocol", "on"),
    ]:
        svc = [d for w, d in docs if w.startswith(f"{cloud}/") and d["kind"] == "Service"]
        need(len(svc) == 1, f"one {cloud} Service")
        if svc:
            need(svc[0]["spec"]["type"] == "LoadBalancer", f"{cloud}: type LoadBalancer")
            need(svc[0]["metadata"]["annotations"].get(annotation) == value, f"{cloud}: PROXY protocol")
            need([p["targetPort"] for p in svc[0]["spec"]["ports"]] == ["ingest"], f"{cloud}: only the ingest port")

    for kind in ("PodDisruptionBudget", "HorizontalPodAutoscaler"):
        need(len(find(docs, kind, "oneway")) == 1, f"a {kind}")
    hpa = find(docs, "HorizontalPodAutoscaler", "oneway")
    if hpa:
        need(hpa[0]["spec"]["scaleTargetRef"]["kind"] == "StatefulSet", "the HPA scales the StatefulSet")
    return errors


def check(docs):
    errors = []
    for where, doc in docs:
        errors += check_schema(doc, where)
    return errors + check_policy(docs)


def self_test(docs):
    """Broken copies must be refused: the check is not a formality."""
    sts_at = next(i for i, (w, d) in enumerate(docs) if d["kind"] == "StatefulSet")
    cases = {
        "unknown field": lambda d: d["spec"].__setitem__("replica", 2),
        "wrong type": lambda d: d["spec"].__setitem__("replicas", "two"),
        "missing required field": lambda d: d["spec"]["template"]["spec"].pop("containers"),
        "privilege escalation": lambda d: d["spec"]["template"]["spec"]["containers"][0]
        ["securityContext"].__setitem__("allowPrivilegeEscalation", True),
    }
    failed = []
    for name, mutate in cases.items():
        broken = copy.deepcopy(docs)
        mutate(broken[sts_at][1])
        try:
            refused = bool(check(broken))
        except (KeyError, TypeError, IndexError):
            refused = True
        print(f"self-test: {name}: {'refused' if refused else 'ACCEPTED'}")
        if not refused:
            failed.append(name)
    return failed


def main():
    docs = load()
    errors = check(docs)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if errors:
        return 1
    kinds = sorted({d["kind"] for _, d in docs})
    print(f"kubernetes: {len(docs)} objects valid ({', '.join(kinds)}); policy holds")
    if "--self-test" in sys.argv and self_test(docs):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
