"""The inference engine: device choice and fallback, padding, tiling, the runner and batch processing.

Everything here reads a model's constraints from its :class:`~restorecli.zoo.descriptor.ModelDescriptor`.
Import from the submodules (``restorecli.engine.runner``, ``.batch``, ``.device``...): this package
imports none of them, so importing one loads only what it needs. The torchrun session that the engine
and the metrics share lives one level down, in :mod:`restorecli.distributed`.
"""
