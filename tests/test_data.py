"""Discovery and the train/val/test split: stratified, reproducible, recorded."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from helpers import write_dataset

from training.data import check_readable, discover, fingerprint, read_manifest, split_samples, write_manifest


def _split(samples, seed=42):
    return split_samples(samples, val_fraction=0.15, test_fraction=0.15, seed=seed)


def test_split_is_stratified_and_covers_every_image_once(tmp_path: Path) -> None:
    samples = discover(write_dataset(tmp_path / "data", per_class=40))
    split = _split(samples)
    assert sorted(str(s.path) for s in split) == sorted(str(s.path) for s in samples)
    counts = Counter((s.split, s.label) for s in split)
    for name, share in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
        assert counts[(name, "ai")] == counts[(name, "real")], counts
        assert abs(counts[(name, "ai")] - 40 * share) <= 1, counts


def test_split_is_reproducible_for_a_seed_and_changes_with_it(tmp_path: Path) -> None:
    samples = discover(write_dataset(tmp_path / "data", per_class=20))
    first, again = _split(samples), _split(list(reversed(samples)))
    assert [(s.path, s.split) for s in first] == [(s.path, s.split) for s in again]
    assert [s.split for s in _split(samples, seed=7)] != [s.split for s in first]


def test_given_split_folders_are_kept(tmp_path: Path) -> None:
    for name in ("train", "val", "test"):
        write_dataset(tmp_path / "data" / name, per_class=3, seed=len(name))
    split = _split(discover(tmp_path / "data"))
    assert Counter(s.split for s in split) == {"train": 6, "val": 6, "test": 6}
    assert all(s.path.parts[-3] == s.split for s in split)


def test_manifest_round_trip_and_relative_paths(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", per_class=4)
    manifest = data / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"])
        for sample in discover(data):
            writer.writerow([sample.path.relative_to(data), sample.label])
    assert [(s.path.resolve(), s.label) for s in discover(manifest)] == [
        (s.path.resolve(), s.label) for s in discover(data)
    ]
    split = _split(discover(manifest))
    write_manifest(split, tmp_path / "split.csv")
    assert [(s.path, s.label, s.split) for s in read_manifest(tmp_path / "split.csv")] == [
        (s.path.resolve(), s.label, s.split) for s in split
    ]


def test_bad_manifest_label_is_a_clear_error(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na.jpg,fake\n")
    with pytest.raises(ValueError, match="unknown class 'fake'"):
        discover(manifest)


def test_unreadable_files_are_skipped_and_reported(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", per_class=3)
    (data / "ai" / "notes.jpg").write_text("not an image")
    good, skipped = check_readable(discover(data))
    assert len(good) == 6
    assert [Path(entry["path"]).name for entry in skipped] == ["notes.jpg"]


def test_fingerprint_follows_content_not_location(tmp_path: Path) -> None:
    first = _split(discover(write_dataset(tmp_path / "a", per_class=4)))
    second = _split(discover(write_dataset(tmp_path / "b", per_class=4)))
    assert fingerprint(first) == fingerprint(second)
    (tmp_path / "b" / "ai" / "ai_000.jpg").write_bytes(b"changed")
    assert fingerprint(first) != fingerprint(second)
