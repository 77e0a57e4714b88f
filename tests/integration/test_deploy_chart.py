"""The Helm chart and the alerting rules, checked as CI must (issue 20, item 4).

`helm lint --strict`; `helm template` with the three CI values files (minimal; production with TLS, PostgreSQL,
HPA; everything enabled) piped to `kubernetes-validate --strict` for a current Kubernetes version; `checkov` on
the rendered manifests with zero failed checks outside `charts/oncohabitat/ci/checkov.yaml`'s justified skip list;
`promtool check rules` and `promtool test rules` on the shipped alerts. The tools come from
`scripts/bootstrap.sh` (helm from its PyPI wheel into `.tools/bin`, checkov and kubernetes-validate in
`.tools/venv`, promtool from Debian's `prometheus`): a missing tool fails the test with that message, never skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "oncohabitat"
CI_VALUES = {name: CHART / "ci" / f"{name}-values.yaml" for name in ("minimal", "production", "full")}
KUBERNETES_VERSION = "1.37.0"
SERVICES = ("listener", "orchestrator", "segmentation", "regions", "features", "scoring")
STAGES = ("segmentation", "regions", "features", "scoring")


def _tool(path: Path | str) -> str:
    found = shutil.which(str(path))
    if found is None:
        pytest.fail(f"{path} is missing: run `bash scripts/bootstrap.sh` (it installs the deployment check tools)")
    return found


@pytest.fixture(scope="module")
def helm() -> str:
    return _tool(ROOT / ".tools" / "bin" / "helm")


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, **kwargs)


def _render(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return _run([helm, "template", "oncohabitat", str(CHART), "--namespace", "oncohabitat", *args])


@pytest.fixture(scope="module")
def rendered(helm: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("rendered")
    files = {}
    for name, values in CI_VALUES.items():
        result = _render(helm, "-f", str(values))
        assert result.returncode == 0, f"helm template -f {values.name} failed:\n{result.stderr}"
        files[name] = out / f"{name}.yaml"
        files[name].write_text(result.stdout)
    return files


def _docs(path: Path) -> Iterator[dict[str, Any]]:
    yield from (doc for doc in yaml.safe_load_all(path.read_text()) if doc)


def test_helm_lint_strict(helm: str) -> None:
    for values in CI_VALUES.values():
        result = _run([helm, "lint", "--strict", str(CHART), "-f", str(values)])
        assert result.returncode == 0, f"helm lint --strict -f {values.name}:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("listener.bogus=1", "additional properties 'bogus' not allowed"),
        ("unknownTopLevel=1", "additional properties 'unknownTopLevel' not allowed"),
        ("scoring.replicas=two", "got string, want integer"),
        ("listener.replicas=2", "maximum"),
        ("database.type=mysql", "database/type"),
        ("listener.dicom.service.type=ExternalName", "listener/dicom/service/type"),
        ("features.resources.limits.cpu=lots", "features/resources/limits/cpu"),
    ],
)
def test_schema_rejects_wrong_types_and_unknown_keys(helm: str, setting: str, message: str) -> None:
    flag = "--set-string" if setting.endswith(("=two", "=lots", "=mysql", "=ExternalName")) else "--set"
    result = _render(helm, flag, setting)
    assert result.returncode != 0 and message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["orchestrator.replicas=2"], "needs database.type=postgresql"),
        (["auth.enabled=true"], "auth.enabled needs auth.existingSecret"),
        (["models.source=image"], "models.source=image needs models.image.reference"),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(helm: str, settings: list[str], message: str) -> None:
    result = _render(helm, *[arg for s in settings for arg in ("--set", s)])
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_rendered_manifests_validate_strictly(rendered: dict[str, Path]) -> None:
    validate = _tool(ROOT / ".tools" / "venv" / "bin" / "kubernetes-validate")
    result = _run([validate, "--strict", "--quiet", "-k", KUBERNETES_VERSION, *map(str, rendered.values())])
    errors = [line for line in result.stdout.splitlines() + result.stderr.splitlines() if "ERROR" in line]
    assert result.returncode == 0 and not errors, result.stdout + result.stderr
    # the only kinds without a bundled schema are the Prometheus operator's CRDs (PrometheusRule: promtool below)
    unknown = re.findall(r"Couldn't find schema for kind (\w+)", result.stdout + result.stderr)
    assert set(unknown) <= {"PrometheusRule", "ServiceMonitor"}, unknown


def test_checkov_has_no_failed_checks_outside_the_skip_list(rendered: dict[str, Path], tmp_path: Path) -> None:
    checkov = _tool(ROOT / ".tools" / "venv" / "bin" / "checkov")
    for name, path in rendered.items():
        shutil.copy(path, tmp_path / f"{name}.yaml")
    config = CHART / "ci" / "checkov.yaml"
    result = _run([checkov, "-d", str(tmp_path), "--config-file", str(config), "-o", "json"])
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']})"
        for report in reports
        for check in report.get("results", {}).get("failed_checks", [])
    ]
    summary = [report["summary"] for report in reports]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert all(s["parsing_errors"] == 0 for s in summary) and sum(s["passed"] for s in summary) > 1000, summary
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_deployment_is_hardened_and_probed(rendered: dict[str, Path]) -> None:
    for name, path in rendered.items():
        docs = list(_docs(path))
        deployments = {d["metadata"]["name"].rsplit("-", 1)[-1]: d for d in docs if d["kind"] == "Deployment"}
        assert set(deployments) == set(SERVICES), name
        for svc, deployment in deployments.items():
            pod = deployment["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            assert pod["automountServiceAccountToken"] is False
            (container,) = pod["containers"]
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                exec_probe = container[probe].get("exec", {}).get("command", [])  # tls: health client over mTLS
                assert "grpc" in container[probe] or "oncohabitat.common.health_client" in exec_probe, (
                    name,
                    svc,
                    probe,
                )
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), (name, svc)
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), (name, svc)
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert {"/var/lib/oncohabitat", "/tmp"} <= mounts, (name, svc)
            # the bundles are read by the services that load them; the orchestrator asks scoring for its models
            has_models = any(m["name"] == "models" for m in container["volumeMounts"])
            assert has_models == (svc in ("segmentation", "regions", "scoring")), (name, svc)
        kinds = [d["kind"] for d in docs]
        assert kinds.count("PodDisruptionBudget") == len(SERVICES)
        assert all(d["spec"]["maxUnavailable"] == 1 for d in docs if d["kind"] == "PodDisruptionBudget")
        services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
        for stage in STAGES:
            assert services[f"oncohabitat-{stage}"]["spec"]["clusterIP"] == "None", "stage services are headless"
        policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
        assert policies["oncohabitat-default-deny"]["spec"]["policyTypes"] == ["Ingress", "Egress"]
        dicom_rule = next(
            rule
            for rule in policies["oncohabitat-listener"]["spec"]["ingress"]
            if any(p.get("ipBlock") for p in rule["from"])
        )
        assert all("ipBlock" in peer for peer in dicom_rule["from"]), "DICOM only from the PACS CIDRs"


def test_production_values_wire_tls_postgresql_and_hpa(rendered: dict[str, Path]) -> None:
    docs = list(_docs(rendered["production"]))
    hpas = {d["metadata"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    assert hpas == {f"oncohabitat-{stage}" for stage in STAGES}
    orchestrator = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("orchestrator"))
    (container,) = orchestrator["spec"]["template"]["spec"]["containers"]
    database = next(e for e in container["env"] if e["name"] == "ONCOHABITAT_ORCHESTRATOR_DATABASE_URL")
    assert database["valueFrom"]["secretKeyRef"] == {"name": "oncohabitat-postgresql", "key": "database-url"}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["tls"]["readOnly"] and mounts["auth"]["readOnly"]
    assert not any(d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"].endswith("-jobs") for d in docs)
    scoring = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("scoring"))
    env = {e["name"]: e.get("value") for e in scoring["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ONCOHABITAT_SCORING_REQUIRE_SIGNATURE"] == "true"
    assert env["ONCOHABITAT_SCORING_SIGNATURE_PUBLIC_KEY"].startswith("/etc/oncohabitat/signing/")


def _rule_groups(helm: str) -> str:
    result = _render(
        helm, "--show-only", "templates/prometheusrule.yaml", "--set", "monitoring.prometheusRule.enabled=true"
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_dump(yaml.safe_load(result.stdout)["spec"], sort_keys=False, width=200)


def test_alert_rules_pass_promtool_and_match_the_shipped_rule_file(helm: str, tmp_path: Path) -> None:
    promtool = _tool("promtool")
    rules = tmp_path / "alerts.yaml"
    rules.write_text(_rule_groups(helm))
    shipped = ROOT / "deploy" / "prometheus" / "alerts.yaml"
    for path in (rules, shipped):
        result = _run([promtool, "check", "rules", str(path)])
        assert result.returncode == 0, result.stdout + result.stderr
    body = "\n".join(line for line in shipped.read_text().splitlines() if not line.startswith("#")) + "\n"
    assert yaml.safe_load(body) == yaml.safe_load(rules.read_text()), (
        "deploy/prometheus/alerts.yaml differs from the chart's rules: regenerate it (deploy/README.md)"
    )
    names = {rule["alert"] for group in yaml.safe_load(body)["groups"] for rule in group["rules"]}
    assert {
        "OncoHabitatServiceDown",
        "OncoHabitatJobFailureRatioHigh",
        "OncoHabitatQueueStale",
        "OncoHabitatListenerDiskLow",
        "OncoHabitatAssociationRejectionsSpike",
        "OncoHabitatStageLatencyHigh",
        "OncoHabitatScoreDrift",
    } <= names
    runbook = (ROOT / "docs" / "operations.md").read_text()
    missing = [name for name in sorted(names) if f"### {name}" not in runbook]
    assert not missing, f"docs/operations.md has no section for {missing}"


def test_alert_rules_fire_as_intended(tmp_path: Path) -> None:
    promtool = _tool("promtool")
    tests = ROOT / "deploy" / "prometheus" / "alerts_test.yaml"
    result = _run([promtool, "test", "rules", str(tests)], cwd=tests.parent)
    assert result.returncode == 0, result.stdout + result.stderr


def _exported_metric_names() -> set[str]:
    names = set()
    for path in (ROOT / "services" / "oncohabitat").rglob("*metrics.py"):
        names.update(re.findall(r'"(oncohabitat_[a-z0-9_]+)"', path.read_text()))
    return names


def test_alerts_and_dashboard_use_only_exported_metrics() -> None:
    exported = _exported_metric_names()
    # counters gain _total; histograms are read through _bucket/_sum/_count
    known = (
        exported | {f"{n}_total" for n in exported} | {f"{n}_{s}" for n in exported for s in ("bucket", "sum", "count")}
    )
    dashboard = (CHART / "files" / "dashboard.json").read_text()
    json.loads(dashboard)
    alerts = (CHART / "files" / "alerts.yaml").read_text()
    used = set(re.findall(r"\b(oncohabitat_[a-z0-9_]+)", dashboard + alerts))
    assert used, "no metric referenced"
    assert used <= known, f"not exported by any service: {sorted(used - known)}"
