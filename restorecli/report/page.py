"""Write the report page: one self-contained HTML file, its pictures in a folder beside it.

The page needs no network: styles and scripts are inline, images are relative links to
``<page stem>_files/``. Large sets stay usable: the table shows thumbnails (lazy-loaded), and each
image's heavy views (full-size comparison slider, heat-map, zoomed crops) sit in a closed
``<details>`` whose images load only when it is opened.
"""

from __future__ import annotations

import html
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import numpy as np

from restorecli.images import read_array, write_array
from restorecli.metrics.segmentation import TargetMatch, match_targets
from restorecli.report import visuals

# Metrics where a larger value is better; the others (FA) are better small. Used for best/worst.
_HIGHER_IS_BETTER = {"psnr", "ssim", "ssim3d", "miou", "niou", "pd", "gain"}


@dataclass(frozen=True)
class ReportImage:
    """One scored pair as the page shows it.

    Attributes:
        name: the pair's name (file stem), as ``restore eval --json`` prints it.
        output: the restored image (or predicted mask) file.
        ground_truth: the reference file.
        values: per-image metric values, the numbers ``--json`` prints (NaN undefined, inf identical).
        input: the degraded input, when known (``restore eval --model`` restores it on the fly).
        input_psnr: PSNR of the input against the ground truth under the same protocol, for the gain.
    """

    name: str
    output: Path
    ground_truth: Path
    values: Mapping[str, float]
    input: Path | None = None
    input_psnr: float | None = None

    @property
    def gain(self) -> float | None:
        """PSNR gained over the input, when both are known."""
        if self.input_psnr is None or "psnr" not in self.values:
            return None
        return self.values["psnr"] - self.input_psnr


@dataclass(frozen=True)
class ReportHeader:
    """Facts printed above the results: how they were produced."""

    title: str
    protocol: str
    command: str
    created: str
    version: str
    model: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MaskSettings:
    """How masks are read for overlays: the evaluation's own decoders and PD centroid distance."""

    decode_prediction: Callable[[np.ndarray], np.ndarray]
    decode_target: Callable[[np.ndarray], np.ndarray]
    distance: float


def write_report(
    page: Path,
    header: ReportHeader,
    images: Sequence[ReportImage],
    summary: Mapping[str, float],
    *,
    masks: MaskSettings | None = None,
) -> Path:
    """Write ``page`` (an ``.html`` file) and its picture folder; returns the page path.

    Args:
        page: the HTML file to write; pictures go to ``<stem>_files/`` beside it.
        header: protocol, command line, model facts, date and version.
        images: the scored pairs, in the order ``--json`` lists them.
        summary: the mean metrics printed at the top.
        masks: given for segmentation masks: overlays with detected and missed targets replace the
            error heat-map.
    """
    assets = page.parent / f"{page.stem}_files"
    assets.mkdir(parents=True, exist_ok=True)
    sections, rows = [], []
    for index, image in enumerate(images):
        files = _write_pictures(assets, index, image, masks)
        rows.append(_table_row(index, image, files, page.parent))
        sections.append(_image_section(index, image, files, page.parent, masks is not None))
    document = _document(header, images, summary, rows, sections)
    temporary = page.with_name(f".{page.name}.tmp")
    temporary.write_text(document, encoding="utf-8")
    temporary.replace(page)
    return page


