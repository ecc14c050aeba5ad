#!/usr/bin/env python3
"""Offline checks of the Kubernetes manifests in this directory.

Run through validate.sh, which provides the pinned Python environment. Checks:
  1. every document of a built-in kind against the Kubernetes JSON schema of
     the pinned version, strictly (unknown fields are errors), with the
     schemas bundled in the kubernetes-validate package: no network;
  2. the ServiceMonitor (a CRD) against schemas/servicemonitor.json;
  3. the node config: the ConfigMap's node.yaml with the node container's
     args, by `kvdepot-node --check-config` itself ($KVD_NODE_BIN or
     --node-bin; without one this check is skipped, saying so on stderr),
     and the effective config it prints against the container (ports,
     ssd.dir);
  4. the references between documents: selectors, named ports, Services,
     ConfigMaps, Secret keys, volumes, and kustomization.yaml listing every
     manifest;
  5. no document sets a namespace (the set is namespace-agnostic).

Exit status: 0 all valid, 1 some check failed (each failure is printed to
stderr as FILE: KIND/NAME: WHERE: WHY), 2 usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Iterable, Optional

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import yaml

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_K8S_VERSION = "1.32"

KUSTOMIZATION = "kustomization.yaml"
# Validated like the others, but not applied (placeholders only).
EXAMPLES = frozenset({"secret.example.yaml"})
# Kinds outside Kubernetes itself, each with the schema we keep for it.
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "schemas/servicemonitor.json",
}

NODE_CONFIGMAP = "kvdepot-node-config"
NODE_CONFIG_KEY = "node.yaml"
NODE_CONTAINER = "kvdepot-node"
NODE_BIN_ENV = "KVD_NODE_BIN"
NODE_BIN_SKIP = f"node config not checked: set {NODE_BIN_ENV} to a built kvdepot-node"
# What the kubelet would substitute for $(VAR) in the node's args, by the
# fieldRef of VAR ({pod}: the StatefulSet's name); Secret keys get a token.
FIELD_VALUES = {"metadata.name": "{pod}-0", "status.podIP": "10.0.0.1"}
PLACEHOLDER_TOKEN = "placeholder-token-0123456789abcdef"
# Node config keys whose port must be that of the named container port.
PORT_KEYS = {"node.listen": "control", "metrics.listen": "metrics", "cluster.advertise": "control"}

# Prometheus durations, as the ServiceMonitor schema's pattern has them.
_PROM_UNIT = {"y": 31536000, "w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_PROM_PART = re.compile(r"(\d+)(ms|[ywdhms])")
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
# The node's log line prefix: "2026-01-02T03:04:05.678 error [kvdepot-node] ".
_LOG_PREFIX = re.compile(r"^\S+ \w+ \[kvdepot-node\] (invalid configuration: )?")


def prom_seconds(text: str) -> float:
    """Seconds of a Prometheus duration (1m30s, 500ms, 0); the schema checks its form."""
    return float(sum(int(n) * _PROM_UNIT[u] for n, u in _PROM_PART.findall(text)))


# ---------------------------------------------------------------------------
# Documents


@dataclasses.dataclass
class Doc:
    file: str
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", "?"))

    @property
    def name(self) -> str:
        return str((self.obj.get("metadata") or {}).get("name", "?"))

    def where(self) -> str:
        return f"{self.file}: {self.kind}/{self.name}"


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, doc_or_file: Doc | str, where: str, why: str) -> None:
        head = doc_or_file.where() if isinstance(doc_or_file, Doc) else doc_or_file
        self.errors.append(f"{head}: {where}: {why}" if where else f"{head}: {why}")


def load_documents(directory: pathlib.Path, report: Report) -> list[Doc]:
    docs: list[Doc] = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == KUSTOMIZATION:
            continue
        try:
            objs = [o for o in yaml.safe_load_all(path.read_text()) if o is not None]
        except yaml.YAMLError as e:
            report.fail(path.name, "", f"invalid YAML: {e}")
            continue
        for i, obj in enumerate(objs):
            if not isinstance(obj, dict):
                report.fail(path.name, f"document {i}", "is not a mapping")
                continue
            docs.append(Doc(path.name, obj))
    return docs


def path_text(path: Iterable[Any]) -> str:
    return ".".join(str(p) for p in path) or "(top)"


def check_schemas(
    docs: list[Doc], directory: pathlib.Path, k8s_version: str, report: Report
) -> None:
    crd_validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
    for key, rel in CRD_SCHEMAS.items():
        schema = json.loads((directory / rel).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        crd_validators[key] = jsonschema.Draft202012Validator(schema)
    for doc in docs:
        key = (str(doc.obj.get("apiVersion")), doc.kind)
        if key in crd_validators:
            for e in sorted(crd_validators[key].iter_errors(doc.obj), key=lambda e: list(e.path)):
                report.fail(doc, path_text(e.absolute_path), e.message)
            continue
        try:
            kubernetes_validate.validate(doc.obj, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            report.fail(doc, path_text(e.path), e.message)
        except kubernetes_validate.SchemaNotFoundError:
            why = f"no schema for {key[1]} ({key[0]}) in Kubernetes {k8s_version}"
            report.fail(doc, "kind", f"{why}: a typo, or a CRD missing from CRD_SCHEMAS")
        if "namespace" in (doc.obj.get("metadata") or {}):
            report.fail(doc, "metadata.namespace", "is set; the manifests are namespace-agnostic")


def check_kustomization(directory: pathlib.Path, report: Report) -> None:
    try:
        kustomization = yaml.safe_load((directory / KUSTOMIZATION).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        report.fail(KUSTOMIZATION, "", f"unreadable: {e}")
        return
    listed = kustomization.get("resources") or []
    manifests = {p.name for p in directory.glob("*.yaml")} - {KUSTOMIZATION} - EXAMPLES
    for name in listed:
        if name not in manifests:
            report.fail(KUSTOMIZATION, "resources", f"{name} is not a manifest in this directory")
    for name in sorted(manifests - set(listed)):
        report.fail(KUSTOMIZATION, "resources", f"{name} is not listed")


# ---------------------------------------------------------------------------
# References between documents


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _pod_templates(docs: list[Doc]) -> list[tuple[Doc, dict[str, Any]]]:
    return [
        (d, d.obj["spec"]["template"])
        for d in docs
        if d.kind in ("StatefulSet", "Deployment", "DaemonSet")
        and isinstance((d.obj.get("spec") or {}).get("template"), dict)
    ]


def _containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    return (template.get("spec") or {}).get("containers") or []


def _container_ports(template: dict[str, Any]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for c in _containers(template):
        for p in c.get("ports") or []:
            ports[str(p.get("name", p.get("containerPort")))] = p.get("containerPort")
    return ports


def _check_workload(
    doc: Doc, template: dict[str, Any], by_kind: dict[str, dict[str, Doc]], report: Report
) -> None:
    spec = doc.obj["spec"]
    if not _matches((spec.get("selector") or {}).get("matchLabels") or {}, _labels(template)):
        report.fail(doc, "spec.selector", "does not match the pod template's labels")
    if doc.kind == "StatefulSet":
        svc = by_kind.get("Service", {}).get(spec.get("serviceName", ""))
        if svc is None:
            report.fail(doc, "spec.serviceName", f"no Service \"{spec.get('serviceName')}\"")
        elif svc.obj["spec"].get("clusterIP") != "None":
            report.fail(doc, "spec.serviceName", f"Service {svc.name} is not headless")
    pod = template.get("spec") or {}
    volumes = {v.get("name") for v in pod.get("volumes") or []}
    claims = spec.get("volumeClaimTemplates") or []
    volumes |= {(t.get("metadata") or {}).get("name") for t in claims}
    for v in pod.get("volumes") or []:
        cm = (v.get("configMap") or {}).get("name")
        if cm is not None and cm not in by_kind.get("ConfigMap", {}):
            report.fail(doc, f"volumes.{v.get('name')}", f'no ConfigMap "{cm}"')
    for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        _check_container(doc, c, volumes, by_kind.get("Secret", {}), report)


def _check_container(
    doc: Doc, c: dict[str, Any], volumes: set[Any], secrets: dict[str, Doc], report: Report
) -> None:
    where = f"containers.{c.get('name')}"
    named = {p.get("name") for p in c.get("ports") or []}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        for kind in ("httpGet", "tcpSocket", "grpc"):
            port = ((c.get(probe) or {}).get(kind) or {}).get("port")
            if isinstance(port, str) and port not in named:
                report.fail(doc, f"{where}.{probe}", f'port "{port}" is not a named container port')
    for m in c.get("volumeMounts") or []:
        if m.get("name") not in volumes:
            report.fail(doc, f"{where}.volumeMounts", f"no volume \"{m.get('name')}\"")
    for e in c.get("env") or []:
        ref = (e.get("valueFrom") or {}).get("secretKeyRef")
        if not ref:
            continue
        at, secret = f"{where}.env.{e.get('name')}", secrets.get(ref.get("name", ""))
        if secret is None:
            report.fail(doc, at, f"no Secret \"{ref.get('name')}\" (not even an example)")
            continue
        keys = set(secret.obj.get("stringData") or {}) | set(secret.obj.get("data") or {})
        if ref.get("key") not in keys:
            report.fail(doc, at, f"Secret {secret.name} has no key \"{ref.get('key')}\"")


def _check_service(svc: Doc, templates: list[dict[str, Any]], report: Report) -> None:
    pods = [t for t in templates if _matches(svc.obj["spec"].get("selector") or {}, _labels(t))]
    if not pods:
        report.fail(svc, "spec.selector", "selects no pod template")
    for p in svc.obj["spec"].get("ports") or []:
        target = p.get("targetPort", p.get("port"))
        for ports in (_container_ports(t) for t in pods):
            if target not in (ports if isinstance(target, str) else ports.values()):
                why = f"targetPort {target!r} is not a container port of the selected pods"
                report.fail(svc, f"ports.{p.get('name')}", why)


def _check_service_monitor(mon: Doc, services: list[Doc], report: Report) -> None:
    spec = mon.obj.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    matched = [s for s in services if _matches(selector, _labels(s.obj))]
    if not matched:
        report.fail(mon, "spec.selector", "selects no Service")
    for i, ep in enumerate(spec.get("endpoints") or []):
        for s in matched:
            if ep.get("port") not in {p.get("name") for p in s.obj["spec"].get("ports") or []}:
                why = f"Service {s.name} has no port named \"{ep.get('port')}\""
                report.fail(mon, f"spec.endpoints.{i}.port", why)
        interval = prom_seconds(str(ep.get("interval", "30s")))
        if prom_seconds(str(ep.get("scrapeTimeout", "10s"))) > interval:
            report.fail(mon, f"spec.endpoints.{i}.scrapeTimeout", "is longer than the interval")


def check_references(docs: list[Doc], report: Report) -> None:
    by_kind: dict[str, dict[str, Doc]] = {}
    for d in docs:
        by_kind.setdefault(d.kind, {})[d.name] = d
    templates = _pod_templates(docs)
    for doc, template in templates:
        _check_workload(doc, template, by_kind, report)
    services = list(by_kind.get("Service", {}).values())
    for svc in services:
        _check_service(svc, [t for _, t in templates], report)
    for mon in by_kind.get("ServiceMonitor", {}).values():
        _check_service_monitor(mon, services, report)


# ---------------------------------------------------------------------------
# The node config, checked by the node: kvdepot-node --check-config on the
# ConfigMap's node.yaml with the container's args; then the effective config
# it prints (`key: value` lines) against the container.


def find_node_bin(given: Optional[str]) -> Optional[str]:
    """The kvdepot-node to run, or None (said on stderr) when none was given.

    A binary that was named but is missing is an error (exit 2), so a wrong
    path in CI cannot turn the check off silently."""
    if not given:
        print(NODE_BIN_SKIP, file=sys.stderr)
        return None
    if os.path.isfile(given) and os.access(given, os.X_OK):
        return given
    print(f"validate: KVD_NODE_BIN={given} is not an executable file", file=sys.stderr)
    sys.exit(2)


def _env_value(doc: Doc, env: dict[str, Any]) -> str:
    """A plausible value of one env var of the node container."""
    source = env.get("valueFrom") or {}
    if "secretKeyRef" in source:
        return PLACEHOLDER_TOKEN
    field = (source.get("fieldRef") or {}).get("fieldPath", "")
    return str(env.get("value", FIELD_VALUES.get(field, "placeholder").format(pod=doc.name)))


def node_argv(node_bin: str, doc: Doc, container: dict[str, Any], config: str) -> list[str]:
    """The container's args with $(VAR) expanded, reading `config`, checking only."""
    env = {str(e.get("name")): _env_value(doc, e) for e in container.get("env") or []}
    argv, args = [node_bin, "--config", config], [str(a) for a in container.get("args") or []]
    for i, arg in enumerate(args):  # all but the container's --config PATH
        if arg.partition("=")[0] != "--config" and args[i - 1 : i] != ["--config"]:
            argv.append(_VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), arg))
    return argv + ["--check-config"]


