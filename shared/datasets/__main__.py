"""Command line: ``python -m shared.datasets {synth,inspect,acquire} ...`` (or versus-datasets).

    synth dr --n 2000 --size 512 --out data/dr-synth      synthetic fundus set, Kaggle layout
    synth bloodmnist --n 4000 --size 64 --out data/bloodmnist_64.npz
    synth chestxray14 --n 2000 --size 128 --out data/chestxray14-synth   NIH layout
    inspect PATH [--grid out.png] [--image-size 64]       counts per class/split + sample grid
    acquire {dr,aptos,bloodmnist,chestxray14,imagefolder} print the real download commands

Bad input prints one ``error: ...`` line on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from shared import imaging

from .registry import DATASET_NAMES, DatasetError

ZENODO_RECORD = "https://zenodo.org/records/10519652"
ACQUIRE = {
    "dr": """\
# Kaggle 2015 Diabetic Retinopathy Detection: 35,126 labelled fundus JPEGs (tens of GB).
# Needs a Kaggle API token (~/.kaggle/kaggle.json) and the competition rules accepted at
# https://www.kaggle.com/c/diabetic-retinopathy-detection/rules
pip install kaggle
kaggle competitions download -c diabetic-retinopathy-detection -p {out}
cd {out} && unzip diabetic-retinopathy-detection.zip 'train.zip.*' trainLabels.csv.zip
7z x train.zip.001        # multi-part archive -> train/*.jpeg (p7zip)
unzip trainLabels.csv.zip # -> trainLabels.csv (image,level)
cd - && python -m shared.datasets inspect {out}""",
    "aptos": """\
# APTOS 2019 Blindness Detection: 3,662 labelled fundus PNGs (~10 GB).
# Needs a Kaggle API token (~/.kaggle/kaggle.json) and the competition rules accepted at
# https://www.kaggle.com/c/aptos2019-blindness-detection/rules
pip install kaggle
kaggle competitions download -c aptos2019-blindness-detection -p {out}
unzip {out}/aptos2019-blindness-detection.zip -d {out}   # -> train.csv, train_images/*.png
python -m shared.datasets inspect {out}""",
    "bloodmnist": """\
# MedMNIST BloodMNIST (17,092 images, 8 classes, official splits; CC BY 4.0), Zenodo record
# {record} -- fetch the sizes you need (bloodmnist.npz is 28 px).
mkdir -p {out}
"""
    + "\n".join(
        f'curl -L --fail -o {{out}}/{name} "{{record}}/files/{name}?download=1"'
        for name in (
            "bloodmnist.npz",
            "bloodmnist_64.npz",
            "bloodmnist_128.npz",
            "bloodmnist_224.npz",
        )
    )
    + "\npython -m shared.datasets inspect {out}",
    "chestxray14": """\
# NIH ChestX-ray14: 112,120 frontal chest radiographs (1024 x 1024 PNG, ~45 GB), 30,805
# patients, 14 findings. NIH places no restriction on use; acknowledge the NIH Clinical Center
# and cite Wang et al., CVPR 2017. Either source gives the layout python -m shared.datasets
# reads: Data_Entry_2017*.csv, train_val_list.txt, test_list.txt and images/ (NIH) or
# images_001/images/ ... images_012/images/ (Kaggle).
#
# a) the NIH box folder {nih}
#    download Data_Entry_2017_v2020.csv, train_val_list.txt, test_list.txt and
#    batch_download_zips.py into {out} (browser), then fetch and unpack the 12 tarballs:
mkdir -p {out} && cd {out}
python3 batch_download_zips.py        # -> images_01.tar.gz ... images_12.tar.gz
for f in images_*.tar.gz; do tar -xzf "$f"; done   # -> images/*.png
cd -
#
# b) the Kaggle mirror (needs a Kaggle API token in ~/.kaggle/kaggle.json):
pip install kaggle
kaggle datasets download -d nih-chest-xrays/data -p {out}
unzip {out}/data.zip -d {out}   # -> Data_Entry_2017.csv, *_list.txt, images_0NN/images/*.png
#
python -m shared.datasets inspect {out}""",
    "imagefolder": """\
