"""Deployment checks without a Docker engine: the compose files, Prometheus and Grafana
configuration and the Dockerfile are checked statically against each other and against the
code (ports, extras, metric names), and the container entrypoint runs as a plain process.

- docker-compose.yml (+ docker-compose.cpu.yml) is loaded and merged the way Compose does for
  what these files use (``<<`` anchors, ``!reset``, ``${VAR:-default}``); ``docker compose
  config`` is used as well when the Compose plugin is installed;
- Prometheus: ``promtool check config`` / ``check rules`` / ``test rules`` (unit tests in
  tests/deploy/prometheus_rules_test.yml), skipped where promtool is absent;
- Grafana: every query of the dashboard names recording rules or metrics that exist;
- Dockerfile: extras (deploy/service-extra.sh run as a plain process for every framework and
  accelerator, and what uv.lock installs for each), non-root user, HEALTHCHECK, exec'd
  entrypoint;
- deploy/entrypoint.sh: stale metric files wiped, model pulled and checked, command exec'd
  (same PID), and once for real: gunicorn serving a stand-in ONNX model until the image's
  HEALTHCHECK passes, then stopped by SIGTERM.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.runtimes import ACCELERATORS, base_runtimes

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_GPU = (ROOT / "docker-compose.yml",)
COMPOSE_CPU = (ROOT / "docker-compose.yml", ROOT / "docker-compose.cpu.yml")
VARIANTS = {"gpu": COMPOSE_GPU, "cpu": COMPOSE_CPU}
ENTRYPOINT = DEPLOY / "entrypoint.sh"
SERVICE_EXTRA = DEPLOY / "service-extra.sh"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULE_FILES = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
RULE_TESTS = Path(__file__).with_name("prometheus_rules_test.yml")
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources"
DASHBOARD_PROVIDERS = DEPLOY / "grafana" / "provisioning" / "dashboards"

FRAMEWORK_PORTS = {r.name: r.port for r in base_runtimes().values()}
ARTIFACTS = {r.name: r.artifact for r in base_runtimes().values()}
"""The artifact directory each runtime's service serves (ONNX Runtime and OpenVINO: onnx)."""
FRAMEWORKS = tuple(FRAMEWORK_PORTS)
PROXIES = tuple(f"{framework}-proxy" for framework in FRAMEWORKS)
MONITORING = ("prometheus", "grafana")
LOADTEST = ("locust-master", "locust-worker")
NON_ROOT_UID = 10001


# ---------------------------------------------------------------------------- compose loading


class Reset:
    """Compose's ``!reset`` tag: the key is removed from the merged model."""


@dataclass
class Override:
    """Compose's ``!override`` tag: the value replaces, rather than merges with, the base."""

    value: Any


class ComposeLoader(yaml.SafeLoader):
    """A safe YAML loader that knows Compose's merge tags."""


ComposeLoader.add_constructor("!reset", lambda loader, node: Reset())
ComposeLoader.add_constructor(
    "!override",
    lambda loader, node: Override(
        loader.construct_sequence(node, deep=True)
        if isinstance(node, yaml.SequenceNode)
        else loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_scalar(node)
    ),
)


#: Sequences an override file replaces; Compose appends to (or unions) the others.
REPLACED_SEQUENCES = {"command", "entrypoint", "test"}


def _merge(base: Any, override: Any, key: str = "") -> Any:
    """Merge one Compose file into the model so far, as Compose does: mappings key by key,
    ``!reset`` removes, ``!override`` replaces, most sequences are appended to (so an
    override cannot drop a GPU reservation by writing ``devices: []``), scalars replace."""
    if isinstance(override, Override):
        return copy.deepcopy(override.value)
    if isinstance(override, dict):
        merged = dict(base) if isinstance(base, dict) else {}
        for name, value in override.items():
            if isinstance(value, Reset):
                merged.pop(name, None)
            else:
                merged[name] = _merge(merged.get(name), value, name)
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in REPLACED_SEQUENCES:
        return copy.deepcopy(base) + [item for item in override if item not in base]
    return copy.deepcopy(override)


_INTERPOLATION = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def _interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Substitute ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}`` and ``$$``
    like Compose (``${VAR:?message}`` raises)."""
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op and op.endswith("?") and unset:
            raise ValueError(f"required variable {name}: {arg}")
        if op and op.endswith("-") and unset:
            return arg
        return current or ""

    return _INTERPOLATION.sub(substitute, value)


def load_compose(files: tuple[Path, ...], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The Compose model of ``files`` (later files override earlier ones), interpolated with
    ``env`` (default: nothing set, so every ``${VAR:-default}`` takes its default)."""
    model: dict[str, Any] = {}
    for path in files:
        model = _merge(model, yaml.load(path.read_text(), Loader=ComposeLoader))
    return _interpolate(model, env or {})


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    """``(name, compose model)`` for the GPU and the CPU variant."""
    return request.param, load_compose(VARIANTS[request.param])


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The GPU (default) Compose model."""
    return load_compose(COMPOSE_GPU)


def gpu_devices(service: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The device reservations of a service (empty when it reserves none)."""
    resources = (service.get("deploy") or {}).get("resources") or {}
    return list((resources.get("reservations") or {}).get("devices") or [])


# ------------------------------------------------------------------------------- compose


def test_compose_defines_the_stack(compose: dict[str, Any]) -> None:
    """Model services keep the framework names (Prometheus, Locust and terraform address
    them so); only Locust sits behind the loadtest profile."""
    services = compose["services"]
    assert set(services) == {*FRAMEWORKS, *PROXIES, *MONITORING, *LOADTEST}
    for name, service in services.items():
        expected = ["loadtest"] if name in LOADTEST else None
        assert service.get("profiles") == expected, name


def test_every_long_running_service_has_a_healthcheck(
    variant: tuple[str, dict[str, Any]],
) -> None:
    """Every service runs until stopped, so each needs a healthcheck (depends_on waits on it)."""
    _, model = variant
    for name, service in model["services"].items():
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"{name}: no healthcheck"
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in check, f"{name}: healthcheck without {key}"


def test_gpu_reserved_only_in_the_gpu_variant(variant: tuple[str, dict[str, Any]]) -> None:
    """GPU: each model service reserves one NVIDIA GPU and builds its runtime's GPU variant;
    CPU: none does, and the images are built with the CPU variants on python:3.11-slim under
    their own tags (a CPU build never clobbers a GPU one)."""
    name, model = variant
    services = model["services"]
    for framework in FRAMEWORKS:
        service = services[framework]
        devices = gpu_devices(service)
        if name == "gpu":
            assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
            # No BASE_IMAGE: the Dockerfile's CUDA default.
            assert "BASE_IMAGE" not in service["build"].get("args", {})
            assert service["image"].endswith(":gpu")
        else:
            assert devices == []
            assert service["build"]["args"]["BASE_IMAGE"].startswith("python:3.11-slim")
            assert service["image"] == f"versus-{framework}:cpu"
        assert service["build"]["args"]["FRAMEWORK"] == framework
        assert service["build"]["args"]["ACCELERATOR"] == name
        assert service["build"]["target"] == "service"
    for other in (*PROXIES, *MONITORING, *LOADTEST):
        assert gpu_devices(services[other]) == [], other


