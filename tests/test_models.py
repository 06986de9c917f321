"""Backbones, pretrained loading, the detector's targets/loss/decoding and the classifier."""

from __future__ import annotations

import pytest
import torch

from gesturekit.errors import GesturekitError
from gesturekit.models import create_model
from gesturekit.models import pretrained as pt
from gesturekit.models.backbones import build_backbone
from gesturekit.models.detector import DetectNetV2
from gesturekit.models.postprocess import postprocess


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_imagenet_weights_load_completely(name: str) -> None:
    backbone = build_backbone(name, max_stride=32, pretrained=True)
    report = backbone.load_report
    assert report is not None and not report.missing and not report.unexpected
    assert len(report.matched) > 250
    features = backbone(torch.randn(1, 3, 64, 96))
    assert {s: f.shape[-2:] for s, f in features.items()} == {
        4: (16, 24), 8: (8, 12), 16: (4, 6), 32: (2, 3)}


def test_imagenet_mobilenet_classifies_like_torchvision() -> None:
    from torchvision.models import mobilenet_v2

    reference = mobilenet_v2()
    reference.load_state_dict(pt.read_state_dict(pt.mobilenet_v2_imagenet_file(), pt.MOBILENET_V2_SHA256))
    backbone = build_backbone("mobilenet_v2", 32, pretrained=True).eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(backbone(x)[32], reference.eval().features(x), atol=1e-5)


def test_hash_mismatch_and_missing_file(tmp_path) -> None:
    bad = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(1)}, bad)
    with pytest.raises(GesturekitError, match="sha256"):
        pt.read_state_dict(bad, expected_sha256="0" * 64)
    with pytest.raises(GesturekitError, match="not found"):
        pt.read_state_dict(tmp_path / "nope.pth")
    bad.write_bytes(b"garbage")
    with pytest.raises(GesturekitError, match="not a loadable"):
        pt.read_state_dict(bad)


def test_load_matching_reports_missing_and_unexpected() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    state = {"0.weight": torch.ones(3, 2), "1.weight": torch.ones(5, 5), "extra": torch.ones(1)}
    report = pt.load_matching(model, state, "test")
    assert report.matched == ["0.weight"]
    assert set(report.unexpected) == {"1.weight", "extra"}
    assert set(report.missing) == {"0.bias", "1.weight", "1.bias"}
    assert torch.equal(model[0].weight, torch.ones(3, 2))


def test_unknown_model_name() -> None:
    with pytest.raises(GesturekitError, match="unknown model"):
        create_model("nope")


def _targets(*boxes: list[float]) -> list[dict[str, torch.Tensor]]:
    return [{"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
             "labels": torch.zeros(len(boxes), dtype=torch.long)}]


def test_small_box_gets_a_positive_cell_at_stride_8() -> None:
    model = create_model("detectnet_v2", pretrained=False)
    gt = torch.tensor([[[100.0, 100.0, 106.0, 109.0], [10.0, 10.0, 200.0, 150.0]]])
    owned = torch.ones(1, 2, dtype=torch.bool)
    owner = model._assign(8, 48, 48, gt, owned)[0]
    assert (owner == 0).sum() >= 1
    assert (owner == 1).sum() > (owner == 0).sum()


def test_positive_radius_widens_small_boxes_only() -> None:
    gt = torch.tensor([[[20.0, 20.0, 40.0, 44.0], [200.0, 200.0, 440.0, 440.0]]])  # apart: no shared cells
    owned = torch.ones(1, 2, dtype=torch.bool)
    counts = []
    for radius in (0.5, 1.5):
        owner = create_model("detectnet_v2", pretrained=False, positive_radius=radius)._assign(8, 64, 64, gt, owned)[0]
        counts.append(((owner == 0).sum().item(), (owner == 1).sum().item()))
    (small_default, large_default), (small_wide, large_wide) = counts
    assert small_wide >= 4 * small_default  # 3x3 cells or more instead of one or two
    assert large_wide == large_default  # a quarter of a 240 px box is already wider than 1.5 strides


@pytest.mark.parametrize("box", [[60.0, 57.0, 121.0, 64.0], [100.0, 100.0, 106.0, 103.0], [30.0, 20.0, 44.0, 90.0]])
def test_positive_cells_lie_inside_their_box(box: list[float]) -> None:
    """A sliver 7 px tall gets the cells of its own row only, a 6x3 px box the cell holding its centre;
    without the rule the rows above and below a thin box are positive too, centred outside it."""
    gt, owned, stride = torch.tensor([[box]]), torch.ones(1, 1, dtype=torch.bool), 8
    centres = DetectNetV2._cell_centres(stride, 32, 32, gt.device)
    x1, y1, x2, y2 = box
    for inside_rule in (True, False):
        model = create_model("detectnet_v2", pretrained=False, positive_radius=1.5, positives_inside_box=inside_rule)
        cells = centres[model._assign(stride, 32, 32, gt, owned)[0] == 0]
        outside = ~((cells[:, 0] > x1) & (cells[:, 0] < x2) & (cells[:, 1] > y1) & (cells[:, 1] < y2))
        off_centre = (cells - torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2])).abs().max(1).values > stride / 2
        assert len(cells) >= 1
        if inside_rule:
            assert not (outside & off_centre).any()
        else:
            assert (outside & off_centre).any() == (y2 - y1 < 2 * 1.5 * stride or x2 - x1 < 2 * 1.5 * stride)


