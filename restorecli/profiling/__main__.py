"""Child process for CPU peak memory: ``python -m restorecli.profiling '<PeakRequest JSON>'``.

Run by :func:`restorecli.profiling.measure_cpu_peak` in a fresh interpreter, so the resident-set
peak it prints (one JSON line) reflects only this network and input.
"""

from __future__ import annotations

import json
import sys

from restorecli.profiling.runtime import PeakRequest, peak_rss_of

if __name__ == "__main__":
    print(json.dumps(peak_rss_of(PeakRequest(**json.loads(sys.argv[1])))))
