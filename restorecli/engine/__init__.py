"""The inference engine: device choice and fallback, padding, tiling, the runner and batch processing.

Everything here reads a model's constraints from its :class:`~restorecli.zoo.descriptor.ModelDescriptor`.
Import from the submodules (``restorecli.engine.runner``, ``.batch``, ``.device``...): this package
imports none of them, so a torch-free one such as :mod:`restorecli.engine.distributed`, which a plain
``restore eval`` uses, does not load torch.
"""
