"""shared.artifacts against a real HTTP S3 (moto's threaded server on 127.0.0.1), with fake
credentials: never real AWS."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from shared import artifacts
from shared.artifacts import ArtifactError, S3Uri, parse_s3_uri, pull, push, resolve_model_uri
from shared.artifacts import _s3 as s3_layer
from shared.artifacts.__main__ import main
from shared.artifacts.uri import check_relative_key, local_path
from shared.manifest import Manifest, read_manifest, verify_model_file, write_manifest

pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

CLASSES = [f"c{i}" for i in range(8)]
MODEL_FILES = {"torch": "model.pt", "onnx": "model.onnx"}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def endpoint():
    """A moto S3 server on a free local port, shared by this module's tests."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module", autouse=True)
def aws_env(endpoint, tmp_path_factory):
    """Fake credentials, no profile or instance metadata, the moto endpoint (module-wide)."""
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as mp:
        for name in (
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.setenv("AWS_CONFIG_FILE", str(home / "no-aws-config"))
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "no-aws-credentials"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv(artifacts.ENDPOINT_ENV, endpoint)
        yield


@pytest.fixture(autouse=True)
def model_cache(monkeypatch, tmp_path) -> Path:
    """Each test gets its own default model cache."""
    monkeypatch.setenv(artifacts.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def s3(aws_env):
    """One client for the module: building one costs ~0.2 s (the CLI tests build their own)."""
    return artifacts.make_client()


@pytest.fixture
def bucket(s3):
    """A fresh bucket per test (the moto server outlives tests)."""
    name = f"versus-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def make_model(root: Path, framework: str, version: str = "1", payload: bytes = b"") -> Path:
    """models/bloodmnist/<framework>/<version>/ with a fake model file and a valid manifest."""
    directory = root / "bloodmnist" / framework / version
    directory.mkdir(parents=True)
    name = MODEL_FILES[framework]
    (directory / name).write_bytes(payload or f"{framework}-weights-".encode() * 1000)
    (directory / "history.jsonl").write_text('{"epoch": 1, "loss": 0.5}\n')
    (directory / "curves.png").write_bytes(b"\x89PNG fake curves")
    manifest = Manifest.for_model_file(
        directory,
        name,
        dataset="bloodmnist",
        task="multiclass",
        class_names=CLASSES,
        framework=framework,
        framework_version="1.0",
        architecture={"name": "resnet50"},
        input={"size": 64, "mean": [0.5] * 3, "std": [0.25] * 3},
        parameter_count=1,
    )
    write_manifest(directory, manifest)
    return directory


@pytest.fixture
def models(tmp_path) -> Path:
    root = tmp_path / "models"
    for framework in MODEL_FILES:
        make_model(root, framework)
    return root


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def remote_keys(s3, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


class Lines(list):
    """An ``echo`` that records progress lines."""

    def __call__(self, line: str) -> None:
        self.append(line)

    def verbs(self, word: str) -> list[str]:
        return [line for line in self if line.startswith(word)]


# --------------------------------------------------------------------------- push / pull


def test_push_pull_round_trip(models, bucket, s3, tmp_path):
    lines = Lines()
    report = push(models, f"s3://{bucket}/runs/a", client=s3, echo=lines)
    assert len(report.transferred) == 8 and not report.skipped
    torch_dir = models / "bloodmnist/torch/1"
    manifest = read_manifest(torch_dir)
    head = s3.head_object(Bucket=bucket, Key="runs/a/bloodmnist/torch/1/model.pt")
    assert head["Metadata"]["sha256"] == manifest.sha256
    torch_lines = [line for line in lines.verbs("uploaded") if "/torch/" in line]
    assert "model.pt" in torch_lines[0] and "manifest.json" in torch_lines[-1]  # order

    dest = tmp_path / "pulled"
    report = pull(f"s3://{bucket}/runs/a", dest, client=s3, echo=Lines())
    assert len(report.transferred) == 8
    assert local_files(dest) == local_files(models)
    verify_model_file(dest / "bloodmnist/torch/1", read_manifest(dest / "bloodmnist/torch/1"))


def test_second_push_and_pull_transfer_nothing(models, bucket, s3, tmp_path):
    uri = f"s3://{bucket}/p"
    push(models, uri, client=s3, echo=Lines())
    lines = Lines()
    again = push(models, uri, client=s3, echo=lines)
    assert again.transferred == [] and len(again.skipped) == 8
    assert len(lines.verbs("skipped")) == 8 and not lines.verbs("uploaded")

    dest = tmp_path / "pulled"
    pull(uri, dest, client=s3, echo=Lines())
    lines = Lines()
    again = pull(uri, dest, client=s3, echo=lines)
    assert again.transferred == [] and again.bytes_transferred == 0
    assert not lines.verbs("downloaded")


def test_push_one_model_dir_and_pull_it_back(models, bucket, s3, tmp_path):
    push(models / "bloodmnist/onnx/1", f"s3://{bucket}/m", client=s3, echo=Lines())
    assert remote_keys(s3, bucket) == [
        f"m/bloodmnist/onnx/1/{name}"
        for name in ("curves.png", "history.jsonl", "manifest.json", "model.onnx")
    ]
    dest = tmp_path / "one"
    pull(f"s3://{bucket}/m/bloodmnist/onnx/1", dest, client=s3, echo=Lines())
    assert local_files(dest) == local_files(models / "bloodmnist/onnx/1")


def test_push_refuses_a_model_that_fails_its_manifest(models, bucket, s3):
    (models / "bloodmnist/onnx/1/model.onnx").write_bytes(b"swapped weights")
    with pytest.raises(ArtifactError, match="refusing to push .*size mismatch"):
        push(models, f"s3://{bucket}/p", client=s3, echo=Lines())
    assert remote_keys(s3, bucket) == []  # nothing at all, not even the good torch model


def _assert_nothing_written(dest: Path) -> None:
    """No file at all under ``dest``: no model, no manifest, no ``.part`` leftovers."""
    assert not dest.exists() or [p for p in dest.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("damage", ["same-size", "truncated"])
def test_pull_refuses_a_corrupt_object(models, bucket, s3, tmp_path, damage):
    uri = f"s3://{bucket}/p"
    push(models / "bloodmnist/torch/1", uri, client=s3, echo=Lines())
    key = "p/bloodmnist/torch/1/model.pt"
    good = (models / "bloodmnist/torch/1/model.pt").read_bytes()
    bad = bytes(len(good)) if damage == "same-size" else good[: len(good) // 2]
    s3.put_object(Bucket=bucket, Key=key, Body=bad)

    dest = tmp_path / "pulled"
    expected = "corrupt object: expected sha256" if damage == "same-size" else "partial"
    with pytest.raises(ArtifactError, match=f"{key}: .*{expected}") as info:
        pull(uri, dest, client=s3, echo=Lines())
    if damage == "same-size":
        assert hashlib.sha256(bad).hexdigest() in str(info.value)
    _assert_nothing_written(dest)


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, "read-timeout"])
def test_interrupted_pull_leaves_no_partial_file(
    models, bucket, s3, tmp_path, monkeypatch, interruption
):
    push(models / "bloodmnist/torch/1", f"s3://{bucket}/p", client=s3, echo=Lines())

    def half_then_fail(client, bucket_, key, fileobj, callback):
        fileobj.write(b"half of the model")
        if interruption == "read-timeout":
            from botocore.exceptions import ReadTimeoutError

            raise ReadTimeoutError(endpoint_url="http://s3")
        raise interruption

    monkeypatch.setattr(s3_layer, "_download_into", half_then_fail)
    dest = tmp_path / "pulled"
    error = ArtifactError if interruption == "read-timeout" else KeyboardInterrupt
    with pytest.raises(error):
        pull(f"s3://{bucket}/p/bloodmnist/torch/1", dest, client=s3, echo=Lines())
    _assert_nothing_written(dest)


# --------------------------------------------------------------------------- resolve (cache)


def test_resolve_model_uri_pulls_once_into_the_cache(models, bucket, s3, model_cache):
    push(models, f"s3://{bucket}/prod", client=s3, echo=Lines())
    uri = f"s3://{bucket}/prod/bloodmnist/torch/1"
    lines = Lines()
    path = resolve_model_uri(uri, client=s3, echo=lines)
    assert path == (model_cache / bucket / "prod/bloodmnist/torch/1").resolve()
    assert verify_model_file(path, read_manifest(path)).name == "model.pt"
    assert len(lines.verbs("downloaded")) == 4

    again = Lines()
    assert resolve_model_uri(uri, client=s3, echo=again) == path
    assert not again.verbs("downloaded") and len(again.verbs("skipped")) == 4
    assert resolve_model_uri(str(models)) == models  # local paths pass through


def test_resolve_model_uri_is_safe_for_concurrent_workers(models, bucket, s3, tmp_path):
    push(models / "bloodmnist/torch/1", f"s3://{bucket}/prod", client=s3, echo=Lines())
    uri = f"s3://{bucket}/prod/bloodmnist/torch/1"
    lines, errors, paths = Lines(), [], []

    def worker():
        try:
            cache = tmp_path / "shared-cache"
            paths.append(resolve_model_uri(uri, cache, client=s3, echo=lines))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(paths)) == 1
    assert len([line for line in lines.verbs("downloaded") if "model.pt" in line]) == 1
    assert not list(paths[0].parent.rglob("*.part"))


@pytest.mark.parametrize("suffix", ["", "/prod", "/prod/bloodmnist"])
def test_resolve_model_uri_wants_one_model_dir(models, bucket, s3, suffix):
    push(models, f"s3://{bucket}/prod", client=s3, echo=Lines())
    with pytest.raises(ArtifactError, match="whole bucket|not one model directory"):
        resolve_model_uri(f"s3://{bucket}{suffix}", client=s3, echo=Lines())


# --------------------------------------------------------------------------- hostile keys


@pytest.mark.parametrize(
    "key", ["../../etc/passwd", "a/../../b", "/abs", "a//b", "./a", "a\\..\\b", "a/./b", ""]
)
def test_unsafe_relative_keys_are_refused(key, tmp_path):
    with pytest.raises(ArtifactError, match="unsafe"):
        local_path(tmp_path, key)


def test_pull_refuses_a_listing_with_a_hostile_key(models, bucket, s3, tmp_path):
    push(models / "bloodmnist/torch/1", f"s3://{bucket}/p", client=s3, echo=Lines())
    s3.put_object(Bucket=bucket, Key="p/bloodmnist/torch/1/../../../../../etc/passwd", Body=b"x")
    assert any(".." in k for k in remote_keys(s3, bucket))
    dest = tmp_path / "deep/dest"
    assert main(["pull", f"s3://{bucket}/p", str(dest), "-q"]) == 2
    assert not dest.exists() and not (tmp_path / "etc").exists()


# --------------------------------------------------------------------------- upload_tree


def test_upload_tree_sets_content_types_and_skips_identical(tmp_path, bucket, s3):
    report = tmp_path / "report"
    (report / "plots").mkdir(parents=True)
    files = {
        "index.html": "text/html; charset=utf-8",
        "plots/latency.png": "image/png",
        "results.json": "application/json",
        "results.csv": "text/csv; charset=utf-8",
        "README.md": "text/markdown; charset=utf-8",
        "env.bin": "application/octet-stream",
    }
    for name in files:
        (report / name).write_bytes(b"content of " + name.encode())
    (report / ".DS_Store").write_bytes(b"junk")
    first = artifacts.upload_tree(report, f"s3://{bucket}/reports/run-1", client=s3, echo=Lines())
    assert len(first.transferred) == len(files)
    for name, ctype in files.items():
        head = s3.head_object(Bucket=bucket, Key=f"reports/run-1/{name}")
        assert head["ContentType"] == ctype
    assert "reports/run-1/.DS_Store" not in remote_keys(s3, bucket)
    again = artifacts.upload_tree(report, f"s3://{bucket}/reports/run-1", client=s3, echo=Lines())
    assert again.transferred == [] and len(again.skipped) == len(files)


# --------------------------------------------------------------------------- CLI


def test_cli_push_ls_pull(models, bucket, tmp_path, capsys):
    uri = f"s3://{bucket}/cli"
    assert main(["push", str(models), uri]) == 0
    out = capsys.readouterr().out
    assert "uploaded" in out and "pushed 8 file(s)" in out
    assert main(["ls", uri]) == 0
    listing = capsys.readouterr().out.splitlines()
    torch_sha = read_manifest(models / "bloodmnist/torch/1").sha256[:12]
    assert listing[0].split()[:3] == ["MODEL", "FRAMEWORK", "VERSION"]
    assert any(torch_sha in row and "torch" in row and row.endswith("ok") for row in listing)
    assert main(["pull", uri, str(tmp_path / "out")]) == 0
    assert "pulled 8 file(s)" in capsys.readouterr().out
    assert main(["resolve", f"{uri}/bloodmnist/onnx/1", "-q"]) == 0
    resolved = Path(capsys.readouterr().out.strip())
    assert (resolved / "model.onnx").is_file()


def _clear_credentials(monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")


@pytest.mark.parametrize(
    ("argv", "message", "setup"),
    [
        (["pull", "http://bucket/x", "out"], "not an S3 URI", None),
        (["push", "{models}", "s3://Bad_Bucket/x"], "invalid bucket name", None),
        (["push", "{models}", "s3://versus-no-such-bucket/x"], "bucket does not exist", None),
        (["pull", "s3://versus-no-such-bucket/x", "out"], "bucket does not exist", None),
        (["ls", "s3://{bucket}/empty"], "no models", None),
        (["push", "{models}", "s3://{bucket}/x"], "no AWS credentials", _clear_credentials),
        (["push", "{tmp}/missing", "s3://{bucket}/x"], "not a directory", None),
    ],
)
def test_cli_errors_are_one_line_exit_2(
    argv, message, setup, models, bucket, tmp_path, capsys, monkeypatch
):
    if setup:
        setup(monkeypatch)
    values = {"models": models, "bucket": bucket, "tmp": tmp_path}
    monkeypatch.chdir(tmp_path)
    assert main([a.format(**values) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_pull_of_a_tampered_side_file_exits_2(models, bucket, s3, tmp_path, capsys):
    """history.jsonl has no manifest entry: it is checked against push's sha256 metadata."""
    source = models / "bloodmnist/torch/1/history.jsonl"
    push(models / "bloodmnist/torch/1", f"s3://{bucket}/p", client=s3, echo=Lines())
    key = "p/bloodmnist/torch/1/history.jsonl"
    metadata = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
    tampered = source.read_bytes().replace(b"0.5", b"0.1")
    s3.put_object(Bucket=bucket, Key=key, Body=tampered, Metadata=metadata)
    out = tmp_path / "out"
    assert main(["pull", f"s3://{bucket}/p", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "corrupt object" in err and key in err
    assert not (out / "bloodmnist/torch/1/manifest.json").exists()
    assert not list(out.rglob("*.part")) and not (out / "bloodmnist/torch/1/history.jsonl").exists()


def test_cli_help_states_defaults(capsys):
    assert main(["resolve", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: $VERSUS_MODEL_CACHE" in text and "(default: $VERSUS_S3_ENDPOINT_URL" in text


# --------------------------------------------------------------------------- URIs, endpoint


def test_parse_s3_uri():
    assert parse_s3_uri("s3://my-bucket/a/b/") == S3Uri("my-bucket", "a/b")
    assert parse_s3_uri("s3://my-bucket") == S3Uri("my-bucket", "")
    assert S3Uri("b", "p").key("x/", "y") == "p/x/y" and S3Uri("b").key("y") == "y"
    for bad in ("s3://", "s3://UPPER/x", "s3://b/x/../y", "bucket/x", "s3://ab/x"):
        with pytest.raises(ArtifactError):
            parse_s3_uri(bad)
    assert check_relative_key("dr/torch/1") == "dr/torch/1"


def test_endpoint_precedence(monkeypatch):
    monkeypatch.delenv(artifacts.ENDPOINT_ENV)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://from-aws-env:9000")
    assert artifacts.make_client().meta.endpoint_url == "http://from-aws-env:9000"
    monkeypatch.setenv(artifacts.ENDPOINT_ENV, "http://from-versus-env:9000")
    assert artifacts.make_client().meta.endpoint_url == "http://from-versus-env:9000"
    flag = artifacts.make_client("http://from-flag:9000")
    assert flag.meta.endpoint_url == "http://from-flag:9000"


def test_ls_flags_a_model_whose_file_is_missing(models, bucket, s3, tmp_path, capsys):
    push(models, f"s3://{bucket}/p", client=s3, echo=Lines())
    s3.delete_object(Bucket=bucket, Key="p/bloodmnist/onnx/1/model.onnx")
    assert main(["ls", f"s3://{bucket}/p"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert any(
        r.startswith("bloodmnist/onnx/1") and r.endswith("missing (interrupted push?)")
        for r in rows
    )
    with pytest.raises(ArtifactError, match="model.onnx: partial or corrupt model"):
        pull(f"s3://{bucket}/p", tmp_path / "out", client=s3, echo=Lines())


def test_big_file_progress_lines_every_ten_percent():
    lines = Lines()
    progress = s3_layer.Progress(lines)
    assert progress.callback("small", s3_layer.BIG_FILE_BYTES - 1) is None
    total = 10 * s3_layer.BIG_FILE_BYTES
    callback = progress.callback("s3://b/model.pt", total)
    for _ in range(40):
        callback(total // 40)
    assert len(lines) == 9 and "10%" in lines[0] and "90%" in lines[-1]


def test_shared_artifacts_imports_without_boto3(monkeypatch):
    code = "import sys, shared.artifacts; assert 'boto3' not in sys.modules, 'boto3 imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ArtifactError, match=r"needs boto3: pip install 'versus\[aws\]'"):
        artifacts.make_client()