def test_context_stride_32_feeds_the_last_backbone_stage_to_the_stride_8_head() -> None:
    torch.manual_seed(0)
    plain = create_model("detectnet_v2", pretrained=False).eval()
    context = create_model("detectnet_v2", pretrained=False, context_stride=32).eval()
    assert sorted(plain.lateral) == ["16", "8"] and sorted(context.lateral) == ["16", "32", "8"]
    images = torch.rand(2, 3, 96, 128)
    (stride, cov, box), = context.forward_levels(images)
    assert stride == 8 and cov.shape == (2, 1, 12, 16) and box.shape == (2, 4, 12, 16)
    head_inputs = []
    context.heads["8"].register_forward_pre_hook(lambda module, args: head_inputs.append(args[0]))
    with torch.no_grad():  # the stride-32 stage changes what the head sees
        context.lateral["32"][0].weight.zero_()
        context.forward_levels(images)
        context.lateral["32"][0].weight.normal_()
        context.forward_levels(images)
    assert not torch.allclose(*head_inputs)


def test_detector_learns_one_box() -> None:
    torch.manual_seed(0)
    model = create_model("detectnet_v2", pretrained=False, postprocessing={"score_threshold": 0.3})
    images = torch.rand(4, 3, 128, 128) * 0.5
    images[:, :, 40:90, 30:70] += 1.0
    targets = _targets([30.0, 40.0, 70.0, 90.0]) * 4
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    first = None
    for _ in range(60):
        losses = model(images, targets)
        loss = sum(losses.values())
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first
    with torch.no_grad():  # let BatchNorm's running statistics catch up with the trained weights
        for _ in range(40):
            model(images, targets)
    model.eval()
    with torch.no_grad():
        det = model(images)[0]
    assert len(det["boxes"]) >= 1
    from torchvision.ops import box_iou

    assert box_iou(det["boxes"][:1], targets[0]["boxes"]).item() > 0.5


def test_paired_iou_is_the_diagonal_of_box_iou() -> None:
    from torchvision.ops import box_iou

    from gesturekit.models.detector import paired_iou

    torch.manual_seed(0)
    a, b = torch.rand(6, 2) * 50, torch.rand(6, 2) * 50
    boxes_a, boxes_b = torch.cat([a, a + 10 + torch.rand(6, 2) * 40], 1), torch.cat([b, b + 10 + torch.rand(6, 2) * 40], 1)
    assert torch.allclose(paired_iou(boxes_a, boxes_b), box_iou(boxes_a, boxes_b).diagonal(), atol=1e-6)


def test_quality_focal_loss_pulls_the_score_to_its_soft_target() -> None:
    from gesturekit.models.detector import quality_focal_loss

    targets = torch.tensor([0.0, 0.3, 0.8, 1.0])
    logits = torch.zeros(4, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=5.0)
    for _ in range(300):
        opt.zero_grad()
        quality_focal_loss(logits, targets).sum().backward()
        opt.step()
    assert torch.allclose(logits.sigmoid()[1:3], targets[1:3], atol=0.02)  # a soft target, not 0 or 1
    assert logits.sigmoid()[0] < 0.1 and logits.sigmoid()[3] > 0.9


def test_quality_focal_coverage_target_is_the_box_fit() -> None:
    """Focal coverage loss is least when positive cells score 1; quality focal when each scores the
    IoU of its own box with the hand."""
    from gesturekit.models.detector import paired_iou

    torch.manual_seed(0)
    model = create_model("detectnet_v2", pretrained=False)
    images, targets = torch.rand(1, 3, 96, 96), _targets([20.0, 20.0, 60.0, 70.0])
    (stride, cov, box), = model.forward_levels(images)
    positive = model._assign(stride, *cov.shape[-2:], targets[0]["boxes"][None], torch.ones(1, 1, dtype=torch.bool))[0] >= 0
    fit = paired_iou(model._decode_level(stride, box)[0, positive, 0], targets[0]["boxes"].expand(int(positive.sum()), 4))
    assert 0.05 < fit.mean() < 0.9  # untrained boxes fit partly

    def coverage_loss(scores: torch.Tensor, kind: str) -> float:
        logits = torch.full_like(cov, -30.0).flatten()  # negatives: certain, no loss
        logits[positive] = torch.logit(scores.clamp(1e-4, 1 - 1e-4))
        model.coverage_loss = kind
        levels = [(stride, logits.view_as(cov), box)]
        return model.compute_loss(levels, targets)["loss_coverage"].item()

    for kind, best in (("focal", torch.ones_like(fit)), ("quality_focal", fit)):
        others = [torch.ones_like(fit), fit, fit * 0.5, (fit + 0.3).clamp(max=1.0)]
        losses = [coverage_loss(scores, kind) for scores in others]
        assert min(losses) == coverage_loss(best, kind), kind
    with pytest.raises(ValueError, match="coverage_loss"):
        create_model("detectnet_v2", pretrained=False, coverage_loss="dice")