def _write_pictures(assets: Path, index: int, image: ReportImage, masks: MaskSettings | None) -> dict[str, object]:
    """Write every picture of one pair; returns their paths by role (crops as a list)."""
    stem = f"{index:04d}"
    output, truth = read_array(image.output), read_array(image.ground_truth)
    files: dict[str, object] = {}

    def save(role: str, array: np.ndarray) -> Path:
        path = assets / f"{stem}-{role}.png"
        write_array(path, array)
        return path

    files["thumb"] = save("thumb", visuals.thumbnail(output))
    files["output"] = save("output", visuals.display_rgb(output))
    files["gt"] = save("gt", visuals.display_rgb(truth))
    source = read_array(image.input) if image.input is not None else None
    if source is not None:
        files["input"] = save("input", visuals.display_rgb(source))
    if masks is not None:
        predicted, target = masks.decode_prediction(output), masks.decode_target(truth)
        files["overlay"] = save("overlay", visuals.mask_overlay(truth, predicted, target))
        files["marks"] = match_targets(predicted, target, distance=masks.distance)
        return files
    if visuals.display_rgb(output).shape != visuals.display_rgb(truth).shape:
        return files
    error = visuals.error_map(output, truth)
    files["error"] = save("error", visuals.heat_map(error))
    crops = []
    # A super-resolution input is smaller by the scale: its crop is the same scene, enlarged that much more.
    factor = _integer_scale(source.shape[:2], output.shape[:2]) if source is not None else None
    for number, region in enumerate(visuals.worst_regions(error)):
        views = [("output", output, region, 1), ("gt", truth, region, 1)]
        if source is not None and factor is not None:
            smaller = visuals.Region(
                region.top // factor, region.left // factor, max(region.side // factor, 1), region.mean_error
            )
            views.insert(0, ("input", source, smaller, factor))
        crops.append(
            (
                region,
                {
                    role: save(f"crop{number}-{role}", visuals.zoomed_crop(view, area, visuals.CROP_ZOOM * enlarge))
                    for role, view, area, enlarge in views
                },
            )
        )
    files["crops"] = crops
    return files


def _integer_scale(small: tuple[int, ...], large: tuple[int, ...]) -> int | None:
    """How many times ``large`` is ``small`` on both sides (1 for equal sizes); None if not a whole number."""
    if small[0] == 0 or large[0] % small[0] or small[1] == 0 or large[1] % small[1]:
        return None
    factor = large[0] // small[0]
    return factor if large[1] // small[1] == factor else None


def _link(path: object, base: Path) -> str:
    """A relative link to ``path``: percent-encoded (a ``#`` or ``?`` in a name would cut the URL), then
    escaped for the HTML attribute."""
    return html.escape(quote(Path(str(path)).relative_to(base).as_posix()), quote=True)


def _number(value: float | None) -> str:
    """Two decimals, as the page prints every metric; inf for identical pairs, a dash for undefined."""
    if value is None or math.isnan(value):
        return "–"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.2f}"


def _sort_key(value: float | None) -> str:
    if value is None or math.isnan(value):
        return ""
    return "1e308" if math.isinf(value) and value > 0 else ("-1e308" if math.isinf(value) else repr(value))


def _metric_names(images: Sequence[ReportImage]) -> list[str]:
    return list(dict.fromkeys(key for image in images for key in image.values))


def _table_row(index: int, image: ReportImage, files: dict[str, object], base: Path) -> str:
    cells = [
        f'<td data-value="{index}">{index + 1}</td>',
        f'<td data-value="{html.escape(image.name, quote=True)}"><a href="#image-{index}">{html.escape(image.name)}</a></td>',
        f'<td><img class="thumb" loading="lazy" alt="" src="{_link(files["thumb"], base)}"></td>',
    ]
    for value in image.values.values():
        cells.append(f'<td class="num" data-value="{_sort_key(value)}">{_number(value)}</td>')
    if image.gain is not None:
        cells.append(f'<td class="num" data-value="{_sort_key(image.gain)}">{_number(image.gain)}</td>')
    return f'<tr id="row-{index}">' + "".join(cells) + "</tr>"


