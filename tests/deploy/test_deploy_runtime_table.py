"""The deployment files that cannot import the runtime table (compose YAML, the Prometheus
scrape config) name every base runtime of it, and nothing else: a missing or extra runtime
fails here, naming the runtime and the file to edit. Variants (``torch-bf16``, ...) run in
their base runtime's image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.runtimes import Runtime, base_runtimes, runtimes

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_CPU = ROOT / "docker-compose.cpu.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ROWS = list(base_runtimes().values())


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text().replace("!reset", ""))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_compose_serves_the_runtime_on_its_port_from_its_artifact(compose, row: Runtime
                                                                  ) -> None:
    where = f"runtime {row.name!r}: {COMPOSE.name}"
    service = compose["services"].get(row.name)
    assert service, f"{where} has no service {row.name!r}"
    assert service["build"]["args"]["FRAMEWORK"] == row.name, where
    env = service["environment"]
    assert str(env["VERSUS_PORT"]) == str(row.port), f"{where}: VERSUS_PORT"
    assert f"}}/{row.artifact}/$" in env["VERSUS_MODEL_DIR"], f"{where}: VERSUS_MODEL_DIR"
    assert f"${{VERSUS_{row.name.upper()}_MODEL_URI" in env["VERSUS_MODEL_URI"], where
    for locust in ("locust-master", "locust-worker"):
        url = compose["services"][locust]["environment"].get(f"VERSUS_{row.name.upper()}_URL")
        assert url == f"http://{row.name}-proxy:{row.port}", f"{where}: {locust}'s URL"
    assert f"{row.name}-proxy" in compose["services"]["locust-master"]["depends_on"], where
    proxy = compose["services"].get(f"{row.name}-proxy")
    assert proxy, f"{where} has no proxy {row.name}-proxy"
    assert proxy["ports"] == [f"{row.port}:{row.port}"], f"{where}: {row.name}-proxy's port"
    assert proxy["environment"]["VERSUS_PROXY_UPSTREAM"] == f"{row.name}:{row.port}", where


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_cpu_override_builds_the_runtime_for_the_cpu(row: Runtime) -> None:
    service = load(COMPOSE_CPU)["services"].get(row.name)
    assert service, f"runtime {row.name!r}: {COMPOSE_CPU.name} has no service {row.name!r}"
    assert service["image"] == f"versus-{row.name}:cpu"


def test_prometheus_scrapes_every_runtime_and_nothing_else() -> None:
    config = load(PROMETHEUS)
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "versus")
    targets = {t["labels"]["service"]: t["targets"] for t in job["static_configs"]}
    for row in ROWS:
        assert targets.get(row.name) == [f"{row.name}:{row.port}"], (
            f"runtime {row.name!r}: {PROMETHEUS.relative_to(ROOT)} has no target "
            f"{row.name}:{row.port}")
    extra = set(targets) - {r.name for r in ROWS}
    assert not extra, f"{PROMETHEUS.relative_to(ROOT)} scrapes runtimes the table lacks: {extra}"


def test_compose_has_no_runtime_the_table_lacks(compose) -> None:
    built = {name for name, s in compose["services"].items()
             if s.get("build", {}).get("target") == "service"}
    extra = built - {r.name for r in ROWS}
    assert not extra, f"{COMPOSE.name} builds runtimes the table lacks: {extra}"


@pytest.mark.parametrize("row", [r for r in runtimes().values() if r.is_variant],
                         ids=lambda r: r.name)
def test_a_variant_is_deployed_with_its_base_runtimes_image(row: Runtime) -> None:
    """Variants are not compose services of their own: a variant runs in its base's image
    (same extras) with ``--framework <variant>``; the deployment files carry the base rows."""
    base = runtimes()[row.variant_of]
    assert (row.extra, row.gpu_extra, row.platform) == (base.extra, base.gpu_extra, base.platform)
    assert row.name not in load(COMPOSE)["services"]
