"""Knowledge distillation of the detector: the loss, the frozen teacher, and the spec section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import kitti_line, write_kitti

from gesturekit.config.base import validate_spec
from gesturekit.config.specs import DetectorSpec
from gesturekit.engine.checkpoint import load_checkpoint
from gesturekit.errors import GesturekitError
from gesturekit.models import create_model
from gesturekit.models.zoo import zoo_path
from gesturekit.training.detector import train_detector


def _detector(seed: int, **kwargs):
    torch.manual_seed(seed)
    return create_model("detectnet_v2", pretrained=False, **kwargs)


def _images() -> torch.Tensor:
    torch.manual_seed(1)
    images = torch.rand(2, 3, 64, 64) * 0.5
    images[:, :, 20:44, 16:40] += 1.0
    return images


def test_distillation_loss_vanishes_only_when_the_outputs_match() -> None:
    student, other = _detector(0).eval(), _detector(1).eval()
    with torch.no_grad():
        for p in other.heads.parameters():  # fresh heads all predict the prior: make this one differ
            p.add_(torch.randn_like(p) * 0.3)
        levels = student.forward_levels(_images())
        same = student.distillation_loss(levels, levels)
        different = student.distillation_loss(levels, other.forward_levels(_images()))
    assert same["loss_distill_coverage"].abs().item() < 1e-4
    assert same["loss_distill_bbox"].abs().item() < 1e-4
    assert different["loss_distill_coverage"].item() > 1e-3 and different["loss_distill_bbox"].item() > 1e-3


def test_teacher_is_frozen_and_kept_out_of_the_student() -> None:
    student, teacher = _detector(0), _detector(1)
    keys, params = list(student.state_dict()), len(list(student.parameters()))
    student.set_teacher(teacher, weight=0.5)
    student.train()
    assert list(student.state_dict()) == keys and len(list(student.parameters())) == params
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())

    targets = [{"boxes": torch.tensor([[16.0, 20.0, 40.0, 44.0]]), "labels": torch.zeros(1, dtype=torch.long)}] * 2
    losses = student(_images(), targets)
    assert {"loss_coverage", "loss_bbox", "loss_distill_coverage", "loss_distill_bbox"} <= set(losses)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.heads.parameters())

    student.set_teacher(None)
    assert set(student(_images(), targets)) == {"loss_coverage", "loss_bbox"}


def test_distillation_pulls_the_student_towards_the_teacher() -> None:
    student, teacher = _detector(0), _detector(1).eval()
    images = _images()
    with torch.no_grad():
        teacher_levels = teacher.forward_levels(images)
    optimizer = torch.optim.Adam(student.parameters(), lr=3e-3)
    student.train()
    history = []
    for _ in range(40):
        losses = student.distillation_loss(student.forward_levels(images), teacher_levels)
        loss = sum(losses.values())
        history.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert history[-1] < 0.5 * history[0]


def test_mismatched_teacher_is_refused() -> None:
    with pytest.raises(ValueError, match="strides"):
        _detector(0, strides=[8, 16]).set_teacher(_detector(1))


def _spec(tmp_path: Path, **model: object) -> DetectorSpec:
    names = [f"f{i}.jpg" for i in range(4)]
    data = write_kitti(tmp_path / "data", {n: [kitti_line("hand", 10, 12, 40, 44)] for n in names},
                       {"train": names}, size=(96, 80))
    return validate_spec({
        "dataset": {"train": [str(data)]},
        "augmentation": {"input_size": 96},
        "model": {"pretrained": False, **model},
        "training": {"epochs": 1, "batch_size_per_gpu": 2, "num_workers": 0, "precision": "fp32",
                     "max_iterations_per_epoch": 2},
        "distillation": {"teacher_model_file": str(zoo_path("hand-detector") / "model.pt"), "weight": 0.5},
    }, DetectorSpec, "spec.yaml")


def test_spec_distillation_trains_from_the_zoo_detector_and_saves_the_student_alone(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    train_detector(spec, tmp_path / "run", device="cpu")
    logged = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["loss"]
    assert logged["loss_distill_coverage"] > 0 and logged["loss_distill_bbox"] > 0
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert set(saved["model"]) == set(_detector(0).state_dict())
    assert saved["spec"]["distillation"]["weight"] == 0.5


def test_spec_with_a_teacher_of_other_strides_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(GesturekitError, match=r"distillation.teacher_model_file: .*strides"):
        train_detector(_spec(tmp_path, strides=[8, 16]), tmp_path / "run", device="cpu")