def _figure(path: object, caption: str, base: Path) -> str:
    return (
        f'<figure><img loading="lazy" alt="{html.escape(caption, quote=True)}" src="{_link(path, base)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _image_section(index: int, image: ReportImage, files: dict[str, object], base: Path, is_mask: bool) -> str:
    values = " · ".join(f"{key} {_number(value)}" for key, value in image.values.items())
    if image.gain is not None:
        values += f" · gain {_number(image.gain)} dB (input {_number(image.input_psnr)} dB)"
    before = files.get("input", files["gt"])
    before_label = "input" if "input" in files else "ground truth"
    parts = [
        (
            f'<div class="compare" style="--pos: 50%"><img class="after" alt="output" loading="lazy" decoding="async" '
            f'src="{_link(files["output"], base)}">'
            f'<img class="before" alt="{before_label}" loading="lazy" decoding="async" src="{_link(before, base)}">'
            f'<input type="range" min="0" max="100" value="50" aria-label="{before_label} / output divider"></div>'
            f'<p class="muted">Slider: {before_label} on the left, output on the right.</p>'
        )
    ]
    gallery = [_figure(files[role], role, base) for role in ("input", "output", "gt") if role in files]
    if is_mask:
        marks = typing.cast(TargetMatch, files["marks"])
        kinds = ["detected" if found else "missed" for found in marks.detected]
        circles = "".join(
            f'<circle class="{kind}" cx="{col:.1f}" cy="{row:.1f}" r="6"><title>{kind} target</title></circle>'
            for kind, (row, col) in zip(kinds, marks.centroids, strict=True)
        )
        height, width = visuals.display_rgb(read_array(image.ground_truth)).shape[:2]
        gallery.append(
            f'<figure><div class="marked"><img loading="lazy" alt="overlay" src="{_link(files["overlay"], base)}">'
            f'<svg viewBox="0 0 {width} {height}" preserveAspectRatio="none">{circles}</svg></div>'
            f"<figcaption>overlay: green hit, red false alarm, blue missed; "
            f"{kinds.count('detected')} detected, {kinds.count('missed')} missed targets</figcaption></figure>"
        )
    elif "error" in files:
        gallery.append(_figure(files["error"], "error heat-map (|output − ground truth|)", base))
    parts.append('<div class="gallery">' + "".join(gallery) + "</div>")
    for number, (region, crop_files) in enumerate(files.get("crops", [])):  # type: ignore[arg-type]
        where = f"crop {number + 1}: rows {region.top}-{region.top + region.side}, columns {region.left}-{region.left + region.side}"
        figures = "".join(_figure(path, role, base) for role, path in crop_files.items())
        parts.append(
            f'<h4>{where} (mean error {region.mean_error * 255:.1f} grey levels)</h4><div class="gallery crops">{figures}</div>'
        )
    return (
        f'<section id="image-{index}"><h3>{html.escape(image.name)}</h3><p class="values">{html.escape(values)}</p>'
        f"<details><summary>Compare, error map and crops</summary>{''.join(parts)}</details></section>"
    )


def _best_and_worst(images: Sequence[ReportImage]) -> str:
    """Links to the best and worst three images by the first metric (or the PSNR gain)."""
    names = _metric_names(images)
    if not names:
        return ""
    key = "gain" if all(image.gain is not None for image in images) else names[0]

    def score(image: ReportImage) -> float:
        value = image.gain if key == "gain" else image.values.get(key, float("nan"))
        return float("nan") if value is None else value

    ranked = [image for image in images if not math.isnan(score(image))]
    ranked.sort(key=score, reverse=key.lower() in _HIGHER_IS_BETTER)
    index = {id(image): number for number, image in enumerate(images)}

    def links(chosen: Sequence[ReportImage]) -> str:
        return ", ".join(
            f'<a href="#image-{index[id(image)]}">{html.escape(image.name)}</a> ({_number(score(image))})'
            for image in chosen
        )

    return f"<p>Best by {key}: {links(ranked[:3])}</p><p>Worst by {key}: {links(ranked[::-1][:3])}</p>"


def _document(
    header: ReportHeader,
    images: Sequence[ReportImage],
    summary: Mapping[str, float],
    rows: Sequence[str],
    sections: Sequence[str],
) -> str:
    names = _metric_names(images)
    gains = [image.gain for image in images if image.gain is not None]
    columns = ["#", "name", "output"] + names + (["gain"] if len(gains) == len(images) and images else [])
    head = "".join(
        f'<th data-sort="{i}">{html.escape(c)}</th>' if c != "output" else "<th>output</th>"
        for i, c in enumerate(columns)
    )
    facts = [
        ("protocol", header.protocol),
        ("command", header.command),
        ("created", header.created),
        ("restorecli", header.version),
    ]
    facts += list(header.model.items())
    header_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(str(v))}</code></td></tr>" for k, v in facts
    )
    means = " · ".join(f"{html.escape(k)} {_number(v)}" for k, v in summary.items())
    if gains and len(gains) == len(images):
        chart = visuals.histogram_svg(gains, "PSNR gain (dB)")
    else:
        chart = (
            visuals.histogram_svg([image.values.get(names[0], math.nan) for image in images], names[0]) if names else ""
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(header.title)}</title><style>{_STYLE}</style></head>
<body><header><h1>{html.escape(header.title)}</h1><table class="facts">{header_rows}</table></header>
<main><h2>Summary</h2><p class="means">{means}</p>{chart}{_best_and_worst(images)}
<h2>Images</h2><p class="muted">Click a column heading to sort.</p>
<table id="images" class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>
<h2>Per image</h2>{"".join(sections)}</main>
<script>{_SCRIPT}</script></body></html>
"""


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:0 16px;color:#1d1d1f}
h1{font-size:22px}h2{margin-top:28px;border-bottom:1px solid #ddd}h3{margin:18px 0 4px}h4{font-size:13px;margin:10px 0 4px}
.facts th{text-align:left;padding-right:12px;vertical-align:top}.facts code{white-space:pre-wrap;word-break:break-all}
.muted{color:#666;font-size:12px}.means{font-size:16px;font-weight:600}
table.sortable{border-collapse:collapse}table.sortable td,table.sortable th{padding:3px 8px;border-bottom:1px solid #eee}
table.sortable th[data-sort]{cursor:pointer;user-select:none}table.sortable th[aria-sort=ascending]::after{content:" ▲"}
table.sortable th[aria-sort=descending]::after{content:" ▼"}td.num{text-align:right;font-variant-numeric:tabular-nums}
img.thumb{max-height:60px;display:block}.histogram{width:420px;max-width:100%}.histogram rect{fill:#4a6fa5}
.histogram text{font-size:10px;fill:#333}.gallery{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0}figure img{max-width:300px;max-height:300px;display:block;image-rendering:pixelated}
figcaption{font-size:12px;color:#555}.compare{position:relative;display:inline-block;max-width:100%}
.compare img{display:block;max-width:100%}.compare img.before{position:absolute;top:0;left:0;width:100%;height:100%;
clip-path:inset(0 calc(100% - var(--pos)) 0 0)}.compare input{position:absolute;left:0;bottom:4px;width:100%}
.marked{position:relative;display:inline-block}.marked svg{position:absolute;inset:0;width:100%;height:100%}
circle{fill:none;stroke-width:2}circle.detected{stroke:#2bd45a}circle.missed{stroke:#ff3b30;stroke-dasharray:3 2}
"""

_SCRIPT = """
document.querySelectorAll('.compare input[type=range]').forEach(function (range) {
  range.addEventListener('input', function () { range.parentElement.style.setProperty('--pos', range.value + '%'); });
});
document.querySelectorAll('table.sortable th[data-sort]').forEach(function (th) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], column = Number(th.dataset.sort);
    var ascending = th.getAttribute('aria-sort') !== 'ascending';
    table.querySelectorAll('th').forEach(function (other) { other.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', ascending ? 'ascending' : 'descending');
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
      if (x === '' && y === '') return 0; if (x === '') return 1; if (y === '') return -1;
      var p = Number(x), q = Number(y), order;
      order = (isNaN(p) || isNaN(q)) ? x.localeCompare(y) : p - q;
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""