def test_model_services_differ_only_by_framework(compose: dict[str, Any]) -> None:
    """The four services are one definition (the x-service anchors): only the framework,
    its port, model path, image and model URI differ."""

    def neutral(framework: str) -> dict[str, Any]:
        service = copy.deepcopy(compose["services"][framework])
        port = str(FRAMEWORK_PORTS[framework])
        assert "ports" not in service  # published by its proxy only
        assert service.pop("expose") == [port]
        assert service.pop("image") == f"versus-{framework}:gpu"
        assert service["build"]["args"].pop("FRAMEWORK") == framework
        env = service["environment"]
        assert env.pop("VERSUS_PORT") == port
        assert env.pop("VERSUS_MODEL_DIR") == f"/models/dr/{ARTIFACTS[framework]}/1"
        assert env.pop("VERSUS_MODEL_URI") == ""  # VERSUS_<FRAMEWORK>_MODEL_URI unset
        assert env.pop("VERSUS_UNAVAILABLE_FILE") == f"/run/versus/{framework}.unavailable"
        return service

    reference = neutral(FRAMEWORKS[0])
    for framework in FRAMEWORKS[1:]:
        assert neutral(framework) == reference, framework


def test_model_choice_and_uris_come_from_the_environment() -> None:
    """VERSUS_DATASET / VERSUS_MODEL_VERSION pick the artifact for all four services alike;
    VERSUS_<FRAMEWORK>_MODEL_URI reaches only its own service."""
    env = {"VERSUS_DATASET": "bloodmnist", "VERSUS_MODEL_VERSION": "7",
           "VERSUS_JAX_MODEL_URI": "s3://bucket/models/bloodmnist/jax/7"}
    services = load_compose(COMPOSE_GPU, env)["services"]
    for framework in FRAMEWORKS:
        service_env = services[framework]["environment"]
        assert service_env["VERSUS_MODEL_DIR"] == f"/models/bloodmnist/{ARTIFACTS[framework]}/7"
        expected_uri = env["VERSUS_JAX_MODEL_URI"] if framework == "jax" else ""
        assert service_env["VERSUS_MODEL_URI"] == expected_uri


def test_passed_through_knobs_are_real_settings(compose: dict[str, Any]) -> None:
    """Every VERSUS_* variable given to the services is a field of services/settings.py (a
    typo would be silently ignored by the service), except the model URI, which the
    entrypoint consumes, and the unavailable file, which gunicorn's hooks write."""
    from services.settings import ServerSettings, ServiceSettings

    fields = {f"VERSUS_{f.name.upper()}" for cls in (ServiceSettings, ServerSettings)
              for f in dataclasses.fields(cls)}
    for framework in FRAMEWORKS:
        env = compose["services"][framework]["environment"]
        names = {name for name in env if name.startswith("VERSUS_")}
        assert names - fields == {"VERSUS_MODEL_URI", "VERSUS_UNAVAILABLE_FILE"}, framework
        assert {"VERSUS_MAX_BATCH_SIZE", "VERSUS_WORKERS", "VERSUS_INTRA_OP_THREADS"} <= names


def test_models_are_mounted_read_only(compose: dict[str, Any]) -> None:
    """./models is mounted read-only at /models and every VERSUS_MODEL_DIR lies inside it."""
    for framework in FRAMEWORKS:
        service = compose["services"][framework]
        assert "./models:/models:ro" in service["volumes"]
        assert service["environment"]["VERSUS_MODEL_DIR"].startswith("/models/")


def test_metrics_directory_is_a_tmpfs(compose: dict[str, Any]) -> None:
    """PROMETHEUS_MULTIPROC_DIR is a tmpfs: fresh at every start, never on the image layer."""
    for framework in FRAMEWORKS:
        service = compose["services"][framework]
        assert service["environment"]["PROMETHEUS_MULTIPROC_DIR"] in service["tmpfs"]


def test_services_run_hardened_and_stop_gracefully(compose: dict[str, Any]) -> None:
    """No capabilities, no privilege escalation; model services get more stop time than
    gunicorn's graceful timeout (30 s) and an init process."""
    for name, service in compose["services"].items():
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert not service.get("privileged"), name
    for framework in FRAMEWORKS:
        service = compose["services"][framework]
        assert service["init"] is True
        assert int(service["stop_grace_period"].removesuffix("s")) > 30


def test_depends_on_waits_for_healthy_services(compose: dict[str, Any]) -> None:
    """Every dependency waits for health (long syntax), except a proxy on its own service
    (it answers 503 + Retry-After while the model loads); Locust waits for the four proxies
    (healthy = the model behind it is ready); Prometheus depends on none of them (it must see
    a service that is down, and `up -d onnx prometheus` must not start the others)."""
    services = compose["services"]
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: short depends_on syntax has no condition"
        for dependency, spec in depends_on.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if name in PROXIES:
                # A proxy starts with its service and answers 503 + Retry-After meanwhile.
                assert spec == {"condition": "service_started", "restart": True}, name
                continue
            assert spec["condition"] == "service_healthy", f"{name} -> {dependency}"
            assert services[dependency].get("healthcheck"), f"{dependency} has no healthcheck"
    assert set(services["locust-master"]["depends_on"]) == set(PROXIES)
    assert set(services["locust-worker"]["depends_on"]) == {"locust-master"}
    assert set(services["grafana"]["depends_on"]) == {"prometheus"}
    assert "depends_on" not in services["prometheus"]
    for framework in FRAMEWORKS:
        assert "depends_on" not in services[framework]
        assert set(services[f"{framework}-proxy"]["depends_on"]) == {framework}


def test_locust_targets_every_service(compose: dict[str, Any]) -> None:
    """Locust reaches each service the way clients do, through its proxy at the runtime's
    port; no --host (it would overwrite the per-User-class hosts of loadtest/)."""
    for name in LOADTEST:
        service = compose["services"][name]
        for framework, port in FRAMEWORK_PORTS.items():
            url = service["environment"][f"VERSUS_{framework.upper()}_URL"]
            assert url == f"http://{framework}-proxy:{port}"
        command = service["command"]
        assert command[:2] == ["-f", "loadtest/"]
        assert "--host" not in command and "-H" not in command
        assert service["build"]["target"] == "locust"
    assert "--master" in compose["services"]["locust-master"]["command"]
    worker = compose["services"]["locust-worker"]["command"]
    assert worker[worker.index("--master-host") + 1] == "locust-master"


# --------------------------------------------------------------------------------- proxies
# (the proxy itself, a real nginx in front of a real gunicorn: tests/deploy/test_proxy.py)


