"""Metric objects: exact, order-free merging; one registration reaches the table, JSON and CSV; layering."""

from __future__ import annotations

import ast
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.errors import MetricError
from restorecli.images import write_array
from restorecli.metrics import METRICS, EvalSettings, Metric, MetricSet, Sample, evaluate_paths
from restorecli.metrics.metric import SUMMED, ExactSum

runner = CliRunner()
PACKAGE = Path(__file__).resolve().parents[1] / "restorecli"


def test_exact_sum_does_not_depend_on_order_or_split() -> None:
    rng = np.random.default_rng(4)
    values = list(rng.normal(0, 1, 500) * 10.0 ** rng.integers(-8, 8, 500))
    whole = ExactSum()
    for value in values:
        whole.add(value)
    left, right = ExactSum(), ExactSum()
    for index, value in enumerate(reversed(values)):
        (left if index % 3 else right).add(value)
    assert whole.value == math.fsum(values) == (right + left).value
    assert sum(values) != math.fsum(values)  # the naive sum would depend on order: the case is not trivial


def _pairs(count: int, masks: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(6)
    pairs = []
    for index in range(count):
        if masks:
            target = np.zeros((20, 21), np.uint8)
            target[3 + index : 7 + index, 4:9] = 255
            pred = np.roll(target, index % 3, axis=1)
            pred[18, index] = 255
        else:
            target = rng.integers(0, 256, (18, 20, 3), dtype=np.uint8)
            pred = np.clip(target + rng.normal(0, 4 + index, target.shape), 0, 255).round().astype(np.uint8)
        pairs.append((pred, target))
    return pairs


@pytest.mark.parametrize(
    ("metrics", "masks"),
    [(("psnr", "ssim", "ssim3d", "ssim-skimage"), False), (("miou", "niou", "pd", "fa"), True)],
)
def test_merged_shards_equal_one_pass_bit_for_bit(metrics: tuple[str, ...], masks: bool) -> None:
    settings = EvalSettings(metrics=metrics)
    pairs = _pairs(7, masks)
    whole = MetricSet.for_settings(settings)
    for pred, target in pairs:
        whole.update(Sample(pred, target, settings))
    shards = [MetricSet.for_settings(settings) for _ in range(3)]
    for index, (pred, target) in enumerate(pairs):  # round-robin, as torchrun shards
        shards[index % 3].update(Sample(pred, target, settings))
    merged = MetricSet.for_settings(settings)
    for shard in reversed(shards):
        merged.merge(shard)
    assert merged.pairs == whole.pairs == 7
    assert merged.compute() == whole.compute()
    assert merged.class_iou() == whole.class_iou()
    assert set(whole.compute()) >= set(metrics)


def test_merging_different_metrics_is_an_error() -> None:
    with pytest.raises(MetricError, match="Expected metrics"):
        MetricSet.for_settings(EvalSettings(metrics=("psnr",))).merge(MetricSet.for_settings(EvalSettings()))


@dataclass
class _MeanAbsoluteError(Metric):
    """A metric added the documented way: one class and one registry entry."""

    name: ClassVar[str] = "mae"
    kind: ClassVar[str] = "image"
    convention: ClassVar[str] = "mean absolute error in pixel values"
    total: ExactSum = field(default_factory=ExactSum, metadata=SUMMED)
    images: int = field(default=0, metadata=SUMMED)

    def update(self, sample: Sample) -> float:
        first, second = sample.images
        value = float(np.abs(first - second).mean())
        self.total.add(value)
        self.images += 1
        return value

    def compute(self) -> float:
        return self.total.value / self.images


def test_one_registered_class_reaches_table_json_and_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(METRICS, "mae", _MeanAbsoluteError)  # type: ignore[index]  # the registry is a dict
    pairs = _pairs(3, masks=False)
    for index, (pred, target) in enumerate(pairs):
        write_array(tmp_path / "pred" / f"a{index}.png", pred)
        write_array(tmp_path / "gt" / f"a{index}.png", target)
    expected = np.mean([np.abs(p.astype(float) - t).mean() for p, t in pairs])
    report = evaluate_paths(tmp_path / "pred", tmp_path / "gt", EvalSettings(metrics=("psnr", "mae")))
    assert report.summary["mae"] == pytest.approx(expected)
    arguments = ["eval", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--metrics", "mae", "--workers", "1"]
    table = runner.invoke(app, arguments)
    assert table.exit_code == 0, table.output
    assert table.stdout.splitlines()[-1].split() == ["mean", f"{expected:.4f}"]
    listed = runner.invoke(app, [*arguments, "--json", "--csv", str(tmp_path / "rows.csv")])
    payload = json.loads(listed.stdout)
    assert payload["summary"]["mae"] == pytest.approx(expected)
    assert payload["convention"]["mae"] == "mean absolute error in pixel values"
    rows = list(csv.DictReader((tmp_path / "rows.csv").open()))
    assert [float(row["mae"]) for row in rows] == pytest.approx([np.abs(p.astype(float) - t).mean() for p, t in pairs])


def test_metrics_import_nothing_from_engine_api_or_zoo() -> None:
    forbidden = ("restorecli.engine", "restorecli.api", "restorecli.zoo")
    offenders = []
    for path in sorted((PACKAGE / "metrics").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            offenders += [f"{path.name}: {name}" for name in names if name.startswith(forbidden)]
    assert not offenders
