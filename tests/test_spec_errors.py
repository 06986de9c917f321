"""Spec validation errors: one line per problem, naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gesturekit.config.base import read_yaml, validate_spec
from gesturekit.config.specs import ClassifierSpec, DetectorSpec
from gesturekit.errors import GesturekitError
from gesturekit.models.zoo import ZOO_ROOT
from tests.conftest import kitti_line, write_kitti


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


def test_file_checks_can_be_skipped_and_nothing_else(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pt"
    data = spec_with_train([str(tmp_path / "missing.gkpack")])
    data["model"]["pretrained_model_file"] = str(missing)
    with pytest.raises(GesturekitError, match=r"my.yaml: model.pretrained_model_file: file not found"):
        validate_spec(data, DetectorSpec, "my.yaml")
    assert validate_spec(data, DetectorSpec, "my.yaml", check_files=False).model.pretrained_model_file == missing
    data["training"] = {"epochs": 0}
    with pytest.raises(GesturekitError, match=r"^my.yaml: training.epochs: Input should be greater than 0$"):
        validate_spec(data, DetectorSpec, "my.yaml", check_files=False)


@pytest.mark.parametrize("task, name", [("detector", "hand-detector"), ("classifier", "gesture-classifier")])
def test_a_zoo_model_is_evaluated_with_its_own_spec_without_its_training_inputs(
        task: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from gesturekit.cli.main import app

    monkeypatch.chdir(tmp_path)  # the spec's relative training inputs (packs, the starting checkpoint) are absent
    spec = ZOO_ROOT / name / "spec.yaml"
    with pytest.raises(GesturekitError, match="file not found"):  # as training reads it
        validate_spec(read_yaml(spec), DetectorSpec if task == "detector" else ClassifierSpec, str(spec))
    label = "hand" if task == "detector" else "fist"
    data = write_kitti(tmp_path / "frames", {"a.jpg": [kitti_line(label, 8, 8, 40, 40)]}, {"test": ["a.jpg"]})
    result = CliRunner().invoke(app, ["evaluate", task, "-e", str(spec), "-m", name, "-d", str(data), "--split", "test"])
    assert result.exit_code == 0, result.output
    assert f"frames_test: {'AP@0.5' if task == 'detector' else 'macro-F1'} " in result.output