def run_check_config(
    node_bin: str, doc: Doc, container: dict[str, Any], text: str
) -> tuple[Optional[dict[str, str]], str]:
    """(the effective config, "") when the node accepts it, else (None, why)."""
    with tempfile.TemporaryDirectory(prefix="kvdepot-node-config-") as tmp:
        (pathlib.Path(tmp) / NODE_CONFIG_KEY).write_text(text)
        argv = node_argv(node_bin, doc, container, f"{tmp}/{NODE_CONFIG_KEY}")
        try:
            run = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, f"could not run {node_bin}: {e}"
    if run.returncode == 0:
        pairs = (line.partition(":") for line in run.stdout.splitlines() if ":" in line)
        return {key.strip(): value.strip() for key, _, value in pairs}, ""
    lines = [_LOG_PREFIX.sub("", line).replace(f"{tmp}/", "") for line in run.stderr.splitlines()]
    why = "; ".join(line for line in lines if line.strip()) or f"exit status {run.returncode}"
    return None, f"kvdepot-node --check-config: {why}"


def check_node_config(docs: list[Doc], report: Report, node_bin: Optional[str]) -> None:
    cm = next((d for d in docs if d.kind == "ConfigMap" and d.name == NODE_CONFIGMAP), None)
    containers = ((d, c) for d, t in _pod_templates(docs) for c in _containers(t))
    node = next(((d, c) for d, c in containers if c.get("name") == NODE_CONTAINER), None)
    if cm is None or node is None:
        why = f"need ConfigMap {NODE_CONFIGMAP} and a container {NODE_CONTAINER}"
        report.fail("(all files)", "", why)
        return
    text = (cm.obj.get("data") or {}).get(NODE_CONFIG_KEY)
    if not isinstance(text, str):
        report.fail(cm, f"data.{NODE_CONFIG_KEY}", "is missing")
        return
    if node_bin is None:
        return
    doc, container = node
    config, why = run_check_config(node_bin, doc, container, text)
    if config is None and "--set " in why:
        report.fail(doc, f"containers.{NODE_CONTAINER}.args", why)
    elif config is None:
        report.fail(cm, f"data.{NODE_CONFIG_KEY}", why)
    else:
        check_config_vs_container(doc, container, config, report)


