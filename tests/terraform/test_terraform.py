"""Tests of the AWS stack in terraform/, with real terraform commands and no real AWS.

terraform runs from a copy of terraform/ in a temporary directory (no .terraform/ litter in
the repository), installing hashicorp/aws only from a local filesystem mirror through a CLI
config file (TF_CLI_CONFIG_FILE): there is no network here. Every plan/apply/destroy targets
moto's server mode (``aws_endpoint_url``), with fake credentials; the provider never sees a
real endpoint. Each test skips with the reason when terraform, the provider copy or
moto_server is missing.

The variable validations are checked by planning ``variables.tf`` alone: it is a valid root
module without providers, so each check costs a fraction of a second instead of a provider
start; the full configuration is planned and applied against moto further down.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.runtimes import base_runtimes

REPO_ROOT = Path(__file__).resolve().parents[2]
TERRAFORM_DIR = REPO_ROOT / "terraform"
FRAMEWORK_PORTS = {r.name: r.port for r in base_runtimes().values()}
REGION = "us-east-1"
# moto's built-in public images (x86_64): a Deep Learning AMI owned by "amazon", and a
# Canonical Ubuntu server image.
MOTO_DEEP_LEARNING_AMI = "ami-dca37ea5"
MOTO_DEEP_LEARNING_AMI_FILTER = "Deep Learning AMI Ubuntu Linux - *"
MOTO_UBUNTU_AMI = "ami-785db401"
REPO_URL = "https://github.com/example/versus.git"
# The standard implied local mirror directories of terraform on Unix, after this machine's copy.
PROVIDER_MIRROR_CANDIDATES = (
    Path("/opt/tf-plugins"),
    Path.home() / ".terraform.d" / "plugins",
    Path.home() / ".local" / "share" / "terraform" / "plugins",
    Path("/usr/local/share/terraform/plugins"),
    Path("/usr/share/terraform/plugins"),
)
TERRAFORM_TIMEOUT_S = 300


# --------------------------------------------------------------------------------------------
# Locating terraform, the provider copy and moto
# --------------------------------------------------------------------------------------------


def pinned_provider_version() -> tuple[int, int, int]:
    """The ``~> X.Y.Z`` constraint on hashicorp/aws in terraform/versions.tf."""
    text = (TERRAFORM_DIR / "versions.tf").read_text()
    match = re.search(r'version\s*=\s*"~>\s*(\d+)\.(\d+)\.(\d+)"', text)
    assert match, "versions.tf must pin hashicorp/aws with a ~> X.Y.Z constraint"
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def platform_dir() -> str:
    """terraform's os_arch name for this machine, e.g. linux_amd64."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    return f"{platform.system().lower()}_{arch}"


def mirror_has_provider(mirror: Path) -> bool:
    """Whether ``mirror`` holds hashicorp/aws in a version versions.tf accepts (either layout)."""
    major, minor, patch = pinned_provider_version()
    accepted = re.compile(rf"^{major}\.{minor}\.(\d+)$")
    aws_dir = mirror / "registry.terraform.io" / "hashicorp" / "aws"
    if not aws_dir.is_dir():
        return False
    for entry in aws_dir.iterdir():
        unpacked = accepted.match(entry.name)
        if (
            unpacked
            and int(unpacked.group(1)) >= patch
            and any((entry / platform_dir()).glob("terraform-provider-aws*"))
        ):
            return True
        packed = re.match(rf"^terraform-provider-aws_(\S+)_{platform_dir()}\.zip$", entry.name)
        if packed:
            version = accepted.match(packed.group(1))
            if version and int(version.group(1)) >= patch:
                return True
    return False


def mirror_candidates() -> list[Path]:
    """$VERSUS_TF_PROVIDER_MIRROR when set, else the usual places."""
    override = os.environ.get("VERSUS_TF_PROVIDER_MIRROR")
    return [Path(override)] if override else list(PROVIDER_MIRROR_CANDIDATES)


def find_provider_mirror() -> Path | None:
    """The first candidate mirror holding the pinned provider."""
    return next((c for c in mirror_candidates() if mirror_has_provider(c)), None)


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    """Path of the terraform binary (skip when absent)."""
    found = shutil.which("terraform") or (
        "/usr/local/bin/terraform" if os.access("/usr/local/bin/terraform", os.X_OK) else None
    )
    if not found:
        pytest.skip("terraform not found on PATH (nor /usr/local/bin/terraform)")
    return found


@pytest.fixture(scope="session")
def provider_mirror() -> Path:
    """Local filesystem mirror with the pinned hashicorp/aws (skip when absent)."""
    mirror = find_provider_mirror()
    if mirror is None:
        major, minor, patch = pinned_provider_version()
        pytest.skip(
            f"no local copy of hashicorp/aws ~> {major}.{minor}.{patch} for {platform_dir()} in "
            f"{', '.join(map(str, mirror_candidates()))} (there is no network to download it; "
            "point $VERSUS_TF_PROVIDER_MIRROR at a filesystem mirror)"
        )
    return mirror


