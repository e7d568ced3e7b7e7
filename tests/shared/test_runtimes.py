"""The runtime table: its rows are consistent, plugin modules add rows, and its command line
answers the image build (``extra``) and shell scripts (``names``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from shared.runtimes import (
    ARTIFACTS,
    BUILTIN_RUNTIMES,
    BUILTIN_VARIANTS,
    MODULES_VARIABLE,
    PRECISIONS,
    Runtime,
    RuntimeTableError,
    _check,
    base_runtimes,
    get_runtime,
    main,
    runtime_names,
    runtimes,
)

REPO = Path(__file__).resolve().parents[2]


def extras() -> set[str]:
    with open(REPO / "pyproject.toml", "rb") as f:
        return set(tomllib.load(f)["project"]["optional-dependencies"])


def test_every_row_is_installable_importable_and_distinct() -> None:
    rows = list(runtimes().values())
    assert [r.name for r in rows] == [r.name for r in (*BUILTIN_RUNTIMES, *BUILTIN_VARIANTS)]
    assert len({r.port for r in rows}) == len(rows)
    assert len({r.platform for r in base_runtimes().values()}) == len(BUILTIN_RUNTIMES)
    for row in rows:
        assert {row.extra, row.gpu_extra} <= extras(), row.name
        assert row.artifact in ARTIFACTS, row.name
        module, _, cls = row.predictor.partition(":")
        assert (REPO / (module.replace(".", "/") + ".py")).is_file() and cls, row.name


def test_variants_are_settings_of_a_base_row() -> None:
    """A variant is its base row with another precision/compile setting (and, for int8, the
    derived artifact made from the base's artifact); the base rows stay fp32, uncompiled."""
    assert list(base_runtimes()) == ["torch", "tensorflow", "jax", "onnx", "openvino"]
    assert {r.name: (r.precision, r.compile) for r in BUILTIN_VARIANTS} == {
        "torch-bf16": ("bf16", False), "torch-compile": ("fp32", True),
        "tensorflow-xla": ("fp32", True), "jax-bf16": ("bf16", False),
        "onnx-int8": ("int8", False), "openvino-bf16": ("bf16", False),
        "openvino-int8": ("int8", False)}
    for row in BUILTIN_VARIANTS:
        base = get_runtime(row.variant_of)
        assert row.name.startswith(f"{base.name}-") and row.predictor == base.predictor
        assert (base.precision, base.compile, base.variant_of) == ("fp32", False, "")
        derived = ARTIFACTS[row.artifact].derived_from
        assert row.artifact == base.artifact or derived == base.artifact, row.name
        assert (row.precision == "int8") == bool(derived), row.name


def test_a_variant_row_must_name_a_base_and_a_known_precision(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin(tmp_path, monkeypatch, ROW.format(port=8099).replace(
        '"#000000")', '"#000000", precision="fp8")'))
    message = re.escape(f"precision 'fp8' is not one of {PRECISIONS}")
    with pytest.raises(RuntimeTableError, match=message):
        runtimes()
    monkeypatch.setenv(MODULES_VARIABLE, "")
    bad = Runtime("torch-x", "X", "services.predictors.onnx:OnnxPredictor", "torch", "torch",
                  "torch", 8098, "x", (), "#000000", variant_of="torch")
    with pytest.raises(RuntimeTableError, match="same predictor and extras"):
        _check([*BUILTIN_RUNTIMES, bad])


def test_onnx_runtime_and_openvino_serve_the_same_artifact() -> None:
    assert get_runtime("onnx").artifact == get_runtime("openvino").artifact == "onnx"


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(RuntimeTableError, match="unknown runtime 'mxnet'; choose one of torch"):
        get_runtime("mxnet")
    with pytest.raises(ValueError, match="accelerator"):
        get_runtime("jax").extra_for("tpu")


def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """Make a plugin module of ``body`` (named after the test: modules stay imported)."""
    name = "rows_" + tmp_path.name.replace("-", "_")
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv(MODULES_VARIABLE, name)


ROW = ('from shared.runtimes import Runtime\nRUNTIMES = [Runtime("mine", "Mine", "m:P", "onnx", '
       '"onnx", "onnx", {port}, "mine_onnx", (), "#000000")]\n')


def test_a_plugin_module_adds_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin(tmp_path, monkeypatch, ROW.format(port=8099))
    assert runtime_names()[-1] == "mine"
    assert get_runtime("mine") == Runtime("mine", "Mine", "m:P", "onnx", "onnx", "onnx", 8099,
                                          "mine_onnx", (), "#000000")


def test_a_plugin_row_may_not_take_a_used_port(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    plugin(tmp_path, monkeypatch, ROW.format(port=8001))
    with pytest.raises(RuntimeTableError, match="port 8001 already used by 'torch'"):
        runtimes()


def test_a_missing_plugin_module_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODULES_VARIABLE, "no_such_module_here")
    with pytest.raises(RuntimeTableError, match="cannot import 'no_such_module_here'"):
        runtimes()


def test_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["names"]) == 0
    assert capsys.readouterr().out.split() == list(runtime_names())
    assert main(["extra", "onnx", "gpu"]) == 0 and capsys.readouterr().out == "onnx-gpu\n"
    assert main(["json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in table["runtimes"]] == list(runtime_names())
    assert main(["extra", "mxnet", "cpu"]) == 2
    assert "unknown runtime 'mxnet'" in capsys.readouterr().err


def test_the_table_needs_only_the_standard_library() -> None:
    """The image build runs it before any dependency is installed."""
    code = ("import sys; sys.modules['numpy'] = None; import shared.runtimes as r; "
            "print(r.get_runtime('jax').extra_for('gpu'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out == "jax-gpu\n"