def test_export_forward_shapes_follow_input() -> None:
    model = create_model("detectnet_v2", num_classes=2, pretrained=False, strides=[8, 16]).eval()
    boxes, scores = model.export_forward(torch.randn(2, 3, 64, 96))
    cells = 8 * 12 + 4 * 6
    assert boxes.shape == (2, cells, 4) and scores.shape == (2, cells, 2)


@pytest.mark.parametrize("clustering", ["nms", "dbscan"])
def test_postprocess_merges_overlapping_candidates(clustering: str) -> None:
    boxes = torch.tensor([[[10.0, 10, 50, 50], [12, 11, 51, 52], [100, 100, 140, 150], [0, 0, 5, 5]]])
    scores = torch.tensor([[[0.9], [0.8], [0.7], [0.01]]])
    out = postprocess(boxes, scores, score_threshold=0.05, clustering=clustering)[0]
    assert len(out["boxes"]) == 2
    assert out["scores"].tolist() == pytest.approx([0.9, 0.7])
    assert out["labels"].tolist() == [0, 0]


def test_classifier_contract() -> None:
    model = create_model("gesturenet", num_classes=4, pretrained=False)
    images = torch.randn(3, 3, 64, 64)
    model.train()
    losses = model(images, torch.tensor([0, 1, 3]))
    assert set(losses) == {"loss_cls"} and losses["loss_cls"].item() > 0
    model.eval()
    preds = model(images)
    assert len(preds) == 3 and preds[0]["scores"].shape == (4,)
    assert torch.allclose(preds[0]["scores"].sum(), torch.tensor(1.0))


def test_classifier_box_head_learns_only_from_its_class() -> None:
    model = create_model("gesturenet", num_classes=2, pretrained=False, box_class=0)
    images = torch.randn(3, 3, 64, 64)
    boxes = torch.tensor([[0.2, 0.2, 0.8, 0.8], [0.0, 0.0, 1.0, 1.0], [0.3, 0.1, 0.6, 0.9]])
    model.train()
    losses = model(images, {"label": torch.tensor([0, 1, 0]), "box": boxes})
    assert set(losses) == {"loss_cls", "loss_box"} and losses["loss_box"].item() > 0
    losses["loss_box"].backward()
    assert model.box_head.weight.grad.abs().sum() > 0
    model.zero_grad()
    background_only = model(images, {"label": torch.tensor([1, 1, 1]), "box": boxes})
    assert background_only["loss_box"].item() == 0  # no box of the box class: nothing to regress
    with pytest.raises(ValueError, match="box head"):
        model(images, torch.tensor([0, 1, 0]))
    model.eval()
    probs, predicted = model.export_forward(images)
    assert probs.shape == (3, 2) and predicted.shape == (3, 4)
    assert len(model(images)) == 3


def test_a_fine_tune_that_adds_a_backbone_stage_takes_imagenet_for_it_and_the_checkpoint_for_the_rest(
        tmp_path) -> None:
    """v1 -> v2 of the shipped detector: v2 adds the stride-32 stage to v1's graph; that stage starts from
    ImageNet, everything v1 had from v1 (what recipes/hand_detector_v2.yaml's init file held)."""
    from gesturekit.config.specs import DetectorModel
    from gesturekit.training.common import init_model

    v1 = create_model("detectnet_v2", pretrained=False)
    with torch.no_grad():
        for tensor in v1.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(0.5)  # weights no ImageNet file holds
    torch.save({"model": v1.state_dict()}, tmp_path / "v1.pt")
    spec = DetectorModel(pretrained_model_file=tmp_path / "v1.pt", context_stride=32)
    v2 = init_model(spec, {"context_stride": 32}, is_main=False).state_dict()
    imagenet = create_model("detectnet_v2", pretrained=True, context_stride=32).state_dict()
    own = v1.state_dict()
    added = [name for name in v2 if name.startswith("backbone.") and name not in own]
    assert added, "the stride-32 stage adds backbone tensors"
    assert all(torch.equal(v2[name], imagenet[name]) for name in added)
    kept = [name for name in own if own[name].shape == v2[name].shape]
    assert kept and all(torch.equal(v2[name], own[name]) for name in kept)
    without = init_model(spec.model_copy(update={"pretrained": False}), {"context_stride": 32}, is_main=False)
    assert not any(torch.equal(without.state_dict()[name], imagenet[name]) for name in added if
                   without.state_dict()[name].is_floating_point() and without.state_dict()[name].numel() > 1)
