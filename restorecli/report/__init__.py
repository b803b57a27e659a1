"""A visual report of an evaluation: ``restore eval --report DIR/index.html``.

:mod:`~restorecli.report.visuals` makes the pictures (thumbnails, error heat-maps, worst-region
crops, mask overlays, histograms); :mod:`~restorecli.report.page` writes the self-contained page.
"""

from restorecli.report.page import MaskSettings, ReportHeader, ReportImage, write_report

__all__ = ["MaskSettings", "ReportHeader", "ReportImage", "write_report"]