def check_config_vs_container(
    doc: Doc, container: dict[str, Any], config: dict[str, str], report: Report
) -> None:
    """The effective config's ports and SSD directory against the container."""
    where = f"containers.{NODE_CONTAINER}"
    ports = {str(p.get("name")): p.get("containerPort") for p in container.get("ports") or []}
    for key, name in PORT_KEYS.items():
        port = config.get(key, "").rpartition(":")[2]
        if port.isdigit() and ports.get(name) != int(port):
            why = f'{key} uses port {port} but container port "{name}" is {ports.get(name)}'
            report.fail(doc, f"{where}.ports", why)
    ssd_dir = config.get("ssd.dir", "").rstrip("/")
    mounts = [str(m.get("mountPath", "")).rstrip("/") for m in container.get("volumeMounts") or []]
    if ssd_dir and not any(ssd_dir == m or ssd_dir.startswith(m + "/") for m in mounts):
        report.fail(doc, f"{where}.volumeMounts", f"ssd.dir {ssd_dir} is not a mounted volume")


def check_directory(
    directory: pathlib.Path, k8s_version: str, node_bin: Optional[str]
) -> tuple[int, list[str]]:
    """(number of documents, errors) for the manifests in `directory`."""
    report = Report()
    docs = load_documents(directory, report)
    check_schemas(docs, directory, k8s_version, report)
    check_kustomization(directory, report)
    # Documents that failed their schema may lack what these walk through.
    for name, check in (
        ("check_references", lambda: check_references(docs, report)),
        ("check_node_config", lambda: check_node_config(docs, report, node_bin)),
    ):
        try:
            check()
        except (KeyError, TypeError, AttributeError) as e:
            report.fail("(all files)", name, f"stopped at malformed input: {e!r}")
    return len(docs), report.errors


