"""deploy/: every Kubernetes manifest validated offline against the Kubernetes OpenAPI
schemas bundled in PyPI `kubernetes-validate` (strict: unknown fields fail) for a pinned
Kubernetes version and the newest it has; the KServe resources (CRDs, no schema there)
against tests/deploy/kserve_schema.json, a strict JSON schema written for the fields used
whose containers, resources and metadata point to the real Kubernetes definitions;
deploy/compose.yaml against the Compose specification's schema (vendored by PyPI
check-jsonschema). Then what no schema knows: probe paths are routes of the app, ConfigMap
keys are Settings fields, ports agree, resources, non-root, read-only root filesystem,
graceful-shutdown timings, the GPU variant, the kustomizations."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

from poolops_service.config import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.31"  # pinned; also checked against the newest bundled schemas
MANIFESTS = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")
KSERVE = {"InferenceService", "ServingRuntime"}


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def resources_of(kind: str | None = None) -> list[tuple[Path, dict]]:
    return [(p, d) for p in MANIFESTS for d in docs(p) if kind is None or d["kind"] == kind]


def by_name(kind: str, name: str) -> dict:
    found = [d for _, d in resources_of(kind) if d["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, found)
    return found[0]


@pytest.fixture(scope="module")
def app_paths(tmp_path_factory) -> set[str]:
    from poolops_service.app import create_app

    app = create_app(Settings(models_dir=tmp_path_factory.mktemp("zoo"), build_missing=False, ui=False))
    return set(app.openapi()["paths"])


def settings_env() -> set[str]:
    return {f"POOLOPS_{name.upper()}" for name in Settings.model_fields}


def workloads() -> list[tuple[Path, dict]]:
    return resources_of("Deployment")


def test_every_manifest_is_listed():
    assert MANIFESTS, "no manifests"
    kinds = sorted(d["kind"] for _, d in resources_of())
    assert kinds == sorted(["ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                            "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
                            "ServingRuntime", "InferenceService"]), kinds


@pytest.mark.parametrize("version", [KUBERNETES_VERSION, kubernetes_validate.latest_version()])
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_kubernetes_schema(path, version):
    """Strict validation with the schemas in the package: no network involved."""
    for d in docs(path):
        if d["kind"] in KSERVE:
            continue
        try:
            kubernetes_validate.validate(d, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{path.name} {d['kind']}/{d['metadata']['name']} against {version}: "
                        f"{'.'.join(map(str, e.path))}: {e.message}")


def _kserve_validator(version: str = KUBERNETES_VERSION) -> jsonschema.Draft202012Validator:
    """The KServe schema, with its $refs into the Kubernetes definitions (strict) that
    kubernetes-validate bundles for the pinned version."""
    defs_file = (resources.files("kubernetes_validate") / "kubernetes-json-schema"
                 / f"v{version}.0-local-strict" / "_definitions.json")
    defs = json.loads(defs_file.read_text())
    schema = json.loads((Path(__file__).parent / "kserve_schema.json").read_text())
    registry = Registry().with_resources([(defs["$id"], Resource.from_contents(defs))])
    return jsonschema.Draft202012Validator(schema, registry=registry)


@pytest.mark.parametrize("kind", sorted(KSERVE))
def test_kserve_schema(kind):
    validator = _kserve_validator()
    (path, d), = resources_of(kind)
    errors = sorted(validator.iter_errors(d), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{path.name}: {'.'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_kserve_schema_is_strict():
    """The schema rejects what KServe would: a misspelt field, an unknown protocol, a bad container."""
    validator = _kserve_validator()
    isvc = by_name("InferenceService", "poolops")
    bad = json.loads(json.dumps(isvc))
    bad["spec"]["predictor"]["model"]["protocolVersion"] = "v3"
    assert not validator.is_valid(bad)
    bad = json.loads(json.dumps(isvc))
    bad["spec"]["predictor"]["minReplica"] = 1
    assert not validator.is_valid(bad)
    rt = json.loads(json.dumps(by_name("ServingRuntime", "poolops")))
    rt["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/x"
    assert not validator.is_valid(rt)


def test_kserve_runtime_and_service_agree(app_paths):
    rt, isvc = by_name("ServingRuntime", "poolops"), by_name("InferenceService", "poolops")
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == rt["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in rt["spec"]["supportedModelFormats"]}
    assert model["protocolVersion"] == "v2" and "v2" in rt["spec"]["protocolVersions"]
    (c,) = rt["spec"]["containers"]
    assert c["name"] == "kserve-container"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert set(k for k in env if k.startswith("POOLOPS_")) <= settings_env()
    assert int(env["POOLOPS_PORT"]) == c["ports"][0]["containerPort"]
    for probe in ("readinessProbe", "livenessProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] in app_paths and get["path"].startswith("/v2/"), get
        assert get["port"] == c["ports"][0]["containerPort"]
    assert {"/v2/models/{name}/infer", "/v2/health/ready", "/v2/health/live"} <= app_paths
    assert c["resources"]["limits"] and c["resources"]["requests"]
    assert c["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("path,dep", workloads(), ids=lambda x: x.name if isinstance(x, Path) else x["metadata"]["name"])
def test_deployment(path, dep, app_paths):
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    # settings from a ConfigMap whose keys are all real Settings fields
    (ref,) = c["envFrom"]
    cm = by_name("ConfigMap", ref["configMapRef"]["name"])
    assert set(cm["data"]) <= settings_env(), set(cm["data"]) - settings_env()
    # and each value parses as that field, read from the environment as the pod reads it
    with pytest.MonkeyPatch.context() as mp:
        for key, value in cm["data"].items():
            mp.setenv(key, value)
        s = Settings()
    for key in cm["data"]:
        assert getattr(s, key.removeprefix("POOLOPS_").lower()) is not None, key
    assert cm["data"]["POOLOPS_HOST"] == "0.0.0.0" and cm["data"]["POOLOPS_BUILD_MISSING"] == "false"
    # the ports (HTTP, gRPC): ConfigMap, container, probes, the Service, the Dockerfile's EXPOSE
    port, grpc = c["ports"]
    assert port["name"] == "http" and grpc["name"] == "grpc"
    assert int(cm["data"]["POOLOPS_PORT"]) == port["containerPort"] == 8000
    assert int(cm["data"]["POOLOPS_GRPC_PORT"]) == grpc["containerPort"] == 8001
    assert re.search(r"^EXPOSE 8000$", (ROOT / "Dockerfile").read_text(), re.M)
    assert re.search(r"^EXPOSE 8001$", (ROOT / "Dockerfile").read_text(), re.M)
    (svc,) = [d for _, d in resources_of("Service") if d["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]]
    assert svc["spec"]["ports"][0]["targetPort"] in (port["name"], port["containerPort"])
    assert svc["spec"]["ports"][1]["targetPort"] in (grpc["name"], grpc["containerPort"])
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    # probes: liveness and startup on /healthz, readiness on /readyz, all real routes
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] in app_paths, get
        assert get["port"] in (port["name"], port["containerPort"])
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # start-up can take a minute or two
    # resources
    for k in ("cpu", "memory"):
        assert k in c["resources"]["requests"] and k in c["resources"]["limits"], k
    # non-root, read-only root filesystem, and a writable /tmp for Gradio and TMPDIR
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 10001
    assert re.search(r"^USER 10001:10001$", (ROOT / "Dockerfile").read_text(), re.M)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["TMPDIR"] == "/tmp" and cm["data"]["POOLOPS_GRADIO_TEMP_DIR"].startswith("/tmp/")
    # graceful shutdown: endpoints drain during preStop, then SIGTERM, then the grace
    pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert spec["terminationGracePeriodSeconds"] > int(pre_stop[1]) + float(cm["data"]["POOLOPS_SHUTDOWN_GRACE_S"])


def test_gpu_variant():
    dep = by_name("Deployment", "poolops-gpu")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["image"].endswith(":cuda")
    cm = by_name("ConfigMap", c["envFrom"][0]["configMapRef"]["name"])
    assert cm["data"]["POOLOPS_DEVICE"] == "cuda"
    assert by_name("ConfigMap", "poolops")["data"]["POOLOPS_DEVICE"] == "cpu"
    cpu = by_name("Deployment", "poolops")
    assert cpu["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":cpu")
    # the two variants' selectors do not overlap (Services, PDBs)
    assert dep["spec"]["selector"] != cpu["spec"]["selector"]


def test_hpa_and_pdb():
    hpa = by_name("HorizontalPodAutoscaler", "poolops")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "poolops"}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    for name in ("poolops", "poolops-gpu"):
        pdb, dep = by_name("PodDisruptionBudget", name), by_name("Deployment", name)
        assert pdb["spec"]["selector"] == dep["spec"]["selector"]


@pytest.mark.parametrize("kdir", [K8S, K8S / "gpu"], ids=["cpu", "gpu"])
def test_kustomization(kdir):
    """What kustomize would read: listed files exist, every manifest of the folder is
    listed, and the `images:` entry names the image the Deployment uses."""
    k = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    assert k["kind"] == "Kustomization" and k["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    here = {p.name for p in kdir.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(k["resources"]) == here
    (image,) = k["images"]
    deps = [d for r in k["resources"] for d in docs(kdir / r) if d["kind"] == "Deployment"]
    (dep,) = deps
    used = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    assert used.split(":")[0] == image["name"] and used.split(":")[1] == image["newTag"]


def test_compose(tmp_path):
    """deploy/compose.yaml against the Compose specification (the schema check-jsonschema
    vendors), and against the Dockerfile and Settings."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    schema = json.loads((resources.files("check_jsonschema") / "builtin_schemas" / "vendor"
                         / "compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = list(validator.iter_errors(compose))
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.M))
    args = set(re.findall(r"^ARG (\w+)", dockerfile, re.M))
    assert set(compose["services"]) == {"cpu", "gpu"}
    for name, svc in compose["services"].items():
        assert svc["build"]["target"] == {"cpu": "cpu", "gpu": "cuda"}[name] and svc["build"]["target"] in stages
        assert set(svc["build"]["args"]) <= args
        assert (ROOT / "deploy" / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"
        env = svc["environment"]
        assert {k for k in env if k.startswith("POOLOPS_")} <= settings_env()
        assert svc["ports"][0].endswith(":" + str(env["POOLOPS_PORT"]))
        assert svc["ports"][1].split()[0].endswith(":" + str(env["POOLOPS_GRPC_PORT"]))
        assert svc["read_only"] is True and "/tmp" in svc["tmpfs"]
    gpu = compose["services"]["gpu"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["environment"]["POOLOPS_DEVICE"] == "cuda"


def test_kubernetes_schema_is_strict():
    """The bundled schemas reject a misspelt field and a wrong type (so passing means something)."""
    dep = json.loads(json.dumps(by_name("Deployment", "poolops")))
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, KUBERNETES_VERSION, strict=True)
    dep = json.loads(json.dumps(by_name("Deployment", "poolops")))
    dep["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, KUBERNETES_VERSION, strict=True)


def test_deploy_doc():
    """docs/deploy.md names files that exist and the Dockerfile's real targets and
    base-image arguments; the README links to it."""
    assert "(docs/deploy.md)" in (ROOT / "README.md").read_text()
    section = (ROOT / "docs" / "deploy.md").read_text()
    for path in set(re.findall(r"\b((?:deploy|tests/deploy)/[\w./-]*\w)", section)):
        assert (ROOT / path).exists(), path
    dockerfile = (ROOT / "Dockerfile").read_text()
    for target in re.findall(r"--target (\w+)", section):
        assert re.search(rf"^FROM \S+ AS {target}$", dockerfile, re.M), target
    for arg, value in re.findall(r"\b([A-Z_]*BASE_IMAGE)=(\S+)", section):
        if arg != "BASE_IMAGE" or value == "python:3.11-slim":
            assert f"ARG {arg}=" in dockerfile, arg
    cuda_base = re.search(r"^ARG CUDA_BASE_IMAGE=(\S+)$", dockerfile, re.M).group(1)
    assert cuda_base in section
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    assert compose["services"]["gpu"]["build"]["args"]["CUDA_BASE_IMAGE"] == cuda_base
