"""Models out of PyTorch: ``restore export`` to ONNX (verified), and exported graphs run by onnxruntime.

Needs the ``restorecli[onnx]`` extra (``onnx`` and ``onnxruntime``); importing this package does not.
"""

from __future__ import annotations