# ---------------------------------------------------------------------------
# Self-test: each mutation must be rejected, for the reason named.

Mutation = tuple[str, str, str, str, str]  # what, file, text, replacement, expected in an error

# fmt: off
MUTATIONS: list[Mutation] = [
    ("unknown container field", "statefulset.yaml",
     "imagePullPolicy: IfNotPresent", "imagePullPolicyy: IfNotPresent", "imagePullPolicyy"),
    ("port of the wrong type", "service.yaml",
     "port: 7400", "port: seventy-four-hundred", "seventy-four-hundred"),
    ("replicas as a string", "statefulset.yaml", "replicas: 3", 'replicas: "3"', "replicas"),
    ("unknown kind", "etcd.yaml",
     "kind: StatefulSet", "kind: StatefulSets", "no schema for StatefulSets"),
    ("namespace set", "service.yaml",
     "  name: kvdepot\n", "  name: kvdepot\n  namespace: prod\n", "namespace-agnostic"),
    ("unknown ServiceMonitor field", "servicemonitor.yaml",
     "interval: 15s", "intervall: 15s", "intervall"),
    ("ServiceMonitor path without /", "servicemonitor.yaml",
     "path: /metrics", "path: metrics", "spec.endpoints.0.path"),
    ("Service targetPort names no container port", "service.yaml",
     "targetPort: metrics", "targetPort: metric", "targetPort 'metric'"),
    ("Secret key missing", "statefulset.yaml",
     "key: admin-token", "key: admin_token", 'no key "admin_token"'),
    ("manifest not in kustomization", KUSTOMIZATION,
     "  - servicemonitor.yaml\n", "", "servicemonitor.yaml is not listed"),
]
# Rejected by kvdepot-node --check-config, or by comparing what it prints.
NODE_MUTATIONS: list[Mutation] = [
    ("unknown node config key", "configmap.yaml",
     "heartbeat_ttl: 5s", "heartbeat_tll: 5s", "unknown config key cluster.heartbeat_tll"),
    ("heartbeat_ttl out of range", "configmap.yaml",
     "heartbeat_ttl: 5s", "heartbeat_ttl: 1s", "heartbeat_ttl=1s is not whole seconds in [2s,"),
    ("malformed byte size", "configmap.yaml",
     "capacity: 8GiB", "capacity: 8 gigs", 'host.capacity: value "8 gigs" is not a byte size'),
    ("unknown --set key", "statefulset.yaml",
     "cluster.advertise=$(POD_IP)", "cluster.advertize=$(POD_IP)",
     "--set cluster.advertize=10.0.0.1:7400: unknown config key cluster.advertize"),
    ("metrics port mismatch", "configmap.yaml",
     "listen: 0.0.0.0:9400", "listen: 0.0.0.0:9401", "metrics.listen uses port 9401"),
    ("ssd.dir not on a volume", "configmap.yaml",
     "dir: /var/lib/kvdepot", "dir: /var/lib/kvdepot2", "ssd.dir /var/lib/kvdepot2 is not"),
]
# fmt: on


