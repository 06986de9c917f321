"""``gesturekit evaluate detector|classifier``: metrics of a trained or exported model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from gesturekit.config.base import load_spec
from gesturekit.config.specs import ClassifierSpec, DetectorSpec

app = typer.Typer(help="Evaluate a model (checkpoint, ONNX file or zoo name) on the spec's evaluation data.",
                  no_args_is_help=True)

SpecOption = Annotated[Path, typer.Option("--spec", "-e", help="YAML spec; its evaluation section is used.")]
ModelOption = Annotated[str, typer.Option("--model", "-m", help="Checkpoint (.pt), ONNX file or zoo name.")]
OutOption = Annotated[Optional[Path], typer.Option("--out", "-o", help="Directory for JSON results and plots.")]
DatasetOption = Annotated[Optional[list[Path]], typer.Option("--dataset", "-d", help="Overrides evaluation.datasets.")]
SplitOption = Annotated[Optional[str], typer.Option(help="Overrides evaluation.split.")]


@app.command()
def detector(spec: SpecOption, model: ModelOption, out: OutOption = None, dataset: DatasetOption = None,
             split: SplitOption = None, backend: Annotated[Optional[str], typer.Option(
                 help="onnxruntime or torch (default: torch for .pt)")] = None,
             verifier: Annotated[Optional[str], typer.Option(
                 help="A hand verifier (zoo name or model file) as the detector's second stage; every "
                 "candidate it rescores is kept, however low its new score.", show_default=False)] = None,
             candidate_threshold: Annotated[float, typer.Option(
                 min=0.0, max=1.0, help="With --verifier: the lowest detector score it rescores.")] = 0.1,
             verifier_weight: Annotated[float, typer.Option(
                 min=0.0, max=1.0, help="With --verifier: its share of a rescored score, "
                 "detector^(1-w) * p_hand^w (the app's primary.verifier_weight).")] = 0.3,
             refine_boxes: Annotated[str, typer.Option(
                 help="With --verifier: the boxes its box head moves (doubtful: those it rescores; small: "
                 "every candidate its crop shows sharper than the detector's input, confident ones too; all: "
                 "every candidate; none).")] = "doubtful") -> None:
    """AP@0.5 (VOC), AP@0.5:0.95 (COCO) and KITTI AP at evaluation.kitti_iou_threshold, per dataset."""
    from gesturekit.evaluation.detection import evaluate_detector_on
    from gesturekit.runtime.loading import backend_for, load_detector

    cfg = load_spec(spec, DetectorSpec, check_files=False)  # a zoo spec names training inputs
    detector_ = load_detector(model, backend_for(model, backend),
                              score_threshold=0.0 if verifier else cfg.postprocessing.coverage_threshold,
                              verifier=verifier, candidate_threshold=candidate_threshold,
                              verifier_weight=verifier_weight, refine_boxes=refine_boxes)  # type: ignore[arg-type]
    results = evaluate_detector_on(detector_, dataset or cfg.evaluation.datasets, split or cfg.evaluation.split,
                                   cfg.dataset.class_map, cfg.evaluation.minimum_width,
                                   cfg.evaluation.minimum_height, cfg.evaluation.kitti_iou_threshold, out)
    for name, r in results.items():
        typer.echo(f"{name}: AP@0.5 {r['ap50']:.4f}  AP@0.5:0.95 {r['ap50_95']:.4f}  KITTI AP {r['kitti_ap']:.4f}")
    if out is None:
        typer.echo(json.dumps(results, indent=2))


@app.command()
def classifier(spec: SpecOption, model: ModelOption, out: OutOption = None, dataset: DatasetOption = None,
               split: SplitOption = None, backend: Annotated[Optional[str], typer.Option(
                   help="onnxruntime or torch (default: torch for .pt)")] = None) -> None:
    """Per-class precision/recall/F1, macro-F1 and confusion matrix (JSON + PNG), per dataset."""
    from gesturekit.evaluation.classification import evaluate_classifier_on
    from gesturekit.runtime.loading import backend_for, load_classifier

    cfg = load_spec(spec, ClassifierSpec, check_files=False)
    classifier_ = load_classifier(model, backend_for(model, backend))
    results = evaluate_classifier_on(classifier_, dataset or cfg.evaluation.datasets, split or cfg.evaluation.split,
                                     cfg.dataset.class_map, out)
    for name, r in results.items():
        typer.echo(f"{name}: macro-F1 {r['macro_f1']:.4f}  accuracy {r['accuracy']:.4f}  ({r['num_samples']} crops)")
    if out is None:
        typer.echo(json.dumps(results, indent=2))
