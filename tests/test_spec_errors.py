"""Spec validation errors: one line per problem, naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gesturekit.config.base import validate_spec
from gesturekit.config.specs import DetectorSpec
from gesturekit.errors import GesturekitError


def spec_with_train(train: list) -> dict:
    return {"dataset": {"train": train, "classes": ["hand"]}, "model": {"pretrained": False}}


def test_a_missing_dataset_is_named_once_whether_a_path_or_a_mapping(tmp_path: Path) -> None:
    present = tmp_path / "present.gkpack"
    present.touch()
    missing = tmp_path / "missing.gkpack"
    train = [str(present), str(missing), {"path": str(missing), "split": "val"}]
    with pytest.raises(GesturekitError) as info:
        validate_spec(spec_with_train(train), DetectorSpec, "my.yaml")
    assert str(info.value).splitlines() == [  # not one line per member of the path-or-mapping union
        f"my.yaml: dataset.train[1]: file not found: {missing}",
        f"my.yaml: dataset.train[2].path: file not found: {missing}",
    ]
    assert validate_spec(spec_with_train([str(present)]), DetectorSpec, "my.yaml").dataset.train == [present]


def test_other_problems_keep_their_own_messages(tmp_path: Path) -> None:
    data = spec_with_train([3])
    data["model"]["bogus"] = 1
    data["training"] = {"epochs": 0}
    with pytest.raises(GesturekitError) as info:
        validate_spec(data, DetectorSpec, "my.yaml")
    lines = str(info.value).splitlines()
    assert "my.yaml: model.bogus: unknown key" in lines
    assert "my.yaml: training.epochs: Input should be greater than 0" in lines
    train_lines = [line for line in lines if line.startswith("my.yaml: dataset.train[0]: ")]
    assert len(train_lines) == 2  # a number is neither a path nor a mapping: both say why
    assert all(line.count("[") == 1 for line in train_lines)  # no union member's name in the key path


def test_a_user_key_with_a_capital_stays_in_the_key_path(tmp_path: Path) -> None:
    present = tmp_path / "present.gkpack"
    present.touch()
    data = {"dataset": {"train": [str(present)], "classes": ["Hand"]}, "class_weights": {"Hand": "heavy"}}
    with pytest.raises(GesturekitError, match=r"^my.yaml: class_weights\.Hand: Input should be a valid number"):
        validate_spec(data, DetectorSpec, "my.yaml")
