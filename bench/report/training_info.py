"""What the report says about the models themselves: the training table and parity.

- Training table: ``training``'s own comparison JSON (``models/<dataset>/comparison-<version>
  .json``, written by ``python -m training --framework all``, with the sklearn baseline and
  the accuracy spread) when it exists, else one row per served model built from its manifest
  with the same function (``training.report.manifest_row``): accuracy (exact match for
  multilabel), QWK/AUC, s/epoch, parameters, MB, and a multilabel model's per-finding AUCs.
- Parity, from the manifests and the served artifacts: (1) provenance: the ONNX model must
  name the sha256 of the torch model it was exported from, and it must be the torch model
  being served; (2) agreement: the in-process baseline ran the same preprocessed images
  through every served artifact, so the max-abs probability difference and argmax agreement
  of every pair are known. Pairs that share weights (an export, or ports of one
  initialisation) must agree to ``PARITY_ATOL``; independently trained models only agree
  as much as their accuracy does, which is reported, not judged. (3) A ``training.parity``
  JSON report, if given, is included as is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

PARITY_ATOL = 1e-4
"""Max-abs probability difference allowed between artifacts sharing weights (fp32)."""


def _comparison_file(models: Path, dataset: str, version: str | None) -> Path | None:
    directory = Path(models) / dataset
    if version is not None and (directory / f"comparison-{version}.json").is_file():
        return directory / f"comparison-{version}.json"
    return None


def training_table(manifests: Mapping[str, Mapping[str, Any]], *, models: Path,
                   dataset: str | None, version: str | None,
                   explicit: Path | None = None) -> dict[str, Any]:
    """The training comparison (see the module doc); ``{"rows": []}`` when nothing is known."""
    path = explicit or (_comparison_file(models, dataset, version) if dataset else None)
    if path is not None and Path(path).is_file():
        data = json.loads(Path(path).read_text())
        return {"source": str(path), "score_metric": data.get("score_metric"),
                "accuracy_metric": data.get("accuracy_metric", "accuracy"),
                "accuracy_spread": data.get("accuracy_spread"),
                "score_spread": data.get("score_spread"),
                "settings": data.get("settings", {}), "rows": data.get("rows", [])}
    if not manifests:
        return {"source": None, "score_metric": None, "rows": []}
    from shared.datasets import dataset_spec_for
    from shared.manifest import Manifest
    from training.report import accuracy_metric, accuracy_spread, manifest_row, score_metric

    first = next(iter(manifests.values()))
    spec = dataset_spec_for(first["dataset"], class_names=first.get("class_names"))
    rows = [manifest_row(Manifest.from_dict(dict(m)), spec) for m in manifests.values()]
    return {"source": "manifests", "score_metric": score_metric(spec),
            "accuracy_metric": accuracy_metric(spec), "accuracy_spread": accuracy_spread(rows),
            "score_spread": accuracy_spread(rows, "score"), "rows": rows}


def _same_weights(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """Why two served artifacts hold the same weights, or None."""
    for first, second in ((a, b), (b, a)):
        provenance = first.get("provenance") or {}
        if provenance.get("exported_from") == second.get("framework") and \
                provenance.get("source_sha256") == second.get("sha256"):
            return f"{first['framework']} exported from this {second['framework']} model"
    pa, pb = a.get("provenance") or {}, b.get("provenance") or {}
    ta, tb = a.get("training") or {}, b.get("training") or {}
    if (pa.get("ported_from") and pa.get("ported_from") == pb.get("ported_from")
            and pa.get("source") == pb.get("source") and ta.get("epochs") == 0
            and tb.get("epochs") == 0 and ta.get("seed") == tb.get("seed")):
        return f"untrained ports of one {pa['ported_from']} initialisation"
    return None


def provenance_checks(manifests: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """ONNX (or any exported model) must come from the torch model that is being served."""
    checks = []
    for name, manifest in manifests.items():
        provenance = manifest.get("provenance") or {}
        source = provenance.get("exported_from")
        if not source:
            continue
        served = manifests.get(source)
        checks.append({
            "framework": name, "exported_from": source,
            "source_sha256": provenance.get("source_sha256"),
            "served_source_sha256": served.get("sha256") if served else None,
            "matches": bool(served and served.get("sha256") == provenance.get("source_sha256")),
        })
    return checks


def agreement(manifests: Mapping[str, Mapping[str, Any]],
              probabilities: Mapping[str, list[list[float]]],
              atol: float = PARITY_ATOL) -> dict[str, Any]:
    """Pairwise max-abs difference and argmax agreement of the served artifacts' outputs."""
    pairs = {}
    for first, second in combinations(sorted(probabilities), 2):
        p, q = np.asarray(probabilities[first]), np.asarray(probabilities[second])
        if p.shape != q.shape or p.size == 0:
            continue
        reason = _same_weights(manifests.get(first, {}), manifests.get(second, {}))
        max_abs = float(np.abs(p - q).max())
        pairs[f"{first}-{second}"] = {
            "max_abs": max_abs,
            "argmax_agreement": float(np.mean(p.argmax(1) == q.argmax(1))),
            "same_weights": reason,
            "passed": (max_abs <= atol) if reason else None,
        }
    judged = [pair["passed"] for pair in pairs.values() if pair["passed"] is not None]
    return {"atol": atol, "images": len(next(iter(probabilities.values()), [])),
            "pairs": pairs, "passed": all(judged) if judged else None}


def parity_section(manifests: Mapping[str, Mapping[str, Any]],
                   probabilities: Mapping[str, list[list[float]]],
                   explicit: Path | None = None) -> dict[str, Any]:
    """Provenance checks, served-artifact agreement and an optional training.parity report."""
    report = None
    if explicit is not None and Path(explicit).is_file():
        report = json.loads(Path(explicit).read_text())
    return {"provenance": provenance_checks(manifests),
            "agreement": agreement(manifests, probabilities) if probabilities else None,
            "training_parity": report}
