"""`python -m shared.datasets`: inspect output, acquire text, synth wiring, exit codes."""

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import shared.datasets
from shared.datasets import get_dataset_spec, write_kaggle_labels, write_medmnist_npz
from shared.datasets.__main__ import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def blood_npz(tmp_path):
    rng = np.random.default_rng(0)
    splits = {
        s: (rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8), np.arange(n) % 8)
        for s, n in {"train": 24, "val": 8, "test": 8}.items()
    }
    return write_medmnist_npz(tmp_path / "bloodmnist.npz", splits, n_classes=8)


@pytest.fixture
def dr_dir(tmp_path):
    rows = []
    for p in range(1, 11):
        for eye in ("left", "right"):
            rows.append((f"{p}_{eye}", p % 5))
            pixels = np.full((30, 40, 3), 20 * p, np.uint8)
            Image.fromarray(pixels).save(tmp_path / f"{p}_{eye}.jpeg")
    write_kaggle_labels(tmp_path, rows)
    return tmp_path


def test_inspect_bloodmnist_table_and_grid(blood_npz, tmp_path, capsys):
    grid = tmp_path / "out" / "grid.png"
    assert main(["inspect", str(blood_npz), "--grid", str(grid), "--image-size", "32"]) == 0
    out = capsys.readouterr().out
    for name in get_dataset_spec("bloodmnist").class_names:
        assert name in out
    assert "3 immature granulocytes" in out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split()[1:] == ["24", "8", "8", "40"]
    with Image.open(grid) as img:
        assert img.format == "PNG" and img.height == 8 * (32 + 4) + 4


def test_inspect_dr_is_read_only(dr_dir, capsys):
    assert main(["inspect", str(dr_dir)]) == 0
    out = capsys.readouterr().out
    assert "Kaggle 2015" in out and "Proliferative DR" in out
    assert "not written yet" in out
    assert not (dr_dir / "splits.csv").exists()


@pytest.mark.parametrize("bad", ["missing", "text"])
def test_errors_are_one_line_and_exit_2(tmp_path, capsys, bad):
    path = tmp_path / "x.npz"
    if bad == "text":
        path.write_text("hello")
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_usage_errors_and_help(capsys):
    assert main([]) == 2
    assert main(["acquire", "imagenet"]) == 2
    assert main(["synth", "dr", "--balance", "1,2"]) == 2
    assert "5 non-negative weights" in capsys.readouterr().err
    assert main(["inspect", "--help"]) == 0
    assert "(default: 64)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dr", "kaggle competitions download -c diabetic-retinopathy-detection"),
        ("aptos", "kaggle competitions download -c aptos2019-blindness-detection"),
        ("bloodmnist", "https://zenodo.org/records/10519652/files/bloodmnist_224.npz"),
        ("chestxray14", "kaggle datasets download -d nih-chest-xrays/data"),
        ("chestxray14", "https://nihcc.app.box.com/v/ChestXray-NIHCC"),
        ("chestxray14", "batch_download_zips.py"),
    ],
)
def test_acquire_prints_commands(capsys, name, expected):
    assert main(["acquire", name, "--out", "somewhere"]) == 0
    out = capsys.readouterr().out
    assert expected in out and "somewhere" in out


def test_synth_dr_writes_an_inspectable_dataset(tmp_path, capsys):
    out = tmp_path / "dr"
    argv = ["synth", "dr", "--n", "10", "--size", "32", "--out", str(out), "--balance", "uniform"]
    assert main(argv) == 0
    assert (out / "trainLabels.csv").is_file() and len(list(out.glob("*.jpeg"))) == 10
    assert main(["inspect", str(out)]) == 0
    assert "total" in capsys.readouterr().out


def test_synth_chestxray14_then_inspect_with_grid(tmp_path, capsys):
    out = tmp_path / "cxr"
    argv = ["synth", "chestxray14", "--n", "24", "--size", "32", "--out", str(out), "--seed", "1"]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    for name in ("Data_Entry_2017.csv", "train_val_list.txt", "test_list.txt"):
        assert (out / name).is_file()
    assert len(list(out.glob("images_001/images/*.png"))) == 24
    grid = tmp_path / "grid.png"
    assert main(["inspect", str(out), "--grid", str(grid), "--image-size", "32"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("chestxray14:") and "Pleural_Thickening" in text
    assert "not written yet" in text and not (out / "splits.csv").exists()
    images = next(line for line in text.splitlines() if line.startswith("images"))
    assert images.split()[-1] == "24"
    assert grid.is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["synth", "chestxray14", "--n", "2"], "n must be >= 3"),
        (["synth", "chestxray14", "--size", "8"], "size must be >= 32"),
        (["synth", "chestxray14", "--n", "many"], "invalid int value"),
        (["inspect", "{empty}", "--dataset", "chestxray14"], "no Data_Entry_2017.csv"),
    ],
)
def test_chestxray14_bad_arguments_exit_2(tmp_path, capsys, argv, message):
    argv = [a.replace("{empty}", str(tmp_path)) for a in argv]
    assert main([*argv, "--out", str(tmp_path / "o")] if argv[0] == "synth" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_synth_bloodmnist_passes_arguments(tmp_path, monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("shared.datasets.synth_blood")
    fake.generate_bloodmnist = lambda out, n, size=64, seed=0: calls.append((out, n, size, seed))
    monkeypatch.setitem(sys.modules, "shared.datasets.synth_blood", fake)
    monkeypatch.setattr(shared.datasets, "synth_blood", fake, raising=False)
    out = tmp_path / "b.npz"
    assert main(["synth", "bloodmnist", "--n", "80", "--size", "32", "--out", str(out)]) == 0
    assert calls == [(out, 80, 32, 0)]


def test_synth_bloodmnist_real_generator_round_trips(tmp_path, capsys):
    pytest.importorskip("shared.datasets.synth_blood")
    out = tmp_path / "bloodmnist_32.npz"
    assert main(["synth", "bloodmnist", "--n", "80", "--size", "32", "--out", str(out)]) == 0
    assert main(["inspect", str(out)]) == 0
    total = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("total"))
    assert total.split()[-1] == "80"


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "shared.datasets", "acquire", "aptos"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "train_images" in result.stdout