def terraform_env(cli_config: Path | None) -> dict[str, str]:
    """Environment for terraform: no real AWS credentials or profiles, fake ones instead."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env.update(
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        CHECKPOINT_DISABLE="1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    if cli_config is not None:
        env["TF_CLI_CONFIG_FILE"] = str(cli_config)
    return env


def run_terraform(
    terraform: str, workdir: Path, env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``terraform -chdir=workdir args...``; fail the test with its output when check fails."""
    proc = subprocess.run(
        [terraform, f"-chdir={workdir}", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TERRAFORM_TIMEOUT_S,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"terraform {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def one_line(text: str) -> str:
    """Collapse terraform's terminal line wrapping so messages can be matched."""
    return " ".join(text.split())


@pytest.fixture(scope="session")
def tf_root(
    terraform_bin: str, provider_mirror: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, str]]:
    """terraform/ copied to a temporary directory and initialised from the local mirror."""
    base = tmp_path_factory.mktemp("terraform")
    cli_config = base / "terraform.tfrc"
    # Only the mirror: a provider not in it fails instead of reaching for the network.
    cli_config.write_text(
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f'    path    = "{provider_mirror}"\n'
        '    include = ["registry.terraform.io/hashicorp/aws"]\n'
        "  }\n"
        "}\n"
    )
    workdir = base / "root"
    shutil.copytree(
        TERRAFORM_DIR,
        workdir,
        ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl"),
    )
    env = terraform_env(cli_config)
    run_terraform(terraform_bin, workdir, env, "init", "-backend=false", "-no-color")
    return workdir, env


# --------------------------------------------------------------------------------------------
# moto server
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto in server mode on a free 127.0.0.1 port, for the session."""
    # The one next to this interpreter (the project's venv) first.
    venv_bin = str(Path(sys.executable).parent)
    moto_server = shutil.which("moto_server", path=venv_bin) or shutil.which("moto_server")
    if moto_server is None:
        pytest.skip("moto_server not found (install moto[server])")
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [moto_server, "-H", "127.0.0.1", "-p", "0"], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        url = None
        while url is None:
            match = re.search(r"Running on (http://127\.0\.0\.1:\d+)", log_path.read_text())
            if match:
                url = match.group(1)
            elif proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto_server did not start:\n{log_path.read_text()}")
            else:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def aws_client(service: str, endpoint: str) -> Any:
    """A boto3 client of ``service`` talking to the moto server."""
    boto3 = pytest.importorskip("boto3")
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def write_tfvars(directory: Path, name: str, values: dict[str, Any]) -> Path:
    """Write ``values`` as a .tfvars.json file (no shell quoting of lists and nulls)."""
    path = directory / f"{name}.tfvars.json"
    path.write_text(json.dumps(values, indent=2))
    return path


def moto_vars(endpoint: str, **overrides: Any) -> dict[str, Any]:
    """Variables for a run against moto; aws_endpoint_url is always the emulator."""
    values: dict[str, Any] = {
        "region": REGION,
        "allowed_cidrs": ["203.0.113.7/32", "2001:db8::/64"],
        "repo_url": REPO_URL,
        "ami_id": MOTO_DEEP_LEARNING_AMI,
    }
    values.update(overrides)
    values["aws_endpoint_url"] = endpoint
    return values


# --------------------------------------------------------------------------------------------
# Formatting and validation
# --------------------------------------------------------------------------------------------


def test_fmt_check(terraform_bin: str) -> None:
    """Every .tf file is in canonical format (terraform fmt -check -recursive)."""
    proc = run_terraform(
        terraform_bin,
        TERRAFORM_DIR,
        terraform_env(None),
        "fmt",
        "-check",
        "-recursive",
        "-diff",
        "-no-color",
        check=False,
    )
    assert proc.returncode == 0, f"run `terraform fmt -recursive terraform/`:\n{proc.stdout}"


def test_init_and_validate(terraform_bin: str, tf_root: tuple[Path, dict[str, str]]) -> None:
    """The configuration initialises from the local mirror and validates."""
    workdir, env = tf_root
    proc = run_terraform(terraform_bin, workdir, env, "validate", "-json", "-no-color", check=False)
    result = json.loads(proc.stdout)
    assert result["valid"], json.dumps(result["diagnostics"], indent=2)
    assert result["warning_count"] == 0, json.dumps(result["diagnostics"], indent=2)
    installed = workdir / ".terraform" / "providers" / "registry.terraform.io" / "hashicorp" / "aws"
    assert installed.is_dir()


@pytest.fixture(scope="session")
def variables_root(terraform_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """terraform/variables.tf alone: a root module that needs no provider to plan."""
    workdir = tmp_path_factory.mktemp("variables")
    shutil.copy(TERRAFORM_DIR / "variables.tf", workdir)
    run_terraform(
        terraform_bin, workdir, terraform_env(None), "init", "-backend=false", "-no-color"
    )
    return workdir


def variable_at_line(path: Path, line: int) -> str:
    """Name of the variable block that contains ``line`` of ``path``."""
    names = [
        (number, match.group(1))
        for number, text in enumerate(path.read_text().splitlines()[:line], start=1)
        if (match := re.match(r'variable "(\w+)"', text))
    ]
    return names[-1][1]


def plan_variables(terraform: str, workdir: Path, values: dict[str, Any]) -> dict[str, str]:
    """Plan variables.tf with ``values``; return {variable name: validation message} of failures."""
    tfvars = write_tfvars(workdir, "case", {"repo_url": REPO_URL, **values})
    proc = run_terraform(
        terraform,
        workdir,
        terraform_env(None),
        "plan",
        "-json",
        "-lock=false",
        f"-var-file={tfvars}",
        check=False,
    )
    failures: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        event = json.loads(line)
        if event.get("type") != "diagnostic" or event["diagnostic"]["severity"] != "error":
            continue
        detail = event["diagnostic"]["detail"]
        rule = re.search(r"validation rule at variables\.tf:(\d+)", detail)
        assert rule, f"unexpected error: {event['diagnostic']}"
        failures[variable_at_line(workdir / "variables.tf", int(rule.group(1)))] = one_line(detail)
    assert (proc.returncode != 0) == bool(failures), proc.stdout + proc.stderr
    return failures


@pytest.mark.parametrize(
    ("values", "variable", "message"),
    [
        pytest.param(
            {"allowed_cidrs": ["0.0.0.0/0"]},
            "allowed_cidrs",
            "opens the stack to the whole internet",
            id="public-ipv4",
        ),
        pytest.param(
            {"allowed_cidrs": ["203.0.113.7/32", "::/0"]},
            "allowed_cidrs",
            "opens the stack to the whole internet",
            id="public-ipv6",
        ),
        pytest.param(
            {"allowed_cidrs": []}, "allowed_cidrs", "at least one CIDR block", id="no-cidr"
        ),
        pytest.param(
            {"allowed_cidrs": ["203.0.113.7"]},
            "allowed_cidrs",
            "must be a CIDR block",
            id="not-a-cidr",
        ),
        pytest.param(
            {"allowed_cidrs": ["203.0.113.7/32"], "instance_type": "t3.micro"},
            "instance_type",
            "must be an NVIDIA GPU type",
            id="non-gpu-type",
        ),
        pytest.param(
            {"allowed_cidrs": ["203.0.113.7/32"], "instance_type": "g5g.xlarge"},
            "instance_type",
            "must be an NVIDIA GPU type",
            id="arm-gpu-type",
        ),
        pytest.param(
            {"allowed_cidrs": ["203.0.113.7/32"], "instance_type": "p3.2xlarge"},
            "instance_type",
            "cannot run CUDA 13",
            id="volta-gpu-type",
        ),
        pytest.param(
            {"allowed_cidrs": ["203.0.113.7/32"], "frameworks": ["torch", "pytorch"]},
            "frameworks",
            "subset of",
            id="bad-framework",
        ),
        pytest.param(
            {"allowed_cidrs": ["203.0.113.7/32"], "frameworks": []},
            "frameworks",
            "non-empty subset",
            id="no-framework",
        ),
        pytest.param(
            {"allowed_cidrs": ["203.0.113.7/32"], "instances_per_framework": 0},
            "instances_per_framework",
            "from 1 to 10",
            id="zero-instances",
        ),
        pytest.param(
            {"allowed_cidrs": ["203.0.113.7/32"], "root_volume_size": 20},
            "root_volume_size",
            "between 75 and 2000",
            id="small-root-volume",
        ),
    ],
)
def test_variable_validation_rejects(
    terraform_bin: str, variables_root: Path, values: dict[str, Any], variable: str, message: str
) -> None:
    """A costly or unsafe value fails the plan, on that variable only, with a clear message."""
    failures = plan_variables(terraform_bin, variables_root, values)
    assert set(failures) == {variable}, failures
    assert message in failures[variable]


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(
            {"allowed_cidrs": ["0.0.0.0/0", "::/0"], "allow_public_access": True},
            id="public-with-flag",
        ),
        pytest.param(
            {
                "allowed_cidrs": ["203.0.113.7/32"],
                "instance_type": "p4d.24xlarge",
                "frameworks": ["onnx"],
                "instances_per_framework": 3,
            },
            id="other-gpu-family",
        ),
        pytest.param({"allowed_cidrs": ["203.0.113.7/32"]}, id="defaults"),
    ],
)
def test_variable_validation_accepts(
    terraform_bin: str, variables_root: Path, values: dict[str, Any]
) -> None:
    """Valid values pass every validation (0.0.0.0/0 only with allow_public_access)."""
    assert plan_variables(terraform_bin, variables_root, values) == {}


TEMPLATE_HARNESS = """
locals {
  loadgen = {
    repo_url   = "%(repo_url)s"
    repo_ref   = "v1.2.3"
    uv_version = "0.13.9"
    web_port   = 8089
    targets    = { torch = "http://10.0.0.5:8001", onnx = "http://lb.example:8004" }
  }
}

output "service" {
  value = templatefile("templates/service_user_data.sh.tftpl", {
    repo_url              = "%(repo_url)s"
    repo_ref              = "v1.2.3"
    region                = "us-east-1"
    bucket                = "versus-artifacts-x"
    prefix                = "team/models"
    artifact_wait_minutes = 90
    dataset               = "dr"
    model_version         = "1"
    frameworks            = ["onnx", "torch"]
    service_environment   = { VERSUS_MAX_BATCH_SIZE = "32" }
    compose_files         = ["docker-compose.yml", "docker-compose.gpu.yml"]
    compose_services      = ["onnx", "torch", "prometheus", "grafana"]
  })
}

output "loadgen_master" {
  value = templatefile("templates/loadgen_user_data.sh.tftpl",
  merge(local.loadgen, { role = "master", master_host = "127.0.0.1" }))
}

output "loadgen_worker" {
  value = templatefile("templates/loadgen_user_data.sh.tftpl",
  merge(local.loadgen, { role = "worker", master_host = "10.0.0.9" }))
}
"""


@pytest.fixture(scope="module")
def rendered_scripts(
    terraform_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The boot scripts rendered by terraform's templatefile with sample values.

    A provider-less root module next to a copy of templates/: the load generator scripts
    (not applied on moto) get rendered as well as the inference host's.
    """
    workdir = tmp_path_factory.mktemp("templates")
    shutil.copytree(TERRAFORM_DIR / "templates", workdir / "templates")
    (workdir / "main.tf").write_text(TEMPLATE_HARNESS % {"repo_url": REPO_URL})
    env = terraform_env(None)
    run_terraform(terraform_bin, workdir, env, "init", "-backend=false", "-no-color")
    run_terraform(terraform_bin, workdir, env, "apply", "-auto-approve", "-no-color")
    outputs = json.loads(run_terraform(terraform_bin, workdir, env, "output", "-json").stdout)
    return {name: output["value"] for name, output in outputs.items()}


def assert_bash_syntax(script: str) -> None:
    """The script parses as bash."""
    proc = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_user_data_templates_render_to_valid_bash(rendered_scripts: dict[str, str]) -> None:
    """Both boot-script templates render to scripts bash accepts, with the given values."""
    for script in rendered_scripts.values():
        assert_bash_syntax(script)
        assert f"remote add origin '{REPO_URL}'" in script
        assert "fetch -q --depth 1 origin 'v1.2.3'" in script

    service = rendered_scripts["service"]
    assert "VERSUS_ARTIFACTS=s3://versus-artifacts-x/team/models\n" in service
    assert 'VERSUS_FRAMEWORKS="onnx torch"' in service
    assert 'VERSUS_COMPOSE_ARGS="-f docker-compose.yml -f docker-compose.gpu.yml"' in service
    assert 'VERSUS_SERVICES="onnx torch prometheus grafana"' in service
    assert "VERSUS_DATASET=dr\nVERSUS_MODEL_VERSION=1\nVERSUS_MAX_BATCH_SIZE=32\nENV\n" in service
    assert "nvidia-ctk runtime configure --runtime=docker" in service

    master, worker = rendered_scripts["loadgen_master"], rendered_scripts["loadgen_worker"]
    for script in (master, worker):
        targets = "VERSUS_ONNX_URL=http://lb.example:8004\nVERSUS_TORCH_URL=http://10.0.0.5:8001\n"
        assert f"<<'ENV'\n{targets}ENV\n" in script
        assert "https://astral.sh/uv/0.13.9/install.sh" in script
        assert "--extra loadtest" in script
    assert "--worker --master-host 127.0.0.1 --processes -1" in master
    assert "systemctl enable --now locust-master.service" in master
    assert "--worker --master-host 10.0.0.9 --processes -1" in worker
    assert "locust-master.service" not in worker


def heredoc(script: str, marker: str) -> str:
    """Body of the ``<<'MARKER'`` here-document in ``script``."""
    match = re.search(rf"<<'{marker}'\n(.*?)\n{marker}\n", script, re.S)
    assert match, f"no <<'{marker}' here-document"
    return match.group(1) + "\n"


FAKE_AWS = r"""#!/usr/bin/env bash
# Fake AWS CLI: s3://BUCKET/KEY is $FAKE_S3/BUCKET/KEY.
echo "aws $*" >> "$FAKE_LOG"
local_path() { echo "$FAKE_S3/${1#s3://}"; }
case "$1 $2" in
  "s3 ls")
    dir=$(local_path "$4")
    [ -d "$dir" ] || exit 1
    (cd "$FAKE_S3/${4#s3://}" && find . -type f | sort | sed "s#^\./#2024-01-01 00:00:00 1 ${4#s3://*/}#")
    ;;
  "s3 sync")
    mkdir -p "$6" && cp -r "$(local_path "$5")." "$6"
    ;;
  *) exit 2 ;;
esac
"""

FAKE_SLEEP = r"""#!/usr/bin/env bash
# Fake sleep: no waiting; the first call finishes the push of the onnx model.
echo "sleep $*" >> "$FAKE_LOG"
if [ -d "$FAKE_PENDING" ]; then
  mkdir -p "$(dirname "$FAKE_ONNX")" && mv "$FAKE_PENDING" "$FAKE_ONNX"
fi
"""

FAKE_DOCKER = r"""#!/usr/bin/env bash
echo "docker $*" >> "$FAKE_LOG"
"""


def run_versus_start(
    service_script: str, tmp_path: Path, *, wait_minutes: int
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the rendered versus-start against fake aws/docker/sleep; return it and the call log.

    S3 holds the torch model from the start; the onnx model arrives at the first poll.
    """
    bin_dir, repo, bucket = tmp_path / "bin", tmp_path / "repo", tmp_path / "s3"
    for directory in (bin_dir, repo):
        directory.mkdir()
    for name, body in {"aws": FAKE_AWS, "sleep": FAKE_SLEEP, "docker": FAKE_DOCKER}.items():
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    prefix = bucket / "versus-artifacts-x" / "team" / "models" / "dr"
    # torch is in S3 from the start; onnx is pushed while versus-start waits (FAKE_SLEEP).
    for framework, model in (("torch", prefix / "torch" / "1"), ("onnx", tmp_path / "pending")):
        model.mkdir(parents=True)
        (model / "manifest.json").write_text("{}")
        (model / "model.bin").write_text(framework)
    stack_env = heredoc(service_script, "ENV").replace("/opt/versus", str(repo))
    stack_env = re.sub(r"(?m)^VERSUS_ARTIFACT_WAIT_MINUTES=.*$", "", stack_env)
    stack_env += f"VERSUS_ARTIFACT_WAIT_MINUTES={wait_minutes}\n"
    (tmp_path / "stack.env").write_text(stack_env)
    start = heredoc(service_script, "SCRIPT").replace(
        "/etc/versus/stack.env", str(tmp_path / "stack.env")
    )
    log = tmp_path / "calls.log"
    log.touch()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_S3": str(bucket),
        "FAKE_LOG": str(log),
        "FAKE_PENDING": str(tmp_path / "pending"),
        "FAKE_ONNX": str(prefix / "onnx" / "1"),
    }
    proc = subprocess.run(
        ["bash", "-c", start], env=env, capture_output=True, text=True, timeout=60
    )
    return proc, log.read_text().splitlines()


def test_versus_start_waits_for_every_model_then_starts_the_stack(
    rendered_scripts: dict[str, str], tmp_path: Path
) -> None:
    """versus-start polls S3 until each framework's manifest is there and stable, syncs
    exactly those model directories and runs docker compose for this host's services."""
    proc, calls = run_versus_start(rendered_scripts["service"], tmp_path, wait_minutes=5)
    assert proc.returncode == 0, proc.stderr
    # Poll 1: onnx missing; poll 2: all there, listing new; poll 3: unchanged -> go.
    assert len([c for c in calls if c.startswith("sleep")]) == 2
    syncs = [c for c in calls if c.startswith("aws s3 sync")]
    assert syncs == [
        f"aws s3 sync --only-show-errors --delete s3://versus-artifacts-x/team/models/dr/{fw}/1/ "
        f"models/dr/{fw}/1/"
        for fw in ("onnx", "torch")
    ]
    assert calls[-1] == (
        "docker compose -f docker-compose.yml -f docker-compose.gpu.yml "
        "up -d onnx torch prometheus grafana"
    )
    for framework in ("onnx", "torch"):
        model = tmp_path / "repo" / "models" / "dr" / framework / "1"
        assert (model / "model.bin").read_text() == framework


def test_versus_start_gives_up_without_models(
    rendered_scripts: dict[str, str], tmp_path: Path
) -> None:
    """Past artifact_wait_minutes without the models it fails, naming what is missing and
    what to do, and starts nothing."""
    proc, calls = run_versus_start(rendered_scripts["service"], tmp_path, wait_minutes=0)
    assert proc.returncode == 1
    assert "no manifest.json under s3://versus-artifacts-x/team/models for: dr/onnx/1" in one_line(
        proc.stderr
    )
    assert "systemctl restart versus-stack" in proc.stderr
    assert not [c for c in calls if c.startswith(("docker", "aws s3 sync"))]


# --------------------------------------------------------------------------------------------
# Plan and apply against moto
# --------------------------------------------------------------------------------------------


def planned_resources(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{address: planned values} of every resource in a `terraform show -json` plan."""
    return {
        r["address"]: r.get("values", {})
        for r in plan["planned_values"]["root_module"].get("resources", [])
        if r["mode"] == "managed"
    }


def test_plan_with_alb_and_load_generators(
    terraform_bin: str, tf_root: tuple[Path, dict[str, str]], moto_endpoint: str
) -> None:
    """Plan-only: ALB, dedicated instances, load generators, AMI lookup, public access flag.

    The AMI comes from the aws_ami data source (moto's "Deep Learning AMI Ubuntu Linux"
    stands in for the Deep Learning Base AMI), and 0.0.0.0/0 is accepted with the flag.
    """
    workdir, env = tf_root
    frameworks = ["onnx", "torch"]
    tfvars = write_tfvars(
        workdir,
        "alb",
        moto_vars(
            moto_endpoint,
            name="versus-plan",
            ami_id=None,
            ami_name_filter=MOTO_DEEP_LEARNING_AMI_FILTER,
            allowed_cidrs=["0.0.0.0/0", "::/0"],
            allow_public_access=True,
            frameworks=frameworks,
            instances_per_framework=2,
            dedicated_instances=True,
            enable_alb=True,
            loadgen_count=2,
            loadgen_ami_id=MOTO_UBUNTU_AMI,
            key_name="bench",
        ),
    )
    run_terraform(
        terraform_bin, workdir, env, "plan", "-no-color", "-lock=false",
        f"-var-file={tfvars}", "-out=alb.tfplan",
    )  # fmt: skip
    shown = run_terraform(terraform_bin, workdir, env, "show", "-json", "alb.tfplan")
    resources = planned_resources(json.loads(shown.stdout))

    services = {a: v for a, v in resources.items() if a.startswith("aws_instance.service[")}
    assert len(services) == len(frameworks) * 2
    for values in services.values():
        assert values["ami"] == MOTO_DEEP_LEARNING_AMI
        assert values["instance_type"] == "g4dn.xlarge"
        assert values["monitoring"] is True
        assert values["metadata_options"][0]["http_tokens"] == "required"
        assert values["root_block_device"][0]["encrypted"] is True
        assert values["key_name"] == "bench"
        assert len(values["tags"]["Frameworks"].split(",")) == 1  # dedicated

    target_groups = {
        v["name"]: v for a, v in resources.items() if a.startswith("aws_lb_target_group.service[")
    }
    assert set(target_groups) == {f"versus-plan-{fw}" for fw in frameworks}
    for fw in frameworks:
        group = target_groups[f"versus-plan-{fw}"]
        assert group["port"] == FRAMEWORK_PORTS[fw]
        assert group["health_check"][0]["path"] == "/readyz"
        assert group["health_check"][0]["port"] == "traffic-port"
    listeners = [v for a, v in resources.items() if a.startswith("aws_lb_listener.service[")]
    assert sorted(v["port"] for v in listeners) == sorted(FRAMEWORK_PORTS[fw] for fw in frameworks)
    attachments = [
        v for a, v in resources.items() if a.startswith("aws_lb_target_group_attachment.")
    ]
    assert len(attachments) == len(services)  # each dedicated instance serves one framework
    assert resources["aws_lb.this[0]"]["drop_invalid_header_fields"] is True

    assert "aws_instance.loadgen_master[0]" in resources
    assert "aws_instance.loadgen_worker[0]" in resources
    assert "aws_instance.loadgen_worker[1]" not in resources
    assert not resources["aws_instance.loadgen_master[0]"].get("iam_instance_profile")
    loadgen_rules = [a for a in resources if ".alb_loadgen[" in a]
    assert len(loadgen_rules) == 2  # each load generator may reach the ALB

    public_rules = [
        v for a, v in resources.items()
        if a.startswith("aws_vpc_security_group_ingress_rule.instances_public[")
    ]  # fmt: skip
    ports = {r["from_port"] for r in public_rules}
    assert ports == {FRAMEWORK_PORTS[fw] for fw in frameworks} | {9090, 3000, 22, 8089}
    cidrs = {r["cidr_ipv4"] or r["cidr_ipv6"] for r in public_rules}
    assert cidrs == {"0.0.0.0/0", "::/0"}
    assert "aws_s3_bucket_lifecycle_configuration.artifacts[0]" in resources


def instance_user_data(ec2: Any, instance_id: str) -> str:
    """The decoded user data of an instance."""
    attribute = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    return base64.b64decode(attribute["UserData"]["Value"]).decode()


@pytest.mark.slow  # ~40-70 s: the provider waits ~10 s per instance create and destroy
def test_apply_and_destroy_on_moto(
    terraform_bin: str,
    tf_root: tuple[Path, dict[str, str]],
    moto_endpoint: str,
    tmp_path: Path,
) -> None:
    """Apply the default stack to moto, check what it built through boto3, destroy it.

    What moto (5.2) cannot do, and how this test works around it:
    - MonitorInstances is not implemented (HTTP 500): detailed_monitoring = false here
      (the plan-only test checks monitoring = true).
    - The ALB, its target groups, listeners and attachments do apply on moto, but the
      provider waits ~60 s for the load balancer to turn "active": enable_alb stays false
      here and the ALB is checked by the plan-only test.
    - The lifecycle rule applies too, but the provider waits for 10 consecutive identical
      reads (~55 s, the same on AWS): noncurrent_version_retention_days = null here.
    - moto reports an instance's security groups only on its network interface and a
      self-referencing rule as "<account>/sg-...", so a second plan is never empty: no
      idempotency check.
    - No instance boots, so user data is only rendered and syntax-checked (bash -n).
    Load generators are left out too (each instance costs ~10 s of provider waiting on
    create and on destroy): the plan-only test and the template test cover them.
    """
    workdir, env = tf_root
    ec2 = aws_client("ec2", moto_endpoint)
    s3 = aws_client("s3", moto_endpoint)
    iam = aws_client("iam", moto_endpoint)
    name = "versus-apply"
    allowed = ["203.0.113.7/32", "2001:db8::/64"]
    tfvars = write_tfvars(
        tmp_path,
        "apply",
        moto_vars(
            moto_endpoint,
            name=name,
            allowed_cidrs=allowed,
            detailed_monitoring=False,
            noncurrent_version_retention_days=None,
        ),
    )
    state = tmp_path / "terraform.tfstate"
    common = ("-no-color", "-lock=false", f"-state={state}")
    run_terraform(
        terraform_bin, workdir, env, "apply", "-auto-approve", *common, f"-var-file={tfvars}"
    )
    try:
        outputs = {
            k: v["value"]
            for k, v in json.loads(
                run_terraform(
                    terraform_bin, workdir, env, "output", "-json", f"-state={state}"
                ).stdout
            ).items()
        }

        # Instances: one GPU host running every framework.
        reservations = ec2.describe_instances(
            Filters=[
                {"Name": "tag:Stack", "Values": [name]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )["Reservations"]
        instances = {tag(i, "Role"): i for r in reservations for i in r["Instances"]}
        assert set(instances) == {"inference"}
        service = instances["inference"]
        assert outputs["instance_ids"] == {"stack-0": service["InstanceId"]}
        assert service["InstanceType"] == "g4dn.xlarge"
        assert service["ImageId"] == MOTO_DEEP_LEARNING_AMI
        assert service["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{name}-instance")
        assert service["MetadataOptions"]["HttpTokens"] == "required"
        assert service["MetadataOptions"]["HttpPutResponseHopLimit"] == 1
        assert service["SubnetId"] == outputs["subnet_id"]
        security_group = outputs["security_group_id"]
        groups = {g["GroupId"] for g in service["NetworkInterfaces"][0]["Groups"]}
        assert groups == {security_group}
        volume_id = service["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
        volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
        assert volume["Encrypted"] is True
        assert volume["VolumeType"] == "gp3"
        assert volume["Size"] == 150

        # Boot scripts: rendered with this stack's values, valid bash.
        bucket = outputs["artifact_bucket"]
        service_script = instance_user_data(ec2, service["InstanceId"])
        assert_bash_syntax(service_script)
        assert f"VERSUS_ARTIFACTS=s3://{bucket}/models\n" in service_script
        assert REPO_URL in service_script
        runtimes = sorted(FRAMEWORK_PORTS)  # the default: the whole table
        proxies = [f"{name}-proxy" for name in runtimes]
        assert (f'VERSUS_SERVICES="{" ".join(runtimes)} {" ".join(proxies)} '
                'prometheus grafana"') in service_script

        # Security group: service and monitoring ports from allowed_cidrs only, plus traffic
        # inside the group; nothing else (no SSH without key_name, no Locust without loadgen).
        group = ec2.describe_security_groups(GroupIds=[security_group])["SecurityGroups"][0]
        public_ports = set()
        for permission in group["IpPermissions"]:
            cidrs = [r["CidrIp"] for r in permission["IpRanges"]] + [
                r["CidrIpv6"] for r in permission["Ipv6Ranges"]
            ]
            if permission["UserIdGroupPairs"]:
                assert not cidrs
                assert [p["GroupId"] for p in permission["UserIdGroupPairs"]] == [security_group]
                continue
            assert sorted(cidrs) == sorted(allowed), permission
            assert permission["FromPort"] == permission["ToPort"]
            public_ports.add(permission["FromPort"])
        assert public_ports == set(FRAMEWORK_PORTS.values()) | {9090, 3000}

        # Bucket: private, encrypted, versioned, TLS only, ACLs disabled.
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        sse = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
        assert sse["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert all(block.values()) and len(block) == 4
        ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
        assert ownership["Rules"][0]["ObjectOwnership"] == "BucketOwnerEnforced"
        bucket_policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
        assert bucket_policy["Statement"][0]["Effect"] == "Deny"
        assert bucket_policy["Statement"][0]["Condition"]["Bool"]["aws:SecureTransport"] == "false"

        # Role: read-only on the artifact prefix, nothing attached besides.
        role = f"{name}-instance"
        assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
        assert iam.list_role_policies(RoleName=role)["PolicyNames"] == ["read-model-artifacts"]
        document = iam.get_role_policy(RoleName=role, PolicyName="read-model-artifacts")[
            "PolicyDocument"
        ]
        if isinstance(document, str):
            document = json.loads(document)
        statements = {s["Sid"]: s for s in document["Statement"]}
        assert set(statements) == {"ReadModelArtifacts", "ListModelArtifacts"}
        assert all(s["Effect"] == "Allow" for s in statements.values())
        assert statements["ReadModelArtifacts"]["Action"] == "s3:GetObject"
        assert statements["ReadModelArtifacts"]["Resource"] == f"arn:aws:s3:::{bucket}/models/*"
        assert statements["ListModelArtifacts"]["Action"] == "s3:ListBucket"
        assert statements["ListModelArtifacts"]["Resource"] == f"arn:aws:s3:::{bucket}"
        prefixes = statements["ListModelArtifacts"]["Condition"]["StringLike"]["s3:prefix"]
        assert sorted(prefixes) == ["models", "models/*"]
        profile = iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"]
        assert [r["RoleName"] for r in profile["Roles"]] == [role]

        # Outputs: URLs of the host for each framework, monitoring, artifacts.
        host = service["PublicDnsName"] or service["PublicIpAddress"]
        assert outputs["service_urls"] == {
            fw: f"http://{host}:{port}" for fw, port in FRAMEWORK_PORTS.items()
        }
        assert outputs["service_instance_urls"]["onnx"] == [f"http://{host}:8004"]
        assert outputs["grafana_url"] == f"http://{host}:3000"
        assert outputs["prometheus_url"] == f"http://{host}:9090"
        assert "alb_dns_name" not in outputs  # null outputs are left out
        assert "locust_url" not in outputs
        assert outputs["artifact_uri"] == f"s3://{bucket}/models"
        assert outputs["artifact_push_command"] == (
            f"python -m shared.artifacts push models/ s3://{bucket}/models"
        )
    finally:
        destroyed = run_terraform(
            terraform_bin, workdir, env, "destroy", "-auto-approve", "-refresh=false", *common,
            f"-var-file={tfvars}", check=False,
        )  # fmt: skip
    assert destroyed.returncode == 0, destroyed.stderr
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    left = ec2.describe_instances(
        Filters=[
            {"Name": "tag:Stack", "Values": [name]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )["Reservations"]
    assert left == []


def tag(resource: dict[str, Any], key: str) -> str | None:
    """Value of tag ``key`` in a boto3 description, None when absent."""
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}.get(key)


def test_runtime_ports_match_the_runtime_table() -> None:
    """variables.tf's framework_ports is the runtime table's names and ports (HCL cannot import
    it): a runtime missing or on another port is named with the file."""
    text = (TERRAFORM_DIR / "variables.tf").read_text()
    block = re.search(r"framework_ports = \{(.*?)\}", text, re.S).group(1)
    ports = {name: int(port) for name, port in re.findall(r"(\w+)\s*=\s*(\d+)", block)}
    for name, port in FRAMEWORK_PORTS.items():
        assert ports.get(name) == port, (
            f"runtime {name!r}: terraform/variables.tf framework_ports has {ports.get(name)}, "
            f"shared/runtimes.py {port}")
    extra = set(ports) - set(FRAMEWORK_PORTS)
    assert not extra, f"terraform/variables.tf lists runtimes the table lacks: {extra}"