# Any <root>/<split>/<class>/*.jpg folder works (splits train, val, test; a missing val, or
# val and test, is carved out of train). Example: Kaggle's Intel Image Classification, 6
# scene classes, ~25k 150x150 JPEGs in seg_train/seg_train/<class>/ and seg_test/seg_test/
# (seg_pred/ has no labels and is ignored). Needs a Kaggle API token (~/.kaggle/kaggle.json).
pip install kaggle
kaggle datasets download -d puneet6060/intel-image-classification -p {out}
unzip {out}/intel-image-classification.zip -d {out}
python -m shared.datasets inspect {out}""",
}
DEFAULT_ACQUIRE_DIRS = {
    "dr": "data/dr",
    "aptos": "data/aptos",
    "bloodmnist": "data/bloodmnist",
    "chestxray14": "data/chestxray14",
    "imagefolder": "data/intel-images",
}
NIH_BOX_FOLDER = "https://nihcc.app.box.com/v/ChestXray-NIHCC"


def _balance(text: str) -> tuple[float, ...] | None:
    """--balance: 'kaggle' (generator default), 'uniform', or five comma-separated weights."""
    if text == "kaggle":
        return None
    if text == "uniform":
        return (0.2,) * 5
    try:
        weights = tuple(float(w) for w in text.split(","))
    except ValueError:
        weights = ()
    if len(weights) != 5 or min(weights) < 0 or sum(weights) <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: want 'kaggle', 'uniform' or 5 non-negative weights like 1,1,1,1,1"
        )
    return tuple(w / sum(weights) for w in weights)


def _synth_parser(
    kinds: argparse._SubParsersAction, name: str, help_text: str, *, n: tuple[int, str],
    size: tuple[int, str], out: tuple[str, str],
) -> argparse.ArgumentParser:
    """``synth <name>`` with the options every generator takes: --n, --size, --out, --seed
    (each given as (default, help))."""
    parser = kinds.add_parser(name, help=help_text)
    parser.add_argument("--n", type=int, default=n[0], help=f"{n[1]} (default: {n[0]})")
    parser.add_argument(
        "--size", type=int, default=size[0], help=f"{size[1]} (default: {size[0]})"
    )
    parser.add_argument(
        "--out", type=Path, default=Path(out[0]), help=f"{out[1]} (default: {out[0]})"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return parser


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.datasets",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="write a synthetic dataset")
    kinds = synth.add_subparsers(dest="dataset", required=True)
    sdr = _synth_parser(
        kinds, "dr", "synthetic fundus photos in the Kaggle 2015 layout",
        n=(2000, "images, two per patient"), size=(512, "short side in px"),
        out=("data/dr-synth", "output directory"),
    )
    sdr.add_argument(
        "--balance",
        type=_balance,
        default="kaggle",
        help="grade mix: kaggle, uniform or 5 weights (default: kaggle)",
    )
    sdr.add_argument(
        "--workers", type=int, default=1, help="render processes; output is identical (default: 1)"
    )
    _synth_parser(
        kinds, "bloodmnist", "synthetic blood cells in the MedMNIST .npz layout",
        n=(4000, "images over all splits"), size=(64, "image side in px"),
        out=("data/bloodmnist_64.npz", "output .npz"),
    )
    _synth_parser(
        kinds, "chestxray14", "synthetic chest radiographs in the NIH ChestX-ray14 layout",
        n=(2000, "images over all patients"), size=(128, "image side in px"),
        out=("data/chestxray14-synth", "output directory"),
    )

    ins = commands.add_parser("inspect", help="counts per class and split, sample grid PNG")
    ins.add_argument("path", type=Path, help="dataset file or directory")
    ins.add_argument(
        "--grid",
        type=Path,
        default=None,
        help="write a labelled sample grid PNG here (default: none)",
    )
    ins.add_argument(
        "--image-size", type=int, default=64, help="grid cell size in px (default: 64)"
    )
    ins.add_argument("--per-class", type=int, default=4, help="grid samples per class (default: 4)")
    ins.add_argument(
        "--dataset",
        choices=DATASET_NAMES,
        default=None,
        help="dataset name (default: detected from the files)",
    )
    ins.add_argument(
        "--split-seed", type=int, default=0, help="seed for a DR split not yet written (default: 0)"
    )

    acq = commands.add_parser("acquire", help="print the commands that download a real dataset")
    acq.add_argument("dataset", choices=sorted(ACQUIRE), help="which dataset")
    acq.add_argument(
        "--out",
        default=None,
        help="target directory (default: data/<dataset>)",
    )
    return parser


def _synth(args: argparse.Namespace) -> str:
    if args.dataset == "dr":
        from . import synth_dr

        kwargs = {} if args.balance is None else {"class_balance": args.balance}
        out = synth_dr.generate_dr(
            args.out, args.n, size=args.size, seed=args.seed, workers=args.workers, **kwargs
        )
    elif args.dataset == "chestxray14":
        from . import synth_chestxray14

        out = synth_chestxray14.generate_chestxray14(
            args.out, args.n, size=args.size, seed=args.seed
        )
    else:
        from . import synth_blood

        out = synth_blood.generate_bloodmnist(args.out, args.n, size=args.size, seed=args.seed)
    return f"wrote {out}\ninspect it: python -m shared.datasets inspect {out} --grid grid.png"


def _inspect(args: argparse.Namespace) -> str:
    from .inspect import inspect_dataset

    for flag in ("image_size", "per_class"):
        if getattr(args, flag) < 1:
            raise DatasetError(f"--{flag.replace('_', '-')} must be >= 1")
    return inspect_dataset(
        args.path,
        name=args.dataset,
        grid=args.grid,
        image_size=args.image_size,
        per_class=args.per_class,
        split_seed=args.split_seed,
    )


def _acquire(args: argparse.Namespace) -> str:
    out = args.out or DEFAULT_ACQUIRE_DIRS[args.dataset]
    return ACQUIRE[args.dataset].format(out=out, record=ZENODO_RECORD, nih=NIH_BOX_FOLDER)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input or usage)."""
    try:
        args = get_args_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2, message already printed)
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    handlers = {"synth": _synth, "inspect": _inspect, "acquire": _acquire}
    try:
        print(handlers[args.command](args))
    except (DatasetError, imaging.ImageError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
