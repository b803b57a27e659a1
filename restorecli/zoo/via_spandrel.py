"""Every other published architecture, detected from a weights file by spandrel (optional extra).

spandrel (the loader behind chaiNNer, ComfyUI and InvokeAI) recognises about fifty restoration and
super-resolution architectures from their state-dict keys. restorecli reads the file itself (no
unpickling of code), hands spandrel the tensors, and turns spandrel's descriptor into its own, so
the engine runs these models like native ones: padding to their size rule, tiling, devices.

torchvision: spandrel's package imports it, but only two of its architectures use it (LaMa inpainting
and RestoreFormer face restoration, for an image rotation and a normalisation). PyPI's torchvision
does not import beside a CPU-only PyTorch build ("operator torchvision::nms does not exist"). When
torchvision cannot be imported, :func:`import_spandrel` imports spandrel against a placeholder whose
functions raise a clear error if one of those two architectures runs; every other architecture
needs nothing from torchvision. The placeholder is removed from ``sys.modules`` afterwards, so other
code that imports torchvision sees the real import (and its real error).
"""

from __future__ import annotations

import functools
import sys
import types
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from restorecli.errors import CheckpointError, MissingDependencyError

if TYPE_CHECKING:
    import spandrel

INSTALL_HINT = 'pip install "restorecli[spandrel]"'
# spandrel's purposes -> restorecli tasks; "Restoration" covers denoising, deblurring, deraining, ...
TASK_BY_PURPOSE = {"SR": "upscale", "FaceSR": "upscale", "Restoration": None, "Inpainting": "inpaint"}


def _torchvision_placeholder() -> dict[str, types.ModuleType]:
    """Modules standing in for the torchvision functions spandrel imports by name."""

    def unavailable(*_: Any, **__: Any) -> Any:
        raise MissingDependencyError(
            "Expected torchvision for this architecture (LaMa or RestoreFormer), but it cannot be imported "
            "beside this PyTorch build; install the torchvision release that matches your torch"
        )

    functional = types.ModuleType("torchvision.transforms.functional")
    functional.rotate = unavailable  # type: ignore[attr-defined]
    functional.normalize = unavailable  # type: ignore[attr-defined]
    functional.InterpolationMode = types.SimpleNamespace(BILINEAR="bilinear", NEAREST="nearest")  # type: ignore[attr-defined]
    transforms = types.ModuleType("torchvision.transforms")
    transforms.functional = functional  # type: ignore[attr-defined]
    root = types.ModuleType("torchvision")
    root.transforms = transforms  # type: ignore[attr-defined]
    return {"torchvision": root, "torchvision.transforms": transforms, "torchvision.transforms.functional": functional}


@functools.cache
def import_spandrel() -> types.ModuleType:
    """Import spandrel, with the torchvision placeholder when torchvision itself cannot be imported.

    Raises:
        MissingDependencyError: spandrel is not installed (names the extra to install).
    """
    try:
        import torchvision  # noqa: F401 - only probing whether the real one imports
    except Exception:  # noqa: BLE001 - any failure (missing, or the C extension's operator error) means "unusable"
        for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
            del sys.modules[name]
        placeholder = _torchvision_placeholder()
        sys.modules.update(placeholder)
        try:
            return _import()
        finally:
            for name, module in placeholder.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]
    return _import()


def _import() -> types.ModuleType:
    try:
        import spandrel
    except ImportError as exc:
        raise MissingDependencyError(
            f"Expected the spandrel package for architectures restorecli has no native loader for, but it is "
            f"not installed ({exc}); install it with: {INSTALL_HINT}"
        ) from exc
    return spandrel


def detect(state: Mapping[str, torch.Tensor], source: str) -> spandrel.ImageModelDescriptor:
    """spandrel's descriptor of a state dict, or a CheckpointError naming the file.

    Raises:
        MissingDependencyError: spandrel is not installed.
        CheckpointError: spandrel does not know the architecture, or the model is not an image-to-image
            network (inpainting needs a mask, which the restore commands do not take).
    """
    _check_block_indices(state, source)
    spandrel = import_spandrel()
    try:
        # Some architectures' constructors raise PyTorch deprecation warnings (torch.meshgrid's indexing):
        # not the user's concern, and they would break the one-line output.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            descriptor = spandrel.ModelLoader().load_from_state_dict(dict(state))
    except spandrel.UnsupportedModelError as exc:
        raise CheckpointError(
            f"Expected an architecture restorecli or spandrel recognises, but neither knows these keys ({source})"
        ) from exc
    except (RuntimeError, ValueError, KeyError, IndexError, TypeError, AssertionError) as exc:
        raise CheckpointError(
            f"Expected weights spandrel can build a model from, but it failed: {exc} ({source})"
        ) from exc
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise CheckpointError(
            f"Expected an image-to-image model, but {descriptor.architecture.name} is a "
            f"{descriptor.purpose} model that needs a mask ({source})"
        )
    return descriptor


# spandrel sizes some networks from the largest block index in the keys; a forged key such as
# ``body.9999999.weight`` would make it build millions of blocks before anything fails.
MAX_BLOCK_INDEX = 4096


def _check_block_indices(state: Mapping[str, torch.Tensor], source: str) -> None:
    for key in state:
        for part in str(key).split("."):
            if part.isdigit() and int(part) > MAX_BLOCK_INDEX:
                raise CheckpointError(
                    f"Expected block indices up to {MAX_BLOCK_INDEX} in the weights' keys, but got {key!r} ({source})"
                )


def facts(descriptor: spandrel.ImageModelDescriptor) -> dict[str, Any]:
    """What the engine and ``restore inspect`` need from spandrel's descriptor."""
    requirements = descriptor.size_requirements
    return {
        "arch": f"spandrel:{descriptor.architecture.id}",
        "arch_name": descriptor.architecture.name,
        "task": TASK_BY_PURPOSE.get(descriptor.purpose),
        "purpose": descriptor.purpose,
        "scale": int(descriptor.scale),
        "in_channels": int(descriptor.input_channels),
        "out_channels": int(descriptor.output_channels),
        "pad_multiple": int(requirements.multiple_of),
        "min_size": int(requirements.minimum),
        "square": bool(requirements.square),
        "tags": list(descriptor.tags),
        "supports_half": bool(descriptor.supports_half),
        "supports_bfloat16": bool(descriptor.supports_bfloat16),
        "tiling": descriptor.tiling.name.lower(),
    }


class SpandrelModule(torch.nn.Module):
    """A spandrel model run as spandrel runs it. Most architectures are the network itself (``plain``:
    batched, traceable for ONNX). Some need their descriptor's call (a tuple output unpacked, a
    noise-level channel added, an output range mapped to ``[0, 1]``), which takes one image at a time.
    The model is this module's child, so moving this module moves it, and what the engine watches
    (convolutions, parameters) is the model's own.
    """

    def __init__(self, descriptor: spandrel.ImageModelDescriptor) -> None:
        super().__init__()
        self.model = descriptor.model.eval()
        self._call = descriptor  # holds the same model object
        # spandrel's own default call is ``lambda model, image: model(image)``, made in the descriptor's
        # __init__; an architecture that needs more passes its own function.
        call = getattr(descriptor, "_call_fn", None)
        self.plain = getattr(call, "__qualname__", "").startswith("ImageModelDescriptor.__init__")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.plain:
            return self.model(x)
        return torch.cat([self._call(image[None]) for image in x])
