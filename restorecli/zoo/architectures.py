"""Registry of architectures: constructors, named configs, padding rules, and config inference.

Each family is one ``ArchSpec`` record in ``ARCHITECTURES`` (an explicit table, no import side
effects). The loader and the engine read constraints from it (padding multiple and mode, channels,
locality) instead of branching on architecture names, and ``infer_arch`` recovers an architecture
and its constructor arguments from a bare state dict's keys and shapes.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from restorecli.archs.camixersr import CAMixerSR
from restorecli.archs.nafnet import NAFNet, NAFNetLocal
from restorecli.archs.restormer import Restormer
from restorecli.archs.safmn import SAFMN
from restorecli.engine.padding import PadMode
from restorecli.errors import CheckpointError, ConfigError, UnknownModelError

Config = dict[str, Any]
StateDict = Mapping[str, Tensor]
# The variant name of every family's own network (see ArchSpec.variants).
PLAIN = "plain"


@dataclass(frozen=True)
class ArchSpec:
    """One architecture family and everything the rest of restorecli needs to know about it.

    Attributes:
        name: registry name (``"restormer"``, ``"nafnet"``, ``"nafnet-local"``).
        builder: the ``nn.Module`` class; its keyword arguments are the config keys.
        configs: named constructor configs (official releases, test and shipped sizes).
        default_config: the config used when none is given.
        description: one line for listings.
        padding_rule: config -> ``(multiple, mode)`` the input must be padded to (bottom/right).
        channel_rule: config -> ``(in_channels, out_channels)``.
        inferrer: state dict -> config, or None when the keys are not this family's.
        variants: other registry names that load this family's weights unchanged, by variant name
            (NAFNet: ``tlc``, the test-time local converter). :data:`PLAIN` names the family itself.
        channels_last: inference is faster on channels-last inputs, so the engine uses it by default
            (measured per architecture by ``bench/bench_performance.py --levers``).
        scale_rule: config -> output side / input side (1 for restoration, 2-4 for super-resolution).
    """

    name: str
    builder: Callable[..., nn.Module]
    configs: Mapping[str, Mapping[str, Any]]
    default_config: str
    description: str
    padding_rule: Callable[[Config], tuple[int, PadMode]]
    channel_rule: Callable[[Config], tuple[int, int]]
    inferrer: Callable[[StateDict], Config | None]
    variants: Mapping[str, str] = field(default_factory=dict)
    channels_last: bool = False
    scale_rule: Callable[[Config], int] = lambda config: 1

    def complete(self, kwargs: Mapping[str, Any]) -> Config:
        """Return ``kwargs`` over the constructor's defaults, as plain JSON-friendly values.

        Raises:
            ConfigError: a key is not a constructor argument.
        """
        parameters = inspect.signature(self.builder).parameters
        unknown = sorted(set(kwargs) - set(parameters))
        if unknown:
            raise ConfigError(
                f"Expected arguments of {self.name} ({', '.join(parameters)}), but got {', '.join(unknown)}"
            )
        merged = {key: param.default for key, param in parameters.items()}
        merged.update(copy.deepcopy(dict(kwargs)))
        return {key: _plain(value) for key, value in merged.items()}

    def build(self, kwargs: Mapping[str, Any]) -> nn.Module:
        """Construct the module (on the current default device) from a config."""
        return self.builder(**self.complete(kwargs))

    def padding(self, kwargs: Mapping[str, Any], mode: PadMode | None = None) -> tuple[int, PadMode]:
        """Inputs are padded bottom/right to ``multiple`` with ``mode``: the official rule unless ``mode`` is given.

        A model card (``pad_mode``, from its training recipe) may choose the mode; the multiple is
        the network's own constraint.
        """
        multiple, official = self.padding_rule(self.complete(kwargs))
        return multiple, mode or official

    def channels(self, kwargs: Mapping[str, Any]) -> tuple[int, int]:
        """Image channels ``(in, out)``: 1 grey, 3 RGB, 6 dual-pixel pair."""
        return self.channel_rule(self.complete(kwargs))

    def scale(self, kwargs: Mapping[str, Any]) -> int:
        """Output side / input side: an ``(N, C, H, W)`` input gives ``(N, C', H * scale, W * scale)``."""
        return self.scale_rule(self.complete(kwargs))

    def infer(self, state_dict: StateDict) -> Config | None:
        """The config that produced ``state_dict``, or None when it is not this family's."""
        inferred = self.inferrer(state_dict)
        return None if inferred is None else self.complete(inferred)


def _plain(value: Any) -> Any:
    """Tuples become lists (recursively) so configs compare equal to their JSON round trip."""
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    return value


def _block_count(state_dict: StateDict, prefix: str) -> int:
    """Number of blocks in ``prefix.<i>.*`` (the largest index + 1; 0 when absent)."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    indices = [int(match.group(1)) for key in state_dict if (match := pattern.match(key))]
    return max(indices) + 1 if indices else 0


# --------------------------------------------------------------------------------------------
# Restormer

_RESTORMER_STAGES = ("encoder_level1", "encoder_level2", "encoder_level3", "latent")
# Stages whose blocks use each level's head count (decoder_level1 and refinement use level 1's).
_RESTORMER_HEAD_STAGES = (
    ("encoder_level1", "decoder_level1", "refinement"),
    ("encoder_level2", "decoder_level2"),
    ("encoder_level3", "decoder_level3"),
    ("latent",),
)
# Expansion factors tried first when recovering the GDFN width (the official one is 2.66).
_KNOWN_FFN_FACTORS = (2.66, 2.0, 4.0)


def _infer_restormer(state_dict: StateDict) -> Config | None:
    if "patch_embed.proj.weight" not in state_dict or "output.weight" not in state_dict:
        return None
    embed = state_dict["patch_embed.proj.weight"]
    dim = int(embed.shape[0])
    default_heads = (1, 2, 4, 8)
    heads = []
    hidden_by_dim: dict[int, int] = {}
    for level, stages in enumerate(_RESTORMER_HEAD_STAGES):
        found = [state_dict[f"{s}.0.attn.temperature"] for s in stages if f"{s}.0.attn.temperature" in state_dict]
        heads.append(int(found[0].shape[0]) if found else default_heads[level])
    for key, tensor in state_dict.items():
        if key.endswith(".ffn.project_out.weight"):
            hidden_by_dim[int(tensor.shape[0])] = int(tensor.shape[1])
    ln_key = next((k for k in state_dict if k.endswith(".norm1.body.weight")), None)
    return {
        "inp_channels": int(embed.shape[1]),
        "out_channels": int(state_dict["output.weight"].shape[0]),
        "dim": dim,
        "num_blocks": [_block_count(state_dict, stage) for stage in _RESTORMER_STAGES],
        "num_refinement_blocks": _block_count(state_dict, "refinement"),
        "heads": heads,
        "ffn_expansion_factor": _ffn_factor(hidden_by_dim),
        "bias": "output.bias" in state_dict,
        "LayerNorm_type": "WithBias"
        if ln_key is None or ln_key.replace(".weight", ".bias") in state_dict
        else "BiasFree",
        "dual_pixel_task": "skip_conv.weight" in state_dict,
    }


def _ffn_factor(hidden_by_dim: Mapping[int, int]) -> float:
    """An expansion factor reproducing every observed GDFN width ``int(dim * factor)``."""
    if not hidden_by_dim:
        return _KNOWN_FFN_FACTORS[0]
    dim, hidden = min(hidden_by_dim.items())
    candidates = (*_KNOWN_FFN_FACTORS, round(hidden / dim, 2), round(hidden / dim, 4), (hidden + 0.5) / dim)
    for factor in candidates:
        if all(int(d * factor) == h for d, h in hidden_by_dim.items()):
            return factor
    return hidden / dim


def _restormer_channels(config: Config) -> tuple[int, int]:
    return config["inp_channels"], config["out_channels"]


_RESTORMER_BASE: Config = {}
_RESTORMER_BIASFREE: Config = {"LayerNorm_type": "BiasFree"}
RESTORMER_CONFIGS: dict[str, Config] = {
    "deraining": _RESTORMER_BASE,
    "motion-deblurring": _RESTORMER_BASE,
    "defocus-deblurring-single": _RESTORMER_BASE,
    "defocus-deblurring-dual": {"inp_channels": 6, "dual_pixel_task": True},
    "denoise-color": _RESTORMER_BIASFREE,
    "denoise-gray": {"inp_channels": 1, "out_channels": 1, **_RESTORMER_BIASFREE},
    "real-denoising": _RESTORMER_BIASFREE,
    # Test config: every stage present, a few thousand parameters, milliseconds on 32x32.
    "tiny": {"dim": 2, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 1, 2, 2]},
}


# --------------------------------------------------------------------------------------------
# NAFNet


def _infer_nafnet(state_dict: StateDict) -> Config | None:
    if "intro.weight" not in state_dict or "ending.weight" not in state_dict:
        return None
    intro = state_dict["intro.weight"]
    levels = _block_count(state_dict, "downs") if "downs.0.weight" in state_dict else 0
    up_levels = _block_count(state_dict, "ups")
    return {
        "img_channel": int(intro.shape[1]),
        "width": int(intro.shape[0]),
        "middle_blk_num": _block_count(state_dict, "middle_blks"),
        "enc_blk_nums": [_block_count(state_dict, f"encoders.{i}") for i in range(levels)],
        "dec_blk_nums": [_block_count(state_dict, f"decoders.{i}") for i in range(up_levels)],
    }


def _nafnet_padding(config: Config) -> tuple[int, PadMode]:
    return 2 ** len(config["enc_blk_nums"]), "constant"


def _nafnet_channels(config: Config) -> tuple[int, int]:
    return config["img_channel"], config["img_channel"]


_NAFNET_SIDD: Config = {"enc_blk_nums": [2, 2, 4, 8], "middle_blk_num": 12, "dec_blk_nums": [2, 2, 2, 2]}
_NAFNET_GOPRO: Config = {"enc_blk_nums": [1, 1, 1, 28], "middle_blk_num": 1, "dec_blk_nums": [1, 1, 1, 1]}
# No blocks at full resolution (enc level 1 and the last decoder): there, per-pixel element-wise work
# dominates CPU time, so a block costs far more per megapixel than one a level deeper.
_NAFNET_LITE: Config = {"enc_blk_nums": [0, 1, 1, 2], "middle_blk_num": 2, "dec_blk_nums": [1, 1, 1, 0]}
NAFNET_CONFIGS: dict[str, Config] = {
    "sidd-width32": {"width": 32, **_NAFNET_SIDD},
    "sidd-width64": {"width": 64, **_NAFNET_SIDD},
    "gopro-width32": {"width": 32, **_NAFNET_GOPRO},
    "gopro-width64": {"width": 64, **_NAFNET_GOPRO},
    "reds-width64": {"width": 64, **_NAFNET_GOPRO},
    # Small configs for the CPU-trained weights restorecli ships as defaults.
    "lite-w16": {"width": 16, **_NAFNET_LITE},
    # lite-w16 with six more blocks at 1/8 resolution, where the official deblurring configs put
    # their depth (GoPro: 28 of 33 blocks); grown from lite-w16 weights (recipe model.grow).
    "lite-w16-deep": {"width": 16, **_NAFNET_LITE, "enc_blk_nums": [0, 1, 1, 8]},
    # lite-w16-deep with four more encoder and two more decoder blocks at 1/8 and two more middle
    # blocks at 1/16, where blocks cost little time per megapixel (bench/results/epyc-deblur-deeper.txt);
    # grown from lite-w16-deep weights.
    "lite-w16-deeper": {"width": 16, "enc_blk_nums": [0, 1, 1, 12], "middle_blk_num": 4, "dec_blk_nums": [3, 1, 1, 0]},
    # lite-w16 with two encoder and two decoder blocks at full resolution, where denoising needs
    # fine detail; grown from lite-w16 weights (the new blocks start as identities).
    "lite-w16-full": {"width": 16, "enc_blk_nums": [2, 1, 1, 2], "middle_blk_num": 2, "dec_blk_nums": [1, 1, 1, 2]},
    # Test config: two levels, a few thousand parameters, milliseconds on 32x32.
    "tiny": {"width": 4, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]},
}
# TLC variants: the same networks; windows sized from the (official 256x256) training patches,
# except the tiny test config, whose 32x32 patches make 64x64 inputs exercise local pooling.
NAFNET_LOCAL_CONFIGS: dict[str, Config] = {
    **NAFNET_CONFIGS,
    "tiny": {**NAFNET_CONFIGS["tiny"], "train_size": [1, 3, 32, 32]},
}


# --------------------------------------------------------------------------------------------
# SAFMN and CAMixerSR (super-resolution: output = scale x input)


def _pixel_shuffle_scale(outputs: int, colours: int) -> int:
    """The scale ``s`` of a tail convolution that feeds a pixel shuffle: ``outputs = colours * s**2``."""
    return math.isqrt(outputs // colours)


def _infer_safmn(state_dict: StateDict) -> Config | None:
    if "to_feat.weight" not in state_dict or "feats.0.safm.aggr.weight" not in state_dict:
        return None
    dim = int(state_dict["to_feat.weight"].shape[0])
    hidden = int(state_dict["feats.0.ccm.ccm.0.weight"].shape[0])
    return {
        "dim": dim,
        "n_blocks": _block_count(state_dict, "feats"),
        "ffn_scale": _ffn_factor({dim: hidden}),
        "upscaling_factor": _pixel_shuffle_scale(int(state_dict["to_img.0.weight"].shape[0]), 3),
    }


def _infer_camixersr(state_dict: StateDict) -> Config | None:
    if "head.weight" not in state_dict or "global_predictor.0.weight" not in state_dict:
        return None
    head = state_dict["head.weight"]
    groups = _block_count(state_dict, "body")
    colours = int(head.shape[1])
    return {
        "n_block": [_block_count(state_dict, f"body.{group}.body") for group in range(groups)],
        "n_group": groups,
        "n_colors": colours,
        "n_feats": int(head.shape[0]),
        "scale": _pixel_shuffle_scale(int(state_dict["tail.0.weight"].shape[0]), colours),
        # out_mask.0 maps a flattened window (size**2 values) to ``size`` features.
        "window_size": int(state_dict["body.0.body.0.mixer.route.out_mask.0.weight"].shape[0]),
    }


_SAFMN_EFFICIENT: Config = {"dim": 36, "n_blocks": 8, "ffn_scale": 2.0}
_SAFMN_LARGE: Config = {"dim": 128, "n_blocks": 16, "ffn_scale": 2.0}
SAFMN_CONFIGS: dict[str, Config] = {
    # Efficient SR (the paper's main table; official test_benchmark_x*.yml).
    **{f"x{scale}": {**_SAFMN_EFFICIENT, "upscaling_factor": scale} for scale in (2, 3, 4)},
    # Classic SR and the real-world releases (official test_L_benchmark_x*.yml, SAFMN_L_*).
    **{f"large-x{scale}": {**_SAFMN_LARGE, "upscaling_factor": scale} for scale in (2, 3, 4)},
    # Test config: every layer kind, a few thousand parameters, milliseconds on 32x32.
    "tiny": {"dim": 8, "n_blocks": 1, "upscaling_factor": 2},
}
CAMIXERSR_CONFIGS: dict[str, Config] = {
    # Lightweight SR "Base" (60 channels, ratio 0.5; official test_x2.yml / test_x4.yml).
    **{f"x{scale}": {"scale": scale} for scale in (2, 3, 4)},
    # Test config: one group of one block, 8x8 windows so small inputs still have several to route.
    "tiny": {"n_block": [1], "n_group": 1, "n_feats": 8, "scale": 2, "window_size": 8},
}


ARCHITECTURES: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec(
            name="restormer",
            builder=Restormer,
            configs=RESTORMER_CONFIGS,
            default_config="deraining",
            description="Restormer transformer (Zamir et al., CVPR 2022)",
            padding_rule=lambda config: (8, "reflect"),
            channel_rule=_restormer_channels,
            inferrer=_infer_restormer,
            channels_last=True,
        ),
        ArchSpec(
            name="nafnet",
            builder=NAFNet,
            configs=NAFNET_CONFIGS,
            default_config="sidd-width32",
            description="NAFNet, global channel attention (Chen et al., ECCV 2022)",
            padding_rule=_nafnet_padding,
            channel_rule=_nafnet_channels,
            inferrer=_infer_nafnet,
            channels_last=True,
            variants={"tlc": "nafnet-local"},
        ),
        ArchSpec(
            name="nafnet-local",
            builder=NAFNetLocal,
            configs=NAFNET_LOCAL_CONFIGS,
            default_config="gopro-width64",
            description="NAFNet with test-time local converter (TLC), as GoPro/REDS were evaluated",
            padding_rule=_nafnet_padding,
            channel_rule=_nafnet_channels,
            inferrer=_infer_nafnet,
            channels_last=True,
            variants={PLAIN: "nafnet", "tlc": "nafnet-local"},
        ),
        ArchSpec(
            name="safmn",
            builder=SAFMN,
            configs=SAFMN_CONFIGS,
            default_config="x4",
            description="SAFMN super-resolution, spatially-adaptive feature modulation (Sun et al., ICCV 2023)",
            # Its pooling pyramid divides the size by 8; padded as spandrel pads SAFMN, so outputs equal its own
            # (sides of 4 pixels or fewer differ otherwise: reflection then replication, not repeated reflection).
            padding_rule=lambda config: (8, "reflect-replicate"),
            channel_rule=lambda config: (3, 3),
            inferrer=_infer_safmn,
            scale_rule=lambda config: config["upscaling_factor"],
        ),
        ArchSpec(
            name="camixersr",
            builder=CAMixerSR,
            configs=CAMIXERSR_CONFIGS,
            default_config="x4",
            description="CAMixerSR super-resolution, content-aware attention/convolution mixing (Wang et al., CVPR 2024)",
            # The official forward reflect-pads to whole windows itself; padding first changes nothing.
            padding_rule=lambda config: (config["window_size"], "reflect"),
            channel_rule=lambda config: (config["n_colors"], config["n_colors"]),
            inferrer=_infer_camixersr,
            scale_rule=lambda config: config["scale"],
        ),
    )
}


def get_arch(name: str) -> ArchSpec:
    """Look up an architecture by registry name.

    Raises:
        UnknownModelError: the name is not registered (the message suggests close matches).
    """
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    raise UnknownModelError(f"Expected an architecture name, but got {name!r}{_suggest(name, ARCHITECTURES)}")


def _suggest(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known)}"
    return f" ({hint})"


def arch_variant(arch: str, variant: str) -> str:
    """The registry name of ``arch``'s ``variant``, which loads the same weights (``nafnet`` + ``tlc``
    -> ``nafnet-local``); :data:`PLAIN` is the family's own network.

    Raises:
        UnknownModelError: unknown architecture name.
        ConfigError: the family offers no such variant (Restormer has no global pooling to replace).
    """
    spec = get_arch(arch)
    variants = {PLAIN: spec.name, **spec.variants}
    if variant not in variants:
        raise ConfigError(f"Expected a variant among {', '.join(sorted(variants))} for {arch}, but got {variant!r}")
    return variants[variant]


def resolve_config(arch: str | ArchSpec, config: str | Mapping[str, Any] | None = None) -> Config:
    """Turn a config name, an explicit mapping, or None (the default) into full constructor kwargs.

    Returns:
        A fresh dict with every constructor argument (lists, not tuples), safe to mutate.

    Raises:
        UnknownModelError: unknown architecture or config name.
        ConfigError: the mapping has keys the constructor does not take.
    """
    spec = get_arch(arch) if isinstance(arch, str) else arch
    if config is None:
        config = spec.default_config
    if isinstance(config, str):
        if config not in spec.configs:
            raise UnknownModelError(
                f"Expected a config of {spec.name}, but got {config!r}{_suggest(config, spec.configs)}"
            )
        config = spec.configs[config]
    return spec.complete(config)


def build_model(arch: str | ArchSpec, config: str | Mapping[str, Any] | None = None) -> nn.Module:
    """Construct an architecture with randomly initialised weights (see ``resolve_config``)."""
    spec = get_arch(arch) if isinstance(arch, str) else arch
    return spec.build(resolve_config(spec, config))


def infer_arch(state_dict: StateDict) -> tuple[str, Config]:
    """Recover ``(arch name, full config)`` from a state dict's keys and shapes.

    NAFNet and NAFNet-TLC checkpoints are identical, so they are reported as ``"nafnet"``; the
    zoo entry decides whether TLC applies.

    Raises:
        CheckpointError: no registered family recognises the keys, or the tensors are malformed.
    """
    found = recognise_arch(state_dict)
    if found is not None:
        return found
    sample = ", ".join(list(state_dict)[:3]) or "no keys"
    raise CheckpointError(
        "Expected a Restormer, NAFNet, SAFMN or CAMixerSR state dict (keys 'patch_embed.proj.weight', "
        "'intro.weight', 'to_feat.weight' or 'head.weight'), "
        f"but got {sample}"
    )


def recognise_arch(state_dict: StateDict) -> tuple[str, Config] | None:
    """Like :func:`infer_arch`, but None when no native family recognises the keys.

    Raises:
        CheckpointError: a family recognises the keys but the tensors are malformed.
    """
    for spec in ARCHITECTURES.values():
        try:
            config = spec.infer(state_dict)
        except (IndexError, AttributeError, TypeError) as error:
            raise CheckpointError(
                f"Expected {spec.name} tensors of the official shapes, but got a malformed state dict ({error})"
            ) from error
        if config is not None:
            return spec.name, config
    return None


def build_on_meta(arch: str | ArchSpec, config: str | Mapping[str, Any] | None = None) -> nn.Module:
    """Build without allocating weights (meta device): for shapes, key names and counts."""
    with torch.device("meta"):
        return build_model(arch, config)
