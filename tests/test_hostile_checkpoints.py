"""Weight files from anyone: each hostile or broken one is refused quickly with one true line, before
anything is allocated from what it declares."""

from __future__ import annotations

import io
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restorecli.errors import CheckpointError, RestoreError
from restorecli.zoo import architectures, checkpoint, loader


def _tiny() -> dict[str, torch.Tensor]:
    return {k: torch.zeros(v.shape) for k, v in architectures.build_on_meta("nafnet", "tiny").state_dict().items()}


def _save(path: Path, state: object, **kwargs: object) -> None:
    torch.save(state, path, **kwargs)  # type: ignore[arg-type]


def _expanded(path: Path) -> None:  # the 1.9 KB file declaring a 30,000-channel NAFNet
    state = _tiny()
    state["intro.weight"] = torch.zeros(1).expand(30_000, 3, 3, 3)
    _save(path, state)


def _ten_million_blocks(path: Path) -> None:
    _save(path, {**_tiny(), "middle_blks.9999999.conv1.weight": torch.zeros(1)})


def _wide_real_tensor(path: Path) -> None:  # no stride trick: a real 30,000 x 3 x 1 x 1 intro weight
    state = _tiny()
    state["intro.weight"] = torch.zeros(30_000, 3, 3, 3)
    _save(path, state)


def _card(config: dict[str, object]) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        _save(path, _tiny())
        path.with_suffix(".json").write_text(json.dumps({"arch": "nafnet", "config": config}))

    return make


def _zip_tiny() -> bytes:
    buffer = io.BytesIO()
    torch.save(_tiny(), buffer)
    return buffer.getvalue()


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "text": (lambda p: p.write_text("root:x:0:0:root:/root:/bin/bash\n"), "not|neither"),
    "random-bytes": (lambda p: p.write_bytes(os.urandom(4096)), "neither"),
    "empty": (lambda p: p.write_bytes(b""), "neither"),
    "truncated-zip": (lambda p: p.write_bytes(_zip_tiny()[:3000]), "truncated or damaged"),
    "truncated-legacy": (
        lambda p: (_save(p, _tiny(), _use_new_zipfile_serialization=False), p.write_bytes(p.read_bytes()[:300])),
        "reading failed|malformed",
    ),
    "integer-keys": (lambda p: _save(p, {0: torch.zeros(1), 1: torch.zeros(2)}), "text keys"),
    "no-tensors": (lambda p: _save(p, {"optimizer": {"lr": 1.0}}), "state dict"),
    "expanded-tensor": (_expanded, "expanded tensor"),
    "ten-million-blocks": (_ten_million_blocks, "10,000,000"),
    "width-30000": (_wide_real_tensor, "from 0 to 4096|parameters"),
    "card-width-0": (_card({"width": 0}), "built from"),
    "card-width-negative": (_card({"width": -8}), "from 0 to 4096"),
    "card-huge-width": (_card({"width": 4000}), "fit nafnet"),  # compared on the meta device
    "card-many-blocks": (_card({"middle_blk_num": 4000}), "blocks"),
    "safetensors-garbage": (lambda p: p.write_bytes(b"\x10\0\0\0\0\0\0\0{" + b"\xff" * 40), "safetensors"),
    "zip-not-torch": (lambda p: p.write_bytes(b"PK\x03\x04" + os.urandom(200)), "truncated or damaged"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_checkpoint_is_one_line_without_allocation(
    tmp_path: Path, case: str, capfd: pytest.CaptureFixture[str]
) -> None:
    make, expected = CASES[case]
    path = tmp_path / "weights.pth"
    make(path)
    started = time.perf_counter()
    with pytest.raises(CheckpointError) as info:
        loader.load_descriptor(path)
    message = str(info.value)
    assert time.perf_counter() - started < 5, "refused, but only after building"
    assert re.search(expected, message), message
    assert "weights.pth" in message and message.isprintable()
    assert "Traceback" not in capfd.readouterr().err


def test_the_real_pickle_exploit_still_says_pickled_objects(tmp_path: Path) -> None:
    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.system, (f"touch {tmp_path / 'pwned'}",)

    path = tmp_path / "evil.pth"
    _save(path, {"params": Exploit()})
    with pytest.raises(CheckpointError, match="refuses to execute"):
        checkpoint.read_state_dict(path)
    assert not (tmp_path / "pwned").exists()


def test_kind_comes_from_content_not_suffix(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = _tiny()
    save_file(state, tmp_path / "named.pth")  # safetensors content under a .pth name
    assert checkpoint.checkpoint_kind(tmp_path / "named.pth") == "safetensors"
    assert set(checkpoint.read_state_dict(tmp_path / "named.pth")) == set(state)
    _save(tmp_path / "legacy.pt", state, _use_new_zipfile_serialization=False)
    assert checkpoint.checkpoint_kind(tmp_path / "legacy.pt") == "pickle"
    assert loader.load_descriptor(tmp_path / "legacy.pt").arch == "nafnet"


def test_a_folder_is_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="a folder exists"):
        checkpoint.read_state_dict(tmp_path)


def test_tied_views_that_share_storage_are_accepted(tmp_path: Path) -> None:
    base = torch.arange(12.0)
    state = {"a": base[:6].view(2, 3), "b": base[6:].view(3, 2)}  # views of one storage, no overlap trick
    checkpoint.check_tensors(state, "x.pth")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.integers(0, 2000),
    legacy=st.booleans(),
)
def test_property_mutated_checkpoints_load_or_fail_with_one_line(
    tmp_path: Path, edits: list[tuple[int, int]], cut: int, legacy: bool
) -> None:
    """Byte flips and truncations of a valid checkpoint: a state dict of sane tensors or one CheckpointError."""
    buffer = io.BytesIO()
    torch.save(_tiny(), buffer, _use_new_zipfile_serialization=not legacy)
    payload = bytearray(buffer.getvalue())
    for position, value in edits:
        payload[position % len(payload)] = value
    path = tmp_path / "fuzz.pth"
    path.write_bytes(bytes(payload[: max(1, len(payload) - cut)]))
    try:
        state = checkpoint.read_state_dict(path)
    except CheckpointError as exc:
        assert str(exc).isprintable() and "fuzz.pth" in str(exc)
    else:
        checkpoint.check_tensors(state, path)


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(-10, 10**9),
    middle=st.integers(-10, 10**8),
    encoders=st.lists(st.integers(0, 10**6), max_size=4),
)
def test_property_config_inspector_refuses_quickly_or_builds_a_small_skeleton(
    width: int, middle: int, encoders: list[int]
) -> None:
    config = {"width": width, "middle_blk_num": middle, "enc_blk_nums": encoders, "dec_blk_nums": list(encoders)}
    started = time.perf_counter()
    try:
        kwargs = architectures.resolve_config("nafnet", config)
        skeleton = checkpoint.build_skeleton("nafnet", kwargs, "x.pth")
    except RestoreError as exc:
        assert str(exc).isprintable()
    else:
        assert sum(p.numel() for p in skeleton.parameters()) <= checkpoint.MAX_PARAMETERS
        assert all(p.is_meta for p in skeleton.parameters())
    assert time.perf_counter() - started < 10
