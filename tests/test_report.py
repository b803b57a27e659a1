"""The evaluation report: page content, pictures, mask overlays, and the page in a real browser."""

from __future__ import annotations

import html
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from restorecli.images import read_array, write_array
from restorecli.metrics.psnr_ssim import psnr
from restorecli.metrics.segmentation import decode_prediction, decode_target, detect_targets, match_targets
from restorecli.report import MaskSettings, ReportHeader, ReportImage, visuals, write_report

HEADER = ReportHeader("eval report", "restormer-derain (Y, crop 0)", "restore eval out --gt gt", "2026-12-03", "0.2.0")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _pairs(root: Path, count: int = 4) -> list[ReportImage]:
    rng = np.random.default_rng(3)
    images = []
    for index in range(count):
        truth = (rng.random((40 + index, 52, 3)) * 255).astype(np.uint8)
        degraded = np.clip(truth + rng.normal(0, 30, truth.shape), 0, 255).astype(np.uint8)
        output = np.clip(truth + rng.normal(0, 4 + 3 * index, truth.shape), 0, 255).astype(np.uint8)
        output[5:15, 5:15] = 255 - truth[5:15, 5:15]  # one region clearly worst
        paths = {}
        for folder, array in (("gt", truth), ("in", degraded), ("out", output)):
            paths[folder] = root / folder / f"img {index}&<x>.png"
            write_array(paths[folder], array)
        images.append(
            ReportImage(
                name=f"img {index}&<x>",
                output=paths["out"],
                ground_truth=paths["gt"],
                values={"psnr": psnr(output, truth, data_range=255), "ssim": 0.5 + index / 10},
                input=paths["in"],
                input_psnr=psnr(degraded, truth, data_range=255),
            )
        )
    return images


def _sources(page: Path) -> list[str]:
    return re.findall(r'(?:src|href)="([^"#][^"]*)"', page.read_text(encoding="utf-8"))


def test_page_names_every_image_with_its_values_and_every_link_resolves(tmp_path: Path) -> None:
    images = _pairs(tmp_path)
    page = write_report(tmp_path / "report" / "index.html", HEADER, images, {"psnr": 30.0, "ssim": 0.7})
    text = page.read_text(encoding="utf-8")
    for image in images:
        assert html.escape(image.name) in text  # names are escaped, never raw HTML
        assert f"{image.values['psnr']:.2f}" in text and f"{image.gain:.2f}" in text
    assert "<x>" not in text
    links = _sources(page)
    assert links and all((page.parent / link).is_file() for link in links)
    assert not [link for link in links if "://" in link or link.startswith("//")]  # offline: no external resources
    assert "restormer-derain (Y, crop 0)" in text and "restore eval out --gt gt" in text


def test_worst_regions_find_the_broken_patch_and_do_not_overlap() -> None:
    error = np.zeros((100, 120))
    error[60:80, 10:30] = 1.0
    error[5:15, 100:110] = 0.5
    regions = visuals.worst_regions(error, count=3, side=20)
    assert (regions[0].top, regions[0].left) == (60, 10) and regions[0].mean_error == pytest.approx(1.0)
    for first in regions:
        for second in regions:
            if first is not second:
                assert abs(first.top - second.top) >= 20 or abs(first.left - second.left) >= 20


def test_heat_map_ramps_from_dark_to_bright_and_crops_zoom_by_repetition() -> None:
    error = np.linspace(0, 1, 100).reshape(10, 10)
    heat = visuals.heat_map(error)
    assert heat.dtype == np.uint8 and heat.shape == (10, 10, 3)
    assert heat[0, 0].sum() < heat[-1, -1].sum()
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    crop = visuals.zoomed_crop(image, visuals.Region(1, 1, 2, 0.0), zoom=3)
    assert crop.shape == (6, 6, 3) and (crop[:3, :3] == 5).all() and (crop[3:, 3:] == 10).all()
    assert visuals.display_rgb(np.full((2, 2), 65535, np.uint16)).max() == 255


def test_mask_marks_agree_with_the_pd_metric(tmp_path: Path) -> None:
    target = np.zeros((48, 48), np.uint8)
    target[5:8, 5:8] = 255
    target[30:33, 30:33] = 255
    target[40:42, 10:12] = 255
    predicted = np.zeros_like(target)
    predicted[5:8, 6:9] = 255  # finds the first target
    predicted[20:22, 40:42] = 255  # a false alarm
    decoded = decode_prediction(predicted, num_classes=2), decode_target(target, num_classes=2)
    match = match_targets(*decoded, distance=3.0)
    counts = detect_targets(*decoded, distance=3.0)
    assert match.detected == (True, False, False) and match.counts() == counts
    assert counts.detected == 1 and counts.targets == 3 and counts.false_alarm_pixels == 4
    write_array(tmp_path / "gt" / "m.png", target)
    write_array(tmp_path / "pred" / "m.png", predicted)
    settings = MaskSettings(
        decode_prediction=lambda a: decode_prediction(a, num_classes=2),
        decode_target=lambda a: decode_target(a, num_classes=2),
        distance=3.0,
    )
    image = ReportImage("m", tmp_path / "pred" / "m.png", tmp_path / "gt" / "m.png", {"pd": counts.pd, "fa": counts.fa})
    page = write_report(tmp_path / "r.html", HEADER, [image], {"pd": counts.pd}, masks=settings)
    text = page.read_text(encoding="utf-8")
    assert text.count('class="detected"') == 1 and text.count('class="missed"') == 2
    overlay = read_array(tmp_path / "r_files" / "0000-overlay.png")
    assert overlay[6, 7, 1] > overlay[6, 7, 0]  # a hit is green
    assert overlay[21, 41, 0] > overlay[21, 41, 2]  # a false alarm is red
    assert overlay[31, 31, 2] > overlay[31, 31, 0]  # a miss is blue


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