def test_only_the_proxies_publish_the_service_ports(variant: tuple[str, dict[str, Any]]) -> None:
    """Each proxy publishes its runtime's port and forwards to its service on the compose
    network; no model service publishes a port (gunicorn is never reachable from outside)."""
    _, model = variant
    services = model["services"]
    published = {name: service["ports"] for name, service in services.items()
                 if "ports" in service}
    for framework, port in FRAMEWORK_PORTS.items():
        proxy = services[f"{framework}-proxy"]
        assert published.pop(f"{framework}-proxy") == [f"{port}:{port}"]
        assert proxy["environment"]["VERSUS_PROXY_LISTEN"] == str(port)
        assert proxy["environment"]["VERSUS_PROXY_UPSTREAM"] == f"{framework}:{port}"
        assert services[framework]["environment"]["VERSUS_PORT"] == str(port)
    assert set(published) == {"prometheus", "grafana", "locust-master"}


def test_proxy_learns_from_its_service_when_no_worker_is_ready(compose: dict[str, Any]
                                                            ) -> None:
    """Service and proxy name the same file on one shared volume, which the service (uid
    10001) writes and the proxy only reads; the volume is a tmpfs, fresh at every start."""
    services = compose["services"]
    for framework in FRAMEWORKS:
        service, proxy = services[framework], services[f"{framework}-proxy"]
        path = service["environment"]["VERSUS_UNAVAILABLE_FILE"]
        assert proxy["environment"]["VERSUS_PROXY_UNAVAILABLE_FILE"] == path
        directory = str(Path(path).parent)
        assert f"versus-run:{directory}" in service["volumes"]
        assert f"versus-run:{directory}:ro" in proxy["volumes"]
    options = compose["volumes"]["versus-run"]["driver_opts"]
    assert options["type"] == "tmpfs"
    assert f"uid={NON_ROOT_UID}" in options["o"].split(",")


def test_proxy_and_service_share_one_body_limit() -> None:
    """The proxy refuses exactly what the service would: one VERSUS_MAX_BODY_BYTES, the
    services' default unless set, reaches both."""
    from services.settings import ServiceSettings

    default = ServiceSettings().max_body_bytes
    for env, expected in (({}, default), ({"VERSUS_MAX_BODY_BYTES": "1048576"}, 1048576)):
        services = load_compose(COMPOSE_GPU, env)["services"]
        for framework in FRAMEWORKS:
            for name in (framework, f"{framework}-proxy"):
                assert int(services[name]["environment"]["VERSUS_MAX_BODY_BYTES"]) == expected


def test_proxy_runs_the_image_template_unprivileged(compose: dict[str, Any]) -> None:
    """The official image renders deploy/nginx/templates/*.template (only VERSUS_* names)
    into /etc/nginx/conf.d, a tmpfs the nginx user (uid 101) may write; nginx runs as that
    uid with the rendered file as its whole configuration and a tmpfs prefix."""
    for proxy in PROXIES:
        service = compose["services"][proxy]
        assert service["image"].startswith("nginx:")
        assert service["user"] == "101:101"
        assert "./deploy/nginx/templates:/etc/nginx/templates:ro" in service["volumes"]
        assert service["environment"]["NGINX_ENVSUBST_FILTER"] == "^VERSUS_"
        command = service["command"]
        assert command[0] == "nginx"  # the image's entrypoint renders templates only then
        prefix, config = command[command.index("-p") + 1], command[command.index("-c") + 1]
        assert {"/etc/nginx/conf.d:uid=101,gid=101", f"{prefix.rstrip('/')}:uid=101,gid=101"
                } <= set(service["tmpfs"])
        templates = sorted((DEPLOY / "nginx" / "templates").glob("*.template"))
        assert [f"/etc/nginx/conf.d/{t.name.removesuffix('.template')}" for t in templates
                ] == [config]
        assert command[command.index("-g") + 1] == "daemon off;"
        assert command[command.index("-e") + 1] == "stderr"


def test_proxy_config_as_compose_renders_it_passes_nginx_t(
    compose: dict[str, Any], tmp_path: Path,
) -> None:
    """`nginx -t` accepts the template rendered with each proxy's compose environment (the
    upstream's compose host name swapped for loopback: nginx -t resolves it)."""
    from bench.robustness.proxy import check_config, nginx_binary, render

    if nginx_binary() is None:
        pytest.skip("nginx not installed (Debian: apt-get install nginx; .ci/run does)")
    for framework, port in FRAMEWORK_PORTS.items():
        env = dict(compose["services"][f"{framework}-proxy"]["environment"])
        assert env.pop("VERSUS_PROXY_UPSTREAM") == f"{framework}:{port}"
        env["VERSUS_PROXY_UPSTREAM"] = f"127.0.0.1:{port}"
        text = render(env)
        assert "${VERSUS_" not in text and f"listen {port} " in text
        config = tmp_path / f"{framework}.conf"
        config.write_text(text)
        result = check_config(config, tmp_path)
        assert result.returncode == 0, result.stderr
        assert "test is successful" in result.stderr


def _run_grafana_entrypoint(compose: dict[str, Any], password: str) -> str:
    """Grafana's compose entrypoint with /run.sh replaced by printing the admin password."""
    service = compose["services"]["grafana"]
    shell, flag, script, *args = service["entrypoint"]
    assert shell == "/bin/sh" and flag == "-c" and "exec /run.sh" in script
    script = script.replace("exec /run.sh", "exec printenv GF_SECURITY_ADMIN_PASSWORD")
    env = {"PATH": os.environ["PATH"],
           "GF_SECURITY_ADMIN_PASSWORD": service["environment"]["GF_SECURITY_ADMIN_PASSWORD"]}
    if password:
        env["GF_SECURITY_ADMIN_PASSWORD"] = password
    result = subprocess.run(["sh", "-c", script, *args], env=env, capture_output=True,
                            text=True, check=True, timeout=30)
    return result.stdout.strip()


