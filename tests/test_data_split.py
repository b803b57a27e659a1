"""split: layouts, name patterns, hash assignment (reproducible and stable), existing lists, materialize."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from restorecli.data import (
    SplitRatios,
    assign_split,
    hash_fraction,
    index_dataset,
    materialize_split,
    parse_name_patterns,
    read_id_list,
    split_dataset,
)
from restorecli.errors import ConfigError, DatasetError

PNG = b"\x89PNG\r\n\x1a\n"  # indexing looks at names only, so tiny stand-in files suffice


def _dataset(root: Path, ids: list[str], folders: dict[str, str] | None = None) -> Path:
    """Create ``root/<folder>/<template with id>.png`` for every id (default: input/ + target/)."""
    for folder, template in (folders or {"input": "{id}", "target": "{id}"}).items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for item_id in ids:
            (root / folder / f"{template.format(id=item_id)}.png").write_bytes(PNG + item_id.encode())
    return root


def _ids(count: int, start: int = 0) -> list[str]:
    return [f"img{i}" for i in range(start, start + count)]


def test_hash_fraction_is_first_64_bits_of_sha256_of_seed_and_id() -> None:
    expected = int(hashlib.sha256(b"7:Misc_1").hexdigest()[:16], 16) / 2**64
    assert hash_fraction("Misc_1", 7) == expected
    assert 0.0 <= hash_fraction("x", 0) < 1.0


def test_assignment_is_pinned_across_machines_and_versions() -> None:
    # Golden values (sha256 of "0:img<i>" computed by hand with hashlib): changing them would move the
    # ids of every split ever made with seed 0.
    ratios = SplitRatios(0.5, 0.0, 0.5)
    assert [assign_split(i, 0, ratios) for i in _ids(8)] == [
        "test",
        "train",
        "train",
        "test",
        "test",
        "test",
        "train",
        "test",
    ]
    assert hash_fraction("img6", 0) == pytest.approx(0.0059, abs=1e-4)
    # 0.19 < 0.2 lands in train; 0.2794 lands in val (0.2 <= u < 0.3); 0.5743 in test
    three = SplitRatios(0.2, 0.1, 0.7)
    assert [assign_split(i, 0, three) for i in ("img2", "img1", "img0")] == ["train", "val", "test"]


def test_ratios_are_respected_on_many_ids() -> None:
    ratios = SplitRatios(0.7, 0.1, 0.2)
    counts = {"train": 0, "val": 0, "test": 0}
    for item_id in _ids(4000):
        counts[assign_split(item_id, 3, ratios)] += 1
    # binomial standard deviations are about 29, 19 and 25: allow 4 of them
    assert abs(counts["train"] - 2800) < 116 and abs(counts["val"] - 400) < 76 and abs(counts["test"] - 800) < 100


def test_zero_ratio_split_never_receives_ids() -> None:
    ratios = SplitRatios(1.0, 0.0, 0.0)
    assert {assign_split(i, 0, ratios) for i in _ids(200)} == {"train"}


@pytest.mark.parametrize(
    ("options", "expected", "name"),
    [
        ({}, (0.8, 0.0, 0.2), "80_20"),
        ({"test": 0.5}, (0.5, 0.0, 0.5), "50_50"),
        ({"train": 0.7, "val": 0.1}, (0.7, 0.1, 0.2), "70_10_20"),
        ({"val": 0.1}, (0.7, 0.1, 0.2), "70_10_20"),
        ({"train": 0.6, "val": 0.2, "test": 0.2}, (0.6, 0.2, 0.2), "60_20_20"),
    ],
)
def test_ratio_options_fill_the_remainder(options: dict[str, float], expected: tuple[float, ...], name: str) -> None:
    ratios = SplitRatios.from_options(**options)
    assert (ratios.train, ratios.val, ratios.test) == pytest.approx(expected)
    assert ratios.default_name() == name


@pytest.mark.parametrize("options", [{"train": 0.5, "test": 0.6}, {"test": 1.5}, {"train": 0.9, "val": 0.2}])
def test_bad_ratios_raise_config_error(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="Expected"):
        SplitRatios.from_options(**options)


def test_layouts_are_detected(tmp_path: Path) -> None:
    paired = _dataset(tmp_path / "paired", ["a"])
    seg = _dataset(tmp_path / "seg", ["a"], {"images": "{id}", "masks": "{id}"})
    plain = _dataset(tmp_path / "plain", ["a", "b"], {".": "{id}"})
    custom = _dataset(tmp_path / "custom", ["a"], {"blur": "{id}", "sharp": "{id}"})
    assert index_dataset(paired).folders == ("input", "target")
    assert index_dataset(seg).folders == ("images", "masks")
    assert index_dataset(plain).folders == (".",) and index_dataset(plain).ids == ["a", "b"]
    assert index_dataset(custom, dirs=["blur", "sharp"]).files["a"] == (custom / "blur/a.png", custom / "sharp/a.png")
    with pytest.raises(DatasetError, match="input/ \\+ target/"):
        index_dataset(custom)
    with pytest.raises(DatasetError, match="folder nope/"):
        index_dataset(custom, dirs=["blur", "nope"])


def test_name_patterns_match_suffixed_masks_and_unmatched_files_are_listed(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "sirst", ["Misc_1", "Misc_2"], {"images": "{id}", "masks": "{id}_pixels0"})
    (root / "masks" / "readme.png").write_bytes(PNG)
    index = index_dataset(root, patterns=parse_name_patterns(["masks={id}_pixels0"]))
    assert index.ids == ["Misc_1", "Misc_2"] and not index.missing
    assert index.files["Misc_2"][1].name == "Misc_2_pixels0.png"
    assert index.unmatched == (root / "masks" / "readme.png",)
    with pytest.raises(ConfigError, match="exactly one"):
        parse_name_patterns(["masks=pixels0"])
    with pytest.raises(ConfigError, match="FOLDER=TEMPLATE"):
        parse_name_patterns(["{id}_pixels0"])
    with pytest.raises(ConfigError, match="got labels"):
        index_dataset(root, patterns={"labels": "{id}"})


def test_duplicate_ids_in_one_folder_are_an_error(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", ["a"])
    (root / "input" / "a.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="one file per id"):
        index_dataset(root)


def test_read_id_list_copes_with_any_line_endings(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes("\ufeffa\r\nb\rc\n\r\n  d  \r\n".encode())
    assert read_id_list(path) == ["a", "b", "c", "d"]
    path.write_bytes(b"a\r\na\r\n")
    with pytest.raises(DatasetError, match="listed twice"):
        read_id_list(path)
    with pytest.raises(DatasetError, match="nothing exists"):
        read_id_list(tmp_path / "absent.txt")


def test_split_writes_natural_order_lists_reproducibly(tmp_path: Path) -> None:
    first = split_dataset(_dataset(tmp_path / "one", _ids(40)), SplitRatios(0.5, 0.0, 0.5), seed=1)
    second = split_dataset(_dataset(tmp_path / "two", _ids(40)), SplitRatios(0.5, 0.0, 0.5), seed=1)
    other_seed = split_dataset(_dataset(tmp_path / "three", _ids(40)), SplitRatios(0.5, 0.0, 0.5), seed=2)

    assert first.directory == tmp_path / "one" / "50_50"
    train = (first.directory / "train.txt").read_text().splitlines()
    assert train == first.lists["train"] and train == sorted(train, key=lambda i: int(i[3:]))
    assert sorted(first.lists["train"] + first.lists["test"]) == sorted(_ids(40))
    assert (second.directory / "train.txt").read_bytes() == (first.directory / "train.txt").read_bytes()
    assert other_seed.lists != first.lists
    assert not (first.directory / "val.txt").exists()


@pytest.mark.parametrize("reassign", [False, True])
def test_adding_files_never_moves_existing_ids(tmp_path: Path, reassign: bool) -> None:
    root = _dataset(tmp_path / "d", _ids(30))
    before = split_dataset(root, SplitRatios(0.6, 0.2, 0.2), seed=5)
    _dataset(root, _ids(25, start=30))
    after = split_dataset(root, SplitRatios(0.6, 0.2, 0.2), seed=5, reassign=reassign)
    for split, ids in before.lists.items():
        assert set(ids) <= set(after.lists[split])
    assert sum(len(ids) for ids in after.lists.values()) == 55
    assert sum(after.kept.values()) == (0 if reassign else 30)


def test_existing_crlf_lists_are_kept_and_left_untouched(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "sirst", _ids(6), {"images": "{id}", "masks": "{id}_pixels0"})
    # a published split that the hash would not reproduce: everything but img5 in train, not in natural order
    (root / "50_50").mkdir()
    published = b"img4\r\nimg0\r\nimg1\r\nimg2\r\nimg3\r\n"
    (root / "50_50" / "train.txt").write_bytes(published)
    (root / "50_50" / "test.txt").write_bytes(b"img5\r\n")
    patterns = {"masks": "{id}_pixels0"}

    unchanged = split_dataset(root, SplitRatios(0.5, 0.0, 0.5), patterns=patterns)
    assert unchanged.written == [] and unchanged.kept == {"train": 5, "test": 1}
    assert (root / "50_50" / "train.txt").read_bytes() == published

    _dataset(root, ["new"], {"images": "{id}", "masks": "{id}_pixels0"})
    grown = split_dataset(root, SplitRatios(0.5, 0.0, 0.5), patterns=patterns)
    new_split = assign_split("new", 0, SplitRatios(0.5, 0.0, 0.5))
    assert grown.lists["train"][:5] == ["img0", "img1", "img2", "img3", "img4"]
    assert "new" in grown.lists[new_split]
    assert grown.written == [root / "50_50" / f"{new_split}.txt"]
    assert read_id_list(root / "50_50" / f"{new_split}.txt") == grown.lists[new_split]


def test_id_in_two_existing_lists_is_an_error(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", ["a"])
    (root / "50_50").mkdir()
    (root / "50_50" / "train.txt").write_text("a\n")
    (root / "50_50" / "test.txt").write_text("a\n")
    with pytest.raises(DatasetError, match="in train and test"):
        split_dataset(root, SplitRatios(0.5, 0.0, 0.5))


def test_missing_ids_fail_unless_allowed(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", ["a", "b", "c"])
    (root / "target" / "b.png").unlink()
    (root / "input" / "c.png").unlink()
    with pytest.raises(DatasetError, match=r"2 are incomplete: b \(no target\), c \(no input\)"):
        split_dataset(root, SplitRatios(0.5, 0.0, 0.5))
    assert not (root / "50_50").exists()

    result = split_dataset(root, SplitRatios(0.5, 0.0, 0.5), allow_missing=True)
    assert result.missing == {"b": ("target",), "c": ("input",)}
    assert [name for names in result.lists.values() for name in names] == ["a"]


def test_suffix_mismatch_suggests_a_pattern(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "sirst", ["Misc_1", "Misc_10"], {"images": "{id}", "masks": "{id}_pixels0"})
    with pytest.raises(DatasetError, match=r"try --pattern masks=\{id\}_pixels0"):
        split_dataset(root, SplitRatios(0.5, 0.0, 0.5))


def test_ids_gone_from_existing_lists_fail_unless_dropped(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", ["a", "b"])
    split_dataset(root, SplitRatios(1.0, 0.0, 0.0), name="all")
    for folder in ("input", "target"):
        (root / folder / "b.png").unlink()
    with pytest.raises(DatasetError, match="1 are gone: b"):
        split_dataset(root, SplitRatios(1.0, 0.0, 0.0), name="all")
    result = split_dataset(root, SplitRatios(1.0, 0.0, 0.0), name="all", allow_missing=True)
    assert result.dropped == ["b"] and read_id_list(root / "all" / "train.txt") == ["a"]


def test_materialize_links_files_and_never_touches_sources(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "d", _ids(6))
    result = split_dataset(root, SplitRatios(0.5, 0.0, 0.5))
    placed = materialize_split(result.index, result.lists, tmp_path / "out")
    assert placed.linked + placed.copied == 12
    for split, ids in result.lists.items():
        for item_id in ids:
            for folder in ("input", "target"):
                target = tmp_path / "out" / split / folder / f"{item_id}.png"
                assert target.read_bytes() == (root / folder / f"{item_id}.png").read_bytes()
                assert os.path.samefile(target, root / folder / f"{item_id}.png")
    assert len(list((root / "input").iterdir())) == 6

    again = materialize_split(result.index, result.lists, tmp_path / "out")
    assert (again.present, again.linked, again.copied) == (12, 0, 0)
    conflict = tmp_path / "out" / "train" / "input" / f"{result.lists['train'][0]}.png"
    conflict.unlink()
    conflict.write_bytes(b"different")
    with pytest.raises(DatasetError, match="absent or identical"):
        materialize_split(result.index, result.lists, tmp_path / "out")


def test_composed_and_decomposed_names_split_alike_and_unicode_is_hashed_as_utf8() -> None:
    composed, decomposed = "caf\u00e9_3", "cafe\u0301_3"  # what Linux and macOS store for one name
    assert hash_fraction(composed, 5) == hash_fraction(decomposed, 5)
    expected = int(hashlib.sha256("5:caf\u00e9_3".encode()).hexdigest()[:16], 16) / 2**64
    assert hash_fraction(decomposed, 5) == expected  # the composed form's UTF-8: lists made before still hold


def test_a_name_that_is_not_utf8_is_split_listed_and_read_back(tmp_path: Path) -> None:
    odd = os.fsdecode(b"b\xff")  # a Latin-1 name on a UTF-8 system: a lone surrogate in Python
    root = tmp_path / "data"
    root.mkdir()
    for item_id in ("a", odd, "c"):
        (root / f"{item_id}.png").write_bytes(PNG)
    result = split_dataset(root, SplitRatios(train=0.5, val=0.0, test=0.5), seed=1)
    listed = [item_id for ids in result.lists.values() for item_id in ids]
    assert sorted(listed) == sorted(["a", odd, "c"])
    folder = result.directory
    again = [item_id for split in ("train", "test") for item_id in read_id_list(folder / f"{split}.txt")]
    assert sorted(again) == sorted(listed)
    assert os.fsencode(odd) + b"\n" in b"".join(path.read_bytes() for path in folder.glob("*.txt"))