def test_the_page_renders_in_chromium_and_its_controls_work(tmp_path: Path, browser) -> None:  # type: ignore[no-untyped-def]
    images = _pairs(tmp_path)
    page_path = write_report(tmp_path / "report" / "index.html", HEADER, images, {"psnr": 30.0})
    page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.goto(page_path.as_uri())
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    broken = page.evaluate(
        """() => Promise.all(Array.from(document.images).map(img => new Promise(done => {
            const probe = new Image(); probe.onload = () => done(null); probe.onerror = () => done(img.src);
            probe.src = img.src; })))"""
    )
    assert [src for src in broken if src] == []
    assert page.evaluate("document.images.length") == len(_sources(page_path))

    slider = page.locator(".compare input[type=range]").first
    slider.fill("20")
    assert page.locator(".compare").first.evaluate("e => e.style.getPropertyValue('--pos')") == "20%"

    column = ["#", "name", "output", "psnr", "ssim", "gain"].index("psnr")
    page.locator(f"th[data-sort='{column}']").click()
    shown = [float(text) for text in page.locator(f"#images tbody tr td:nth-child({column + 1})").all_inner_texts()]
    assert shown == sorted(shown) and len(shown) == len(images)
    page.locator(f"th[data-sort='{column}']").click()
    shown = [float(text) for text in page.locator(f"#images tbody tr td:nth-child({column + 1})").all_inner_texts()]
    assert shown == sorted(shown, reverse=True)
    assert not problems, problems
    assert not any(math.isnan(value) for value in shown)


def test_restore_eval_report_shows_every_json_psnr_and_mask_overlays(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from restorecli.cli.app import app

    images = _pairs(tmp_path, count=3)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "eval",
            str(tmp_path / "out"),
            "--gt",
            str(tmp_path / "gt"),
            "--json",
            "--report",
            str(tmp_path / "r" / "index.html"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["images"]
    page = tmp_path / "r" / "index.html"
    text = page.read_text(encoding="utf-8")
    assert len(rows) == len(images)
    for row in rows:
        assert html.escape(row["name"]) in text and f"{row['psnr']:.2f}" in text
    assert all((page.parent / link).is_file() for link in _sources(page))

    masks = tmp_path / "masks"
    target = np.zeros((32, 32), np.uint8)
    target[4:7, 4:7] = 255
    write_array(masks / "gt" / "a.png", target)
    write_array(masks / "pred" / "a.png", target)
    result = runner.invoke(
        app, ["eval", str(masks / "pred"), "--gt", str(masks / "gt"), "--report", str(masks / "report.html")]
    )
    assert result.exit_code == 0, result.output
    assert 'class="detected"' in (masks / "report.html").read_text(encoding="utf-8")

    refused = runner.invoke(
        app,
        [
            "eval",
            "--gt",
            str(tmp_path / "gt"),
            "--model",
            "x.pth",
            "--input",
            str(tmp_path / "in"),
            "--report",
            str(tmp_path / "x.html"),
        ],
    )
    assert refused.exit_code == 2 and "--save" in refused.output


def test_links_survive_a_page_name_with_url_characters(tmp_path: Path) -> None:
    from urllib.parse import unquote

    page = write_report(tmp_path / "out #1" / "run#1 ?%.html", HEADER, _pairs(tmp_path, 1), {"psnr": 30.0})
    links = _sources(page)
    assert links and not [link for link in links if set(link) & set("#? ")]  # percent-encoded
    assert all((page.parent / unquote(link)).is_file() for link in links)


def test_a_super_resolution_report_crops_the_input_at_its_own_scale(tmp_path: Path) -> None:
    """The input is half the output's size: its crops show the same scene, zoomed twice as much."""
    rng = np.random.default_rng(5)
    truth = (rng.random((64, 80, 3)) * 255).astype(np.uint8)
    output = truth.copy()
    output[40:56, 8:24] = 255 - output[40:56, 8:24]  # the worst region
    paths = {"gt": tmp_path / "gt/a.png", "out": tmp_path / "out/a.png", "in": tmp_path / "in/a.png"}
    write_array(paths["gt"], truth)
    write_array(paths["out"], output)
    write_array(paths["in"], truth[::2, ::2])
    image = ReportImage("a", paths["out"], paths["gt"], {"psnr": 20.0}, input=paths["in"], input_psnr=18.0)
    page = write_report(tmp_path / "report/index.html", HEADER, [image], {"psnr": 20.0})
    folder = page.parent / "index_files"
    crop_in, crop_out = read_array(folder / "0000-crop0-input.png"), read_array(folder / "0000-crop0-output.png")
    assert crop_in.shape == crop_out.shape
    region = visuals.worst_regions(visuals.error_map(output, truth))[0]
    expected = visuals.zoomed_crop(
        truth[::2, ::2], visuals.Region(region.top // 2, region.left // 2, region.side // 2, 0), 6
    )
    np.testing.assert_array_equal(crop_in, expected)