def rejected(
    base: pathlib.Path, bad: pathlib.Path, m: Mutation, version: str, node_bin: Optional[str]
) -> bool:
    what, name, old, new, expect = m
    shutil.copytree(base, bad)
    text = (bad / name).read_text()
    if old not in text:
        print(f"self-test FAILED: {what}: {name} no longer contains {old!r}", file=sys.stderr)
        return False
    (bad / name).write_text(text.replace(old, new, 1))
    _, errors = check_directory(bad, version, node_bin)
    hit = next((e for e in errors if expect in e), None)
    if hit is None:
        why = f"not rejected for {expect!r}; errors: {errors}"
        print(f"self-test FAILED: {what}: {why}", file=sys.stderr)
        return False
    print(f"  rejected ({what}): {hit}")
    return True


def self_test(directory: pathlib.Path, k8s_version: str, node_bin: Optional[str]) -> int:
    mutations = MUTATIONS + (NODE_MUTATIONS if node_bin else [])
    with tempfile.TemporaryDirectory(prefix="kvdepot-k8s-selftest-") as tmp:
        base = pathlib.Path(tmp) / "clean"
        ignore = shutil.ignore_patterns("*.sh", "*.py", "*.md", "*.txt", "__pycache__")
        shutil.copytree(directory, base, ignore=ignore)
        _, errors = check_directory(base, k8s_version, node_bin)
        if errors:
            head = "self-test FAILED: the unmodified manifests do not validate:"
            print(head, *errors, sep="\n  ", file=sys.stderr)
            return 1
        failed = sum(
            not rejected(base, pathlib.Path(tmp) / f"bad{i}", m, k8s_version, node_bin)
            for i, m in enumerate(mutations)
        )
    if failed:
        why = f"{failed} of {len(mutations)} bad copies were not rejected"
        print(f"self-test: {why}", file=sys.stderr)
        return 1
    skipped = f"; {len(NODE_MUTATIONS)} node config cases skipped ({NODE_BIN_ENV} not set)"
    print(
        f"self-test: clean copy valid, {len(mutations)} of {len(mutations)} bad copies rejected"
        + ("" if node_bin else skipped)
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=pathlib.Path, default=HERE, help="manifest directory")
    parser.add_argument("--k8s-version", default=DEFAULT_K8S_VERSION, help="of the schemas")
    parser.add_argument("--node-bin", default=os.environ.get(NODE_BIN_ENV), help="kvdepot-node")
    parser.add_argument("--self-test", action="store_true", help="reject broken copies")
    args = parser.parse_args()
    bundled = list(
        dict.fromkeys(".".join(v.split(".")[:2]) for v in kubernetes_validate.utils.all_versions())
    )
    if args.k8s_version not in bundled:
        print(
            f"validate.py: no bundled schemas for Kubernetes {args.k8s_version}; "
            f"kubernetes-validate {kubernetes_validate.__version__} has {', '.join(bundled)}",
            file=sys.stderr,
        )
        return 2
    node_bin = find_node_bin(args.node_bin)
    if args.self_test:
        return self_test(args.dir, args.k8s_version, node_bin)
    count, errors = check_directory(args.dir, args.k8s_version, node_bin)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(
            f"k8s manifests: INVALID, {len(errors)} error(s) in {count} documents", file=sys.stderr
        )
        return 1
    node = "node config checked by kvdepot-node" if node_bin else "node config not checked"
    print(
        f"k8s manifests: {count} documents valid (Kubernetes {args.k8s_version} schemas, "
        f"kubernetes-validate {kubernetes_validate.__version__}; {node})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