def test_grafana_admin_password_is_never_a_default(compose: dict[str, Any]) -> None:
    """GRAFANA_ADMIN_PASSWORD is used when set; unset, the admin password is random (never
    admin/admin on a published port); anonymous visitors are read-only viewers."""
    env = compose["services"]["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == ""  # GRAFANA_ADMIN_PASSWORD unset
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    first, second = (_run_grafana_entrypoint(compose, "") for _ in range(2))
    assert len(first) >= 24 and first != second and "admin" not in (first, second)
    given = load_compose(COMPOSE_GPU, {"GRAFANA_ADMIN_PASSWORD": "s3cret-from-env"})
    assert _run_grafana_entrypoint(given, "s3cret-from-env") == "s3cret-from-env"


def test_mounted_configuration_exists(compose: dict[str, Any]) -> None:
    """Every bind-mounted repository path exists (./models excepted: it is created by
    training or an S3 pull), and Grafana's home dashboard is one of the mounted files."""
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./") and source != "./models":
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
    grafana = compose["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    home = Path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    source = {target: src for src, target in mounts.items()}[str(home.parent)]
    assert (ROOT / source / home.name).is_file()
    providers = yaml.safe_load((DASHBOARD_PROVIDERS / "versus.yml").read_text())["providers"]
    assert {p["options"]["path"] for p in providers} <= set(mounts.values())


def _docker_compose_available() -> bool:
    """True when `docker compose` (the v2 plugin) runs here; no engine is needed for config."""
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return result.returncode == 0


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_docker_compose_config_accepts_the_files(name: str, tmp_path: Path) -> None:
    """`docker compose config` validates the files against the Compose schema and merges
    them itself (!reset included); its result must agree with ours on the GPU reservations."""
    if not _docker_compose_available():
        pytest.skip("`docker compose` (Compose v2 plugin) not installed")
    args = ["docker", "compose", "--profile", "loadtest"]
    for path in VARIANTS[name]:
        args += ["-f", str(path)]
    result = subprocess.run([*args, "config", "--format", "json"], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == {*FRAMEWORKS, *PROXIES, *MONITORING, *LOADTEST}
    for framework in FRAMEWORKS:
        assert bool(gpu_devices(services[framework])) == (name == "gpu"), framework


# ---------------------------------------------------------------------------- prometheus


def _promtool() -> str:
    """Path of promtool, or skip (Debian: `apt-get install prometheus`)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not found on PATH (Debian/Ubuntu: apt-get install prometheus)")
    return path


def test_promtool_checks_the_config_and_its_rules() -> None:
    """`promtool check config` also loads rule_files (relative to the config, as in the
    container): both rule files must be found."""
    result = subprocess.run([_promtool(), "check", "config", str(PROMETHEUS_CONFIG)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout + result.stderr


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([_promtool(), "check", "rules", *map(str, RULE_FILES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests() -> None:
    """Recording rules compute the right numbers (route filter, 0 error ratio without 5xx)
    and alerts fire when, and only when, they should."""
    result = subprocess.run([_promtool(), "test", "rules", str(RULE_TESTS)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_every_service_and_itself(compose: dict[str, Any]) -> None:
    """The versus job's targets are exactly the compose services (gunicorn, not its proxy)
    at their framework ports;
    the rule files sit where the compose mounts put them."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "versus"}
    assert [t for c in jobs["prometheus"]["static_configs"] for t in c["targets"]] == [
        "localhost:9090"
    ]
    targets = {}
    for static in jobs["versus"]["static_configs"]:
        for target in static["targets"]:
            host, port = target.rsplit(":", 1)
            assert static["labels"]["service"] == host
            assert "framework" not in static["labels"]  # would rename the samples' own label
            targets[host] = int(port)
    assert targets == FRAMEWORK_PORTS
    for host, port in targets.items():
        # gunicorn itself, on the compose network (its proxy publishes the port).
        assert compose["services"][host]["expose"] == [str(port)]

    mounts = dict(v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"])
    config_target = Path(mounts["./deploy/prometheus/prometheus.yml"])
    for pattern in config["rule_files"]:
        rule_dir = config_target.parent / Path(pattern).parent
        assert mounts["./deploy/prometheus/rules"] == str(rule_dir)
        local = (PROMETHEUS_CONFIG.parent / pattern).parent.glob(Path(pattern).name)
        assert sorted(local) == RULE_FILES


# ------------------------------------------------------------- metric names in PromQL

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")
_IDENTIFIER = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on",
             "ignoring", "group_left", "group_right"}


def series_names(expr: str) -> set[str]:
    """Metric (and recording rule) names a PromQL expression selects: identifiers that are
    not functions, keywords, labels, durations or Grafana variables."""
    text = _MATCHERS.sub("", _STRING.sub('""', expr))
    text = _GROUPING.sub("", _RANGE.sub("", _GRAFANA_VARIABLE.sub("", text)))
    names = set()
    for match in _IDENTIFIER.finditer(text):
        if text[match.end():].lstrip().startswith("(") or match.group().lower() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def exposed_metric_names() -> set[str]:
    """Every sample name the services expose: from services/metrics.py's own collectors
    (counters gain _total; histograms _bucket, _sum and _count), plus Prometheus' `up`."""
    from prometheus_client.metrics import MetricWrapperBase

    from services import metrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",), "summary": ("_sum", "_count", ""), "info": ("_info",)}
    names = {"up"}
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):
            for family in collector.describe():
                names |= {family.name + suffix for suffix in suffixes[family.type]}
    return names


def recording_rules() -> dict[str, str]:
    """``{record name: expr}`` of every recording rule, in file order."""
    rules = {}
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "record" in rule:
                    rules[rule["record"]] = rule["expr"]
    return rules


def test_series_names_finds_metrics_and_nothing_else() -> None:
    """The PromQL scanner the checks below rely on."""
    expr = ('histogram_quantile(0.99, sum by (framework, le) (rate(versus_request_duration_'
            'seconds_bucket{route=~"/predict|/v2/models/.+/infer", framework=~"$framework"}'
            '[$__rate_interval]))) / on (framework) group_left up offset 5m > bool 1e3')
    assert series_names(expr) == {"versus_request_duration_seconds_bucket", "up"}
    assert series_names("framework:versus_requests:rate1m{framework=~\"$framework\"}") == {
        "framework:versus_requests:rate1m"}


def test_rules_use_only_metrics_the_services_expose() -> None:
    """Recording rules read exposed metrics (or earlier rules) and follow level:metric:ops;
    alerts read those, so a renamed metric breaks this test rather than the dashboard."""
    known = exposed_metric_names()
    for name, expr in recording_rules().items():
        assert re.fullmatch(r"[a-z_]+:versus_[a-z_]+:[a-z0-9_]+", name), name
        assert series_names(expr) <= known, f"{name}: {series_names(expr) - known}"
        known.add(name)
    alerts = [rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"]
              for rule in group["rules"] if "alert" in rule]
    assert {a["alert"] for a in alerts} >= {"VersusServiceDown", "VersusHighP99Latency"}
    for alert in alerts:
        assert series_names(alert["expr"]) <= known, alert["alert"]
        assert alert["labels"]["severity"] in ("critical", "warning")
        assert alert["annotations"]["summary"]


# ------------------------------------------------------------------------------- grafana


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


@pytest.fixture(scope="module", params=DASHBOARDS, ids=lambda p: p.name)
def dashboard(request: pytest.FixtureRequest) -> dict[str, Any]:
    return json.loads(request.param.read_text())


def test_dashboards_are_provisioned() -> None:
    assert DASHBOARDS, "no dashboard JSON in deploy/grafana/dashboards"
    sources = yaml.safe_load(next(DATASOURCES.glob("*.yml")).read_text())["datasources"]
    assert [s["url"] for s in sources] == ["http://prometheus:9090"]


def test_dashboard_queries_reference_existing_series(dashboard: dict[str, Any]) -> None:
    """Every panel query names recording rules or exposed metrics, through the provisioned
    datasource; so do the template variables."""
    datasource_uids = {s["uid"] for path in DATASOURCES.glob("*.yml")
                       for s in yaml.safe_load(path.read_text())["datasources"]}
    known = exposed_metric_names() | set(recording_rules())
    ids = [panel["id"] for panel in panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    queries = 0
    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            names = series_names(target["expr"])
            assert names and names <= known, f"{panel['title']}: {names - known}"
            assert target["datasource"]["uid"] in datasource_uids, panel["title"]
            queries += 1
    assert queries >= 10
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            metric = re.fullmatch(r"label_values\((\w+), *(\w+)\)",
                                  variable["query"]["query"]).group(1)
            assert metric in known


def test_dashboard_compares_what_the_report_needs(dashboard: dict[str, Any]) -> None:
    """p50/p95/p99, throughput, stage breakdown, batch size, queue depth and errors, per
    framework (one stage panel repeated per framework: side by side)."""
    used = {name for panel in panels(dashboard["panels"]) for target in panel.get("targets", [])
            for name in series_names(target["expr"])}
    for needed in ("p50_1m", "p95_1m", "p99_1m", "versus_requests:rate1m",
                   "versus_images:rate1m", "versus_stage_duration_seconds:mean1m",
                   "versus_batch_size:mean1m", "versus_queue_depth", "errors:ratio_rate1m",
                   "versus_rejected_requests"):
        assert any(needed in name for name in used), needed
    repeated = [p for p in panels(dashboard["panels"]) if p.get("repeat") == "framework"]
    assert repeated and all(p["repeatDirection"] == "h" for p in repeated)


# ---------------------------------------------------------------------------- dockerfile


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    args: str


@dataclass
class Stage:
    """One build stage: its FROM line and instructions."""

    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(path: Path) -> tuple[list[Instruction], list[Stage]]:
    """``(global instructions before the first FROM, stages)``; comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue  # comments, also inside continued instructions
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        if (pending + line).strip():
            logical.append(pending + line)
        pending = ""
    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for text in logical:
        keyword, _, args = text.strip().partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            parts = instruction.args.split()
            name = parts[2] if len(parts) == 3 and parts[1].lower() == "as" else None
            stages.append(Stage(parts[0], name, []))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            preamble.append(instruction)
    return preamble, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[list[Instruction], dict[str, Stage], list[str]]:
    """``(preamble, stages by name, stage names in order)`` of deploy/Dockerfile."""
    preamble, stages = parse_dockerfile(DEPLOY / "Dockerfile")
    return preamble, {s.name: s for s in stages if s.name}, [str(s.name) for s in stages]


def pyproject_extras() -> set[str]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return set(data["project"]["optional-dependencies"])


def test_dockerfile_defaults_to_a_cuda_base(dockerfile: Any) -> None:
    preamble, _, order = dockerfile
    args = dict(a.args.split("=", 1) for a in preamble if a.keyword == "ARG" and "=" in a.args)
    assert re.fullmatch(r"nvidia/cuda:12\.[\d.]+-cudnn-runtime-ubuntu22\.04", args["BASE_IMAGE"])
    assert order[-1] == "service", "the default target (last stage) must be the service"


def test_dockerfile_installs_only_the_runtime_extra(dockerfile: Any) -> None:
    """A service installs the extra deploy/service-extra.sh picks from FRAMEWORK and
    ACCELERATOR (default gpu, like the CUDA base) + aws from the lock, Locust only loadtest;
    never dev. The script's exit status stops the build (no sync with an empty extra)."""
    preamble, stages, _ = dockerfile
    args = dict(a.args.split("=", 1) for a in preamble if a.keyword == "ARG" and "=" in a.args)
    assert args["ACCELERATOR"] == "gpu"
    deps = stages["service-deps"]
    assert {"FRAMEWORK", "ACCELERATOR"} <= set(deps.all("ARG"))
    assert "--chmod=0755 deploy/service-extra.sh deploy/" in deps.all("COPY")
    assert "shared/__init__.py shared/runtimes.py shared/" in deps.all("COPY")  # the table

    def syncs(stage: str) -> list[str]:
        return [r for r in stages[stage].all("RUN") if "uv sync" in r]

    pick = 'extra="$(deploy/service-extra.sh "${FRAMEWORK}" "${ACCELERATOR}")" && uv sync '
    for stage, wanted in (("service-deps", ['"${extra}"', "aws"]), ("locust-deps", ["loadtest"])):
        assert len(syncs(stage)) == 2, stage  # dependencies layer, then the project
        for command in syncs(stage):
            assert "--frozen" in command and "--no-dev" in command, command
            assert "--all-extras" not in command and "--group" not in command
            assert re.findall(r"--extra (\S+)", command) == wanted, command
            assert (pick in " ".join(command.split())) == (stage == "service-deps"), command
    assert "--no-install-project" in syncs("service-deps")[0]
    assert {"aws", "loadtest"} <= pyproject_extras()


def service_extra(framework: str, accelerator: str) -> subprocess.CompletedProcess[str]:
    """deploy/service-extra.sh as the Dockerfile runs it (POSIX sh, nothing in the environment
    but the Python that reads the runtime table)."""
    return subprocess.run(["sh", str(SERVICE_EXTRA), framework, accelerator],
                          env={"PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=30)


#: The extra each (framework, accelerator) image installs, from the runtime table.
IMAGE_EXTRAS = {(r.name, a): r.extra_for(a) for r in base_runtimes().values()
                for a in ACCELERATORS}


@pytest.mark.parametrize(("framework", "accelerator"), sorted(IMAGE_EXTRAS))
def test_service_extra_picks_the_runtime_build(framework: str, accelerator: str) -> None:
    """The table's extra for the runtime on that accelerator (jax and onnx have GPU builds of
    their own); every answer is an extra of pyproject.toml."""
    result = service_extra(framework, accelerator)
    assert result.returncode == 0, result.stderr
    assert result.stdout == IMAGE_EXTRAS[framework, accelerator] + "\n"
    assert result.stdout.strip() in pyproject_extras()
    assert os.access(SERVICE_EXTRA, os.X_OK)


@pytest.mark.parametrize(("framework", "accelerator", "named"), [
    ("pytorch", "gpu", "FRAMEWORK"), ("", "gpu", "FRAMEWORK"), ("jax", "cuda", "ACCELERATOR"),
    ("onnx", "", "ACCELERATOR"), ("jax-gpu", "gpu", "FRAMEWORK"), ("JAX", "cpu", "FRAMEWORK"),
])
def test_service_extra_refuses_unknown_values(framework: str, accelerator: str, named: str) -> None:
    """An unknown build arg fails the build, naming the arg and its valid values."""
    result = service_extra(framework, accelerator)
    assert result.returncode != 0 and result.stdout == ""
    assert f"--build-arg {named}=" in result.stderr and "(got " in result.stderr


def _requirement_name(requirement: str) -> str:
    """``"torch>=2.5"`` -> ``"torch"`` (normalised like the lock)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement).group()
    return re.sub(r"[-_.]+", "-", name).lower()


def uv_command() -> list[str]:
    """uv on PATH, else ``python -m uv``; skip when neither is there."""
    if shutil.which("uv"):
        return [shutil.which("uv")]
    for python in (sys.executable, shutil.which("python3")):
        if python and subprocess.run([python, "-m", "uv", "--version"],
                                     capture_output=True, timeout=30).returncode == 0:
            return [python, "-m", "uv"]
    pytest.skip("uv not found (neither on PATH nor as `python -m uv`)")


def locked_packages(*extras: str) -> dict[str, str]:
    """``{name: version}`` that `uv sync --frozen --no-dev --extra ...` installs, per uv.lock
    (`uv export`, offline)."""
    command = [*uv_command(), "export", "--frozen", "--no-dev", "--no-hashes", "--no-header",
               "--no-emit-project"]
    for extra in extras:
        command += ["--extra", extra]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    pins = (line.split(";")[0].strip() for line in result.stdout.splitlines()
            if line and not line.startswith((" ", "#", "-")))
    return dict((_requirement_name(name), version) for name, version in
                (pin.split("==", 1) for pin in pins))


@pytest.mark.parametrize(("framework", "accelerator"), sorted(IMAGE_EXTRAS))
def test_locked_image_environment_holds_its_runtime_only(framework: str, accelerator: str) -> None:
    """What the service image's `uv sync` installs, per uv.lock: its own runtime in the
    accelerator's build, boto3, and none of the other frameworks' packages or Locust. GPU:
    a JAX CUDA plugin, onnxruntime-gpu without onnxruntime (both own the `onnxruntime`
    module); CPU: neither."""
    extra = IMAGE_EXTRAS[framework, accelerator]
    installed = set(locked_packages(extra, "aws"))
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    own = {_requirement_name(r) for r in extras[extra] + extras["aws"]}
    assert own <= installed
    for other in (*FRAMEWORKS, "loadtest"):
        if other != framework:
            foreign = {_requirement_name(r) for name in (other, f"{other}-gpu")
                       for r in extras.get(name, [])} - own
            assert not foreign & installed, f"{extra} image would get {foreign & installed}"
    gpu = accelerator == "gpu"
    if framework == "jax":
        assert "jaxlib" in installed
        assert any(re.fullmatch(r"jax-cuda\d+-plugin", p) for p in installed) == gpu
    if framework == "onnx":
        assert ("onnxruntime-gpu" in installed) == gpu
        assert ("onnxruntime" in installed) != gpu


def test_gpu_runtimes_share_torchs_cuda_libraries() -> None:
    """torch, jax-gpu and onnx-gpu run on the very same CUDA/cuDNN wheels (one version per
    nvidia-* package in uv.lock), so the GPU comparison differs by framework only."""
    torch = locked_packages("torch")
    for extra in ("jax-gpu", "onnx-gpu"):
        gpu = locked_packages(extra)
        shared = {name for name in gpu if name.startswith("nvidia-")} & set(torch)
        assert {"nvidia-cudnn-cu13", "nvidia-cublas", "nvidia-cuda-runtime"} <= shared, extra
        assert {name: gpu[name] for name in shared} == {name: torch[name] for name in shared}


def test_uv_comes_from_pypi_pinned_like_the_load_generators(dockerfile: Any) -> None:
    """uv is pip-installed at a pinned version; the same pin as terraform's (both must read
    this uv.lock)."""
    preamble, stages, _ = dockerfile
    args = dict(a.args.split("=", 1) for a in preamble if a.keyword == "ARG" and "=" in a.args)
    assert any('pip install' in r and '"uv==${UV_VERSION}"' in r for r in stages["uv"].all("RUN"))
    variables = ROOT / "terraform" / "variables.tf"
    pinned = re.search(r'variable "uv_version".*?default\s*=\s*"([^"]+)"',
                       variables.read_text() if variables.is_file() else "", re.S)
    if pinned is None:
        pytest.skip("terraform/variables.tf has no uv_version to compare with")
    assert args["UV_VERSION"] == pinned.group(1)


@pytest.mark.parametrize("stage", ["service", "locust"])
def test_final_stages_run_as_a_non_root_user(dockerfile: Any, stage: str) -> None:
    """The last USER of each runnable stage is the numeric non-root user created in the
    runtime stage, and it comes after every RUN/COPY that needs root."""
    _, stages, _ = dockerfile
    instructions = stages[stage].instructions
    users = [i for i in instructions if i.keyword == "USER"]
    assert users and users[-1].args == f"{NON_ROOT_UID}:{NON_ROOT_UID}"
    last_user = max(n for n, i in enumerate(instructions) if i.keyword == "USER")
    assert all(i.keyword not in ("RUN", "COPY") for i in instructions[last_user:])
    created = " ".join(stages["runtime"].all("RUN"))
    assert f"--uid {NON_ROOT_UID}" in created and f"--gid {NON_ROOT_UID}" in created


def healthcheck_command(dockerfile: Any) -> list[str]:
    """The exec-form command of the service image's HEALTHCHECK."""
    _, stages, _ = dockerfile
    (healthcheck,) = stages["service"].all("HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    assert "--start-period=" in options and "--interval=" in options
    return json.loads(command)


def test_service_image_knows_its_framework(dockerfile: Any) -> None:
    """The image serves the framework it was built for (compose need not repeat it), with
    its metric files under the directory compose mounts as a tmpfs."""
    _, stages, _ = dockerfile
    env = " ".join(stages["service"].all("ENV"))
    assert "VERSUS_FRAMEWORK=${FRAMEWORK}" in env
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/versus-metrics" in env


def test_service_image_allocates_gpu_memory_on_demand(dockerfile: Any) -> None:
    """Four runtimes (and their workers) share one GPU: TensorFlow must not take all of it and
    JAX not 75 % at start. Set in the image, so every way of running it gets it."""
    _, stages, _ = dockerfile
    env = " ".join(stages["service"].all("ENV")).split()
    assert {"TF_FORCE_GPU_ALLOW_GROWTH=true", "XLA_PYTHON_CLIENT_PREALLOCATE=false"} <= set(env)


def test_healthcheck_probes_readiness_without_curl(dockerfile: Any) -> None:
    command = healthcheck_command(dockerfile)
    assert command[:2] == ["python", "-c"] and "/readyz" in command[2]
    assert "VERSUS_PORT" in command[2] and "urllib" in command[2]


def test_entrypoint_is_exec_form_and_execs(dockerfile: Any) -> None:
    """ENTRYPOINT in exec form (no /bin/sh -c wrapper to swallow SIGTERM) runs the script,
    which ends by exec'ing its command."""
    _, stages, _ = dockerfile
    (entrypoint,) = stages["service"].all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["/app/deploy/entrypoint.sh"]
    copies = " ".join(stages["service"].all("COPY"))
    assert "--chmod=0755 deploy/entrypoint.sh" in copies and "deploy/gunicorn.conf.py" in copies
    lines = [ln.strip() for ln in ENTRYPOINT.read_text().splitlines() if ln.strip()]
    assert lines[-1] == 'exec "$@"'
    assert os.access(ENTRYPOINT, os.X_OK)


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore excludes ``path`` (last matching pattern wins; a pattern
    matches the path or one of its parent directories)."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = re.escape(pattern.lstrip("!").strip("/"))
        regex = regex.replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_admits_exactly_what_the_images_copy(dockerfile: Any) -> None:
    """Every COPY source from the context is in the build context; secrets, environments,
    data and models are not."""
    _, stages, _ = dockerfile
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = set()
    for stage in stages.values():
        for copy_args in stage.all("COPY"):
            words = [w for w in copy_args.split() if not w.startswith("--")]
            if "--from=" not in copy_args:
                sources.update(words[:-1])
    assert {"uv.lock", "pyproject.toml", "services/", "deploy/entrypoint.sh"} <= sources
    for source in sources:
        assert not _ignored(source, patterns), f"{source} is excluded from the build context"
        if source != "loadtest/":  # written by the load-test work; built only with its profile
            assert (ROOT / source).exists(), source
    for secret in (".git", ".venv", "models", "data", ".env", "terraform/terraform.tfstate",
                   "tests", "services/__pycache__", "reports"):
        assert _ignored(secret, patterns), f"{secret} would be sent to the docker build"


# ---------------------------------------------------------------------------- entrypoint


def base_env(tmp_path: Path) -> dict[str, str]:
    """A minimal environment (no VERSUS_* of the test run leaks in): the venv first on PATH,
    the checkout importable (as /app is in the image) whatever the venv's editable install
    was synced with."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(home), "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT)}


REPORT = ("import json, os, sys; d = os.environ.get('PROMETHEUS_MULTIPROC_DIR');"
          "print(json.dumps({'pid': os.getpid(), 'argv': sys.argv[1:], 'cwd': os.getcwd(),"
          " 'files': sorted(os.listdir(d)) if d else None,"
          " 'env': {k: v for k, v in os.environ.items() if k.startswith('VERSUS_')}}))")


def run_entrypoint(
    env: dict[str, str], *args: str, cwd: Path | None = None,
) -> tuple[subprocess.Popen[str], str, str]:
    """Run deploy/entrypoint.sh with ``args`` as a plain process: (process, stdout, stderr)."""
    process = subprocess.Popen([str(ENTRYPOINT), *args], env=env, cwd=cwd, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = process.communicate(timeout=60)
    return process, stdout, stderr


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A directory that looks like an artifact (manifest.json present)."""
    path = tmp_path / "models" / "dr" / "onnx" / "1"
    path.mkdir(parents=True)
    (path / "manifest.json").write_text("{}")
    return path


def test_entrypoint_wipes_stale_metrics_and_execs_the_command(
    tmp_path: Path, model_dir: Path,
) -> None:
    """Stale *.db files go (other files stay: nothing else is deleted); the command replaces
    the shell (same PID, so signals reach it) with its arguments, environment and working
    directory intact; an empty VERSUS_MODEL_URI (compose's default) is no URI."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    for name in ("counter_123.db", "histogram_123.db", "gauge_livesum_9.db", "notes.txt"):
        (metrics / name).write_text("stale")
    env = {**base_env(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(metrics),
           "VERSUS_MODEL_DIR": str(model_dir), "VERSUS_MAX_BATCH_SIZE": "8",
           "VERSUS_MODEL_URI": ""}
    process, stdout, stderr = run_entrypoint(env, sys.executable, "-c", REPORT,
                                             "two words", "--flag=$HOME", cwd=tmp_path)
    assert process.returncode == 0, stderr
    report = json.loads(stdout)
    assert report["files"] == ["notes.txt"]
    assert report["pid"] == process.pid, "the command was not exec'd"
    assert report["argv"] == ["two words", "--flag=$HOME"]
    assert report["env"] == {"VERSUS_MODEL_DIR": str(model_dir), "VERSUS_MAX_BATCH_SIZE": "8"}
    assert report["cwd"] == str(tmp_path)  # relative paths keep their meaning


def test_entrypoint_creates_a_missing_metrics_directory(tmp_path: Path) -> None:
    metrics = tmp_path / "run" / "versus-metrics"
    env = {**base_env(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    process, stdout, stderr = run_entrypoint(env, sys.executable, "-c", REPORT)
    assert process.returncode == 0, stderr
    assert json.loads(stdout)["files"] == [] and metrics.is_dir()


def test_entrypoint_refuses_a_model_dir_without_manifest(tmp_path: Path) -> None:
    """A missing model fails at once with the fix in the message; the command never runs."""
    marker = tmp_path / "ran"
    env = {**base_env(tmp_path), "VERSUS_MODEL_DIR": str(tmp_path / "models" / "dr" / "jax" / "1")}
    process, _, stderr = run_entrypoint(env, "touch", str(marker))
    assert process.returncode == 78
    for hint in ("VERSUS_MODEL_DIR", "manifest.json", "VERSUS_MODEL_URI"):
        assert hint in stderr
    assert not marker.exists()


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free local port (the entrypoint pulls over real HTTP)."""
    pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def s3_env(tmp_path: Path, endpoint: str) -> dict[str, str]:
    """base_env plus fake credentials for the moto endpoint (no profile, no instance
    metadata) and a model cache of the test's own."""
    aws = tmp_path / "aws"
    return {**base_env(tmp_path), "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(aws / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(aws / "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true", "VERSUS_S3_ENDPOINT_URL": endpoint,
            "VERSUS_MODEL_CACHE": str(tmp_path / "cache")}


def test_entrypoint_pulls_the_model_uri_once(tmp_path: Path, s3_endpoint: str) -> None:
    """VERSUS_MODEL_URI is pulled (and verified) from S3 into the model cache, which becomes
    VERSUS_MODEL_DIR (over a mounted default), and the URI is dropped so that the workers do
    not pull it again."""
    import boto3

    source = tmp_path / "models" / "dr" / "onnx" / "1"
    write_stand_in_onnx_model(source)
    env = s3_env(tmp_path, s3_endpoint)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="versus-entrypoint")
    for path in source.iterdir():
        s3.upload_file(str(path), "versus-entrypoint", f"models/dr/onnx/1/{path.name}")
    env |= {"VERSUS_MODEL_URI": "s3://versus-entrypoint/models/dr/onnx/1",
            "VERSUS_MODEL_DIR": "/models/dr/onnx/1"}
    process, stdout, stderr = run_entrypoint(env, sys.executable, "-c", REPORT)
    assert process.returncode == 0, stderr
    seen = json.loads(stdout)["env"]
    model_dir = Path(seen.pop("VERSUS_MODEL_DIR"))
    assert seen == {"VERSUS_S3_ENDPOINT_URL": s3_endpoint,
                    "VERSUS_MODEL_CACHE": env["VERSUS_MODEL_CACHE"]}  # no VERSUS_MODEL_URI
    assert model_dir.is_relative_to(env["VERSUS_MODEL_CACHE"])
    for name in ("manifest.json", "model.onnx"):
        assert (model_dir / name).read_bytes() == (source / name).read_bytes()


def test_entrypoint_stops_when_the_pull_fails(tmp_path: Path, s3_endpoint: str) -> None:
    """A model that cannot be pulled stops the container with the pull's error; the server
    never starts."""
    marker = tmp_path / "ran"
    env = {**s3_env(tmp_path, s3_endpoint),
           "VERSUS_MODEL_URI": "s3://no-such-bucket/models/dr/onnx/1"}
    process, _, stderr = run_entrypoint(env, "touch", str(marker))
    assert process.returncode != 0 and not marker.exists()
    assert "no-such-bucket" in stderr


def test_entrypoint_defaults_to_gunicorn_with_the_shared_config(
    tmp_path: Path, model_dir: Path,
) -> None:
    """Without a command: gunicorn with deploy/gunicorn.conf.py (found from the script's own
    location, whatever the working directory) serving services.wsgi:app."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    fake = bin_dir / "gunicorn"
    fake.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
    fake.chmod(0o755)
    env = base_env(tmp_path)
    env |= {"PATH": f"{bin_dir}:{env['PATH']}", "VERSUS_MODEL_DIR": str(model_dir)}
    process = subprocess.run([str(ENTRYPOINT)], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
    assert process.returncode == 0, process.stderr
    args = process.stdout.splitlines()
    assert args[0] == "--config" and args[2:] == ["services.wsgi:app"]
    assert Path(args[1]).resolve() == DEPLOY / "gunicorn.conf.py"


# ------------------------------------------------------------------ entrypoint, for real


def write_stand_in_onnx_model(model_dir: Path) -> None:
    """A tiny valid ONNX artifact (NHWC images -> mean colour -> 5 DR logits) with a real
    manifest: enough for the service to load, warm up and serve, in well under a second
    (a ResNet would have to be built in torch and exported first)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from shared.datasets import get_dataset_spec
    from shared.imaging import IMAGENET_MEAN, IMAGENET_STD
    from shared.manifest import InputSpec, Manifest, write_manifest

    spec = get_dataset_spec("dr")
    classes = len(spec.class_names)
    weights = np.arange(3 * classes, dtype=np.float32).reshape(3, classes) / 10
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["mean"], axes=[1, 2], keepdims=0),
         helper.make_node("MatMul", ["mean", "weights"], ["logits"])],
        "stand_in",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 32, 32, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    model_dir.mkdir(parents=True)
    onnx.save(model, model_dir / "model.onnx")
    manifest = Manifest.for_model_file(
        model_dir, "model.onnx", dataset="dr", task=spec.task,
        class_names=list(spec.class_names), framework="onnx", framework_version="stand-in",
        architecture={"name": "tiny", "stage_sizes": [1, 1, 1, 1]},
        input=InputSpec(size=32, mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD)),
        parameter_count=int(weights.size), training={"epochs": 0, "seed": 0, "init": "test"},
        provenance={"source": "tests/deploy stand-in graph"},
    )
    write_manifest(model_dir, manifest)


def test_onnx_predictor_on_a_cuda_build_preloads_libraries_and_reports_a_cpu_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """The GPU image's ONNX Runtime (onnxruntime-gpu, played here by the CPU package with a
    CUDA version): CUDA and cuDNN from the nvidia-* wheels are preloaded before the session,
    CUDA is asked for first, and a session that still lands on the CPU says so. The CPU
    package does neither."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import numpy as np

    from services.predictors.onnx import OnnxPredictor
    from shared.manifest import read_manifest

    model_dir = tmp_path / "models" / "dr" / "onnx" / "1"
    write_stand_in_onnx_model(model_dir)
    manifest = read_manifest(model_dir)
    preloaded: list[bool] = []
    monkeypatch.setattr(ort, "preload_dlls", lambda: preloaded.append(True), raising=False)

    monkeypatch.setattr(ort, "cuda_version", "", raising=False)  # the CPU package
    with caplog.at_level(logging.WARNING, logger="services.predictors.onnx"):
        OnnxPredictor(model_dir, manifest, threads=1)
        assert preloaded == [] and not caplog.records
        monkeypatch.setattr(ort, "cuda_version", "13.0", raising=False)
        with pytest.warns(UserWarning, match="CUDAExecutionProvider"):
            predictor = OnnxPredictor(model_dir, manifest, threads=1)
    assert preloaded == [True]
    assert predictor.session.get_providers() == ["CPUExecutionProvider"]
    assert "runs on the CPU" in caplog.text
    assert predictor.predict(np.zeros((2, 32, 32, 3), np.float32)).shape == (2, 5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_entrypoint_starts_gunicorn_until_the_healthcheck_passes(
    tmp_path: Path, dockerfile: Any,
) -> None:
    """The image's start-up, minus Docker: entrypoint -> gunicorn -> worker loads and warms
    the model -> the Dockerfile's HEALTHCHECK command succeeds -> /metrics merges the
    workers' files -> SIGTERM to the process we started (gunicorn itself, after the exec)
    stops it cleanly."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model_dir = tmp_path / "models" / "dr" / "onnx" / "1"
    write_stand_in_onnx_model(model_dir)
    port = free_port()
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "counter_1.db").write_text("stale")
    env = {**base_env(tmp_path), "VERSUS_FRAMEWORK": "onnx", "VERSUS_MODEL_DIR": str(model_dir),
           "VERSUS_HOST": "127.0.0.1", "VERSUS_PORT": str(port), "VERSUS_THREADS": "4",
           "VERSUS_INTRA_OP_THREADS": "1", "VERSUS_MAX_BATCH_SIZE": "2",
           "VERSUS_GRACEFUL_TIMEOUT": "10", "PROMETHEUS_MULTIPROC_DIR": str(metrics)}
    health = healthcheck_command(dockerfile)
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        server = subprocess.Popen([str(ENTRYPOINT)], env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            probe = subprocess.run(health, env=env, capture_output=True, timeout=30)
            if probe.returncode == 0:
                break
            assert server.poll() is None, f"gunicorn exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"never ready:\n{log.read_text()}"
            time.sleep(0.5)
        assert "counter_1.db" not in os.listdir(metrics)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            exposition = response.read().decode()
        assert re.search(r'versus_model_info\{[^}]*framework="onnx"', exposition)
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, log.read_text()
        assert "Shutting down" in log.read_text() or "Handling signal" in log.read_text()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
