"""The workflow's steps, in order: each names its stage, its settings, the files it reads and writes,
and runs the library function of the verb it stands for (``data convert``, ``data pack``, ``train``,
``evaluate``, ``prune``, ``export``, ``models card``).

Output folder layout: ``data/<dataset>``, ``packs/<pack>.gkpack`` (+ ``.json`` summary),
``<stage>/<model>`` for training runs and evaluations, ``models/<variant>/`` for every exported model
(``model.onnx``, ``spec.yaml``, ``train_summary.json``, ``eval.json``, ``throughput.json``),
``cards/``, ``report.html`` and ``report.md``.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gesturekit.config.base import apply_overrides, read_yaml, validate_spec
from gesturekit.config.specs import ClassifierSpec, DetectorSpec
from gesturekit.errors import GesturekitError
from gesturekit.evaluation.cards import PACKS
from gesturekit.io import atomic_write_json, atomic_write_text
from gesturekit.models.zoo import EVAL, ONNX, SPEC, SUMMARY, read_model_json
from gesturekit.workflow.config import (ClassifierStages, DetectorStages, Export, Finetune, Keep, Workflow,
                                       remap_spec_data)

STAGES = ("convert", "pack", "train", "finetune", "evaluate", "prune", "retrain", "qat", "export",
          "evaluate_exports", "triton_repo", "cards", "report")
"""Every stage, in the order a workflow runs them."""
TRAINING_STAGES = ("train", "finetune", "retrain", "qat")



@dataclass
class Step:
    """One unit of work: ``stage/target``. ``resumable``: a killed run continues in ``workdir`` (training
    resumes from its checkpoint) instead of starting over."""

    stage: str
    target: str
    settings: dict[str, Any]
    inputs: list[Path]
    outputs: list[Path]
    run: Callable[[], None] = field(repr=False)
    workdir: Path | None = None
    resumable: bool = False

    @property
    def name(self) -> str:
        return f"{self.stage}/{self.target}"


@dataclass(frozen=True)
class ChainModel:
    """A model of the detector chain: the checkpoint it leaves and the training run behind it."""

    checkpoint: Path
    training_run: Path
    pruned: bool = False


@dataclass(frozen=True)
class Variant:
    """An exported model of the workflow: ``models/<name>/model.onnx`` from ``checkpoint``."""

    name: str
    task: str
    checkpoint: Path
    precision: str
    spec: Path
    overrides: tuple[str, ...]
    training_run: Path
    export: Export
    qat: bool = False


def _class_map_text(mapping: dict[str, str]) -> str | None:
    return ",".join(f"{k}={v}" for k, v in mapping.items()) or None


def _limit_splits(root: Path, limit: dict[str, int], seed: int) -> None:
    """Keep a seeded sample of at most ``limit[split]`` images in each named split file."""
    for split, count in limit.items():
        path = root / "splits" / f"{split}.txt"
        if not path.is_file():
            raise GesturekitError(f"{root}: no split {split!r} to limit")
        names = path.read_text().split()
        keep = sorted(random.Random(f"{seed}:{split}").sample(names, min(count, len(names))))
        atomic_write_text(path, "".join(f"{n}\n" for n in keep))


class Planner:
    """Builds the steps of a workflow for the output folder ``out``."""

    def __init__(self, workflow: Workflow, out: Path) -> None:
        self.wf = workflow
        self.out = out
        self.steps: list[Step] = []
        self.variants: list[Variant] = []
        self._optimized: list[tuple[Path, str, Path, bool]] = []
        """(checkpoint, variant suffix, training run, trained with QAT) of each optimized detector."""
        self.chain: dict[str, ChainModel] = {}
        """The detector chain's models by name (``train``, each fine-tune's, ``pruned``), in order."""
        self.final: dict[str, ChainModel] = {}
        """Each model's last unpruned checkpoint (the detector: the chain's last fine-tune, else ``train``)."""

    # ------------------------------------------------------------------ paths
    def dataset_dir(self, name: str) -> Path:
        return self.out / "data" / name

    def pack_file(self, name: str) -> Path:
        return self.out / "packs" / f"{name}.gkpack"

    def _source(self, ref: str) -> Path:
        """A dataset or pack of this workflow by name, else a path."""
        if ref in self.wf.datasets:
            return self.dataset_dir(ref)
        if ref in self.wf.packs:
            return self.pack_file(ref)
        return Path(ref)

    def model_dir(self, variant: str) -> Path:
        return self.out / "models" / variant

    # ------------------------------------------------------------------ plan
    def plan(self) -> list[Step]:
        for name, conv in self.wf.datasets.items():
            self._convert(name, conv)
        for name, packing in self.wf.packs.items():
            self._pack(name, packing)
        models: list[tuple[str, DetectorStages | ClassifierStages]] = [
            (m, s) for m, s in (("detector", self.wf.detector), ("classifier", self.wf.classifier)) if s is not None]
        for model, stages in models:
            ckpt = self._train(model, "train", stages.spec, stages.overrides, [], stages.keep)
            self.final[model] = ChainModel(ckpt, self.run_dir("train", model))
        if self.wf.detector is not None:
            self.chain["train"] = self.final["detector"]
            for finetune in self.wf.detector.finetune:
                self._finetune(self.wf.detector, finetune)
        for model, stages in models:
            self._evaluate(model, stages)
        if self.wf.detector is not None:
            self._optimize(self.wf.detector)
        for model, stages in models:
            self._add_variants(model, stages)
        for variant in self.variants:
            self._export(variant)
        for variant in self.variants:
            self._evaluate_export(variant)
        if self.wf.triton_repo is not None:
            self._triton_repo(self.wf.triton_repo)
        self._cards()
        self._report()
        return self.steps

    def _add(self, step: Step) -> Step:
        self.steps.append(step)
        return step

    # ------------------------------------------------------------------ data
    def _convert(self, name: str, conv: Any) -> None:
        from gesturekit.data.classmap import build_class_map
        from gesturekit.data.convert import convert

        out = self.dataset_dir(name)

        def run() -> None:
            cmap = build_class_map(conv.class_map_preset, _class_map_text(conv.class_map))
            convert(conv.format, conv.source, out, split=conv.split, val_fraction=conv.val_fraction, seed=conv.seed,
                    class_map=cmap, overwrite=True)
            _limit_splits(out, conv.limit, conv.seed)

        self._add(Step("convert", name, conv.model_dump(mode="json"), [conv.source], [out / "splits"], run, out))

    def _pack(self, name: str, packing: Any) -> None:
        from gesturekit.data.classmap import build_class_map
        from gesturekit.data.pack_inputs import build_pack

        out = self.pack_file(name)
        sources = [self._source(s) for s in packing.sources]

        def run() -> None:
            cmap = build_class_map(packing.class_map_preset, _class_map_text(packing.class_map))
            summary = build_pack(sources, out, packing.kind, "auto", packing.max_size, packing.quality,
                                 packing.splits, cmap, packing.holdout, packing.seed, packing.max_per_class,
                                 packing.context, folders=packing.folders)
            atomic_write_json(out.with_suffix(".json"), {**asdict(summary), "path": str(summary.path)})

        self._add(Step("pack", name, packing.model_dump(mode="json"), sources, [out, out.with_suffix(".json")], run))

    # ------------------------------------------------------------------ training
    def _spec_type(self, model: str) -> type[DetectorSpec] | type[ClassifierSpec]:
        return DetectorSpec if model == "detector" else ClassifierSpec

    def _resolved(self, model: str, spec: Path, overrides: list[str],
                  check_files: bool = False) -> DetectorSpec | ClassifierSpec:
        """The spec with overrides and its data paths mapped by the workflow's ``paths``; paths unchecked unless
        ``check_files`` (when planning, the files it names may be written by earlier steps)."""
        data = remap_spec_data(apply_overrides(read_yaml(spec), overrides), self.wf.paths)
        return validate_spec(data, self._spec_type(model), str(spec), check_files)

    def run_dir(self, stage: str, model: str) -> Path:
        return self.out / stage / model

    def checkpoint(self, stage: str, target: str, spec: DetectorSpec | ClassifierSpec, keep: Keep = "best") -> Path:
        """The run's model to carry on from: ``best.pt`` when asked for and the spec validates, else ``last.pt``."""
        return self.run_dir(stage, target) / ("best.pt" if keep == "best" and spec.dataset.val else "last.pt")

    def _spec_inputs(self, spec: DetectorSpec | ClassifierSpec) -> list[Path]:
        """The files a spec reads: its data, initial weights and teacher (not evaluation data)."""
        data = spec.dataset
        paths = [s if isinstance(s, Path) else s.path for s in [*data.train, *data.val]]
        if spec.model.pretrained_model_file is not None:
            paths.append(spec.model.pretrained_model_file)
        distillation = getattr(spec, "distillation", None)
        if distillation is not None:
            paths.append(distillation.teacher_model_file)
        return list(dict.fromkeys(Path(p) for p in paths))

    def _train(self, model: str, stage: str, spec_path: Path, overrides: list[str], wiring: list[str],
               keep: Keep = "best", target: str | None = None) -> Path:
        """A training step of ``model`` (its run: ``OUT/<stage>/<target>``); returns the checkpoint it leaves."""
        all_overrides = [*overrides, *wiring]
        spec = self._resolved(model, spec_path, all_overrides)
        target = target or model
        run_dir = self.run_dir(stage, target)
        ckpt = self.checkpoint(stage, target, spec, keep)
        device = self.wf.device

        def run() -> None:
            checked = self._resolved(model, spec_path, all_overrides, check_files=True)
            if model == "detector":
                from gesturekit.training.detector import train_detector

                train_detector(checked, run_dir, device)
            else:
                from gesturekit.training.classifier import train_classifier

                train_classifier(checked, run_dir, device)

        self._add(Step(stage, target, {"spec": spec.model_dump(mode="json"), "device": device, "keep": keep},
                       self._spec_inputs(spec), [ckpt, run_dir / SUMMARY, run_dir / SPEC], run, run_dir,
                       resumable=True))
        return ckpt

    def _finetune(self, det: DetectorStages, finetune: Finetune) -> None:
        """Fine-tune the chain's last model (its teacher with ``distillation_weight``), then average the two
        when asked; the result is the chain's last model from then on."""
        start = self.final["detector"]
        target = f"detector-{finetune.name}"
        ckpt = self._train("detector", "finetune", finetune.spec or det.spec, [*det.overrides, *finetune.overrides],
                           [f"model.pretrained_model_file={start.checkpoint}",
                            *_teacher(start.checkpoint, finetune.distillation_weight)], finetune.keep, target)
        run_dir = self.run_dir("finetune", target)
        if finetune.average is not None:
            ckpt = self._average(f"{target}-average", [ckpt, start.checkpoint],
                                 [finetune.average, 1.0 - finetune.average])
        self.final["detector"] = self.chain[finetune.name] = ChainModel(ckpt, run_dir)

    def _average(self, target: str, checkpoints: list[Path], weights: list[float]) -> Path:
        """``gesturekit models average``: the weight average of ``checkpoints`` (a model soup)."""
        out = self.run_dir("finetune", target) / "model.pt"

        def run() -> None:
            from gesturekit.engine.checkpoint import save_checkpoint
            from gesturekit.optimize.average import average_checkpoints

            save_checkpoint(out, average_checkpoints(checkpoints, weights))

        self._add(Step("finetune", target, {"weights": weights}, checkpoints, [out], run, out.parent))
        return out

    def _evaluate(self, model: str, stages: DetectorStages | ClassifierStages) -> None:
        spec = self._resolved(model, stages.spec, stages.overrides)
        ckpt = self.final[model].checkpoint
        out = self.run_dir("evaluate", model)
        self._add(Step("evaluate", model, {"evaluation": spec.evaluation.model_dump(mode="json")},
                       [ckpt, *spec.evaluation.datasets], [out / EVAL],
                       lambda: evaluate_model(ckpt, "torch", spec, out), out))

    def _optimize(self, det: DetectorStages) -> None:
        """Prune -> retrain -> qat, each optional; records the models they leave for export."""
        last = self.final["detector"]
        if det.prune is not None:
            start = self.chain[det.prune.start] if det.prune.start else last
            last = ChainModel(self._prune(det, start.checkpoint), start.training_run, pruned=True)
            if det.prune.target_drop is not None and det.retrain is None:  # the search retrained it briefly
                self._optimized.append((last.checkpoint, "pruned", last.training_run, False))
            if det.retrain is not None:
                ckpt = self._train("detector", "retrain", det.retrain.spec or det.spec,
                                   [*det.overrides, *det.retrain.overrides],
                                   ["model.load_graph=true", f"model.pretrained_model_file={last.checkpoint}",
                                    *_teacher(start.checkpoint, det.retrain.distillation_weight)], det.retrain.keep)
                last = self.chain["pruned"] = ChainModel(ckpt, self.run_dir("retrain", "detector"), pruned=True)
                self._optimized.append((ckpt, "pruned", last.training_run, False))
        if det.qat is not None:
            start = self.chain[det.qat.start] if det.qat.start else last
            graph = ["model.load_graph=true"] if start.pruned else []
            ckpt = self._train("detector", "qat", det.qat.spec or det.spec, [*det.overrides, *det.qat.overrides],
                               [*graph, f"model.pretrained_model_file={start.checkpoint}", "training.enable_qat=true",
                                *_teacher(start.checkpoint, det.qat.distillation_weight)], det.qat.keep)
            name = "pruned-qat" if start.pruned else "qat"
            self._optimized.append((ckpt, name, self.run_dir("qat", "detector"), True))

    def _prune(self, det: DetectorStages, trained: Path) -> Path:
        prune = det.prune
        assert prune is not None
        out_dir = self.run_dir("prune", "detector")
        pruned = out_dir / "pruned.pt"
        spec_path, overrides, device = det.spec, det.overrides, self.wf.device

        def run() -> None:
            from gesturekit.optimize.prune import ChannelSelection

            selection = ChannelSelection(prune.equalization, prune.criterion)
            if prune.target_drop is None:
                prune_fixed(trained, pruned, prune.threshold, selection)
                return
            from gesturekit.evaluation.spec_metric import spec_metric
            from gesturekit.training.search import save_chosen, search_threshold

            spec = self._resolved("detector", spec_path, overrides, check_files=True)
            assert isinstance(spec, DetectorSpec)
            result = search_threshold(trained, spec, spec_metric(spec), prune.target_drop, work_dir=out_dir / "search",
                                      thresholds=prune.thresholds, retrain_epochs=prune.retrain_epochs,
                                      selection=selection, device=device)
            save_chosen(result, pruned)

        settings = prune.model_dump(mode="json")
        if prune.target_drop is not None:  # the search retrains with the spec
            settings["spec"] = self._resolved("detector", spec_path, overrides).model_dump(mode="json")
        self._add(Step("prune", "detector", settings, [trained], [pruned], run, out_dir,
                       resumable=prune.target_drop is not None))
        return pruned

    # ------------------------------------------------------------------ export and evaluation
    def _add_variants(self, model: str, stages: DetectorStages | ClassifierStages) -> None:
        final = self.final[model]
        for precision in stages.export.precisions:
            self.variants.append(Variant(f"{model}-{precision}", model, final.checkpoint, precision, stages.spec,
                                         tuple(stages.overrides), final.training_run, stages.export))
        if model != "detector" or not isinstance(stages, DetectorStages):
            return
        for checkpoint, suffix, run_dir, qat in self._optimized:
            for precision in ["int8"] if qat else stages.optimized_export.precisions:
                self.variants.append(Variant(f"{model}-{suffix}-{precision}", model, checkpoint, precision,
                                             stages.spec, tuple(stages.overrides), run_dir, stages.optimized_export,
                                             qat))

    def _export(self, v: Variant) -> None:
        out = self.model_dir(v.name)
        calibration = [self._source(s) for s in v.export.calibration]
        needs_calibration = v.precision == "int8" and not v.qat
        if needs_calibration and not calibration:
            raise GesturekitError(f"{v.name}: int8 export needs {v.task}.export.calibration (datasets to calibrate on)")
        calib_inputs = calibration if needs_calibration else []
        summaries = self._pack_summaries(v)
        spec = self._resolved(v.task, v.spec, list(v.overrides))
        # parity on real frames (a detector's evaluation images) where no calibration images are read
        parity = (spec.evaluation.datasets[0] / "images"
                  if v.task == "detector" and spec.evaluation.datasets and not calib_inputs else None)

        def run() -> None:
            from gesturekit.export.job import run_export

            run_export(str(v.checkpoint), out / ONNX, v.precision,
                       calibration_images=calib_inputs or None, calibration_split=v.export.calibration_split,
                       num_calibration=v.export.num_calibration, calibration_cache=out / "model.calib.json",
                       images=parity, engine=v.export.engine)
            for name in (SPEC, SUMMARY):
                shutil.copyfile(v.training_run / name, out / name)
            atomic_write_json(out / PACKS, {str(p): read_model_json(p.with_suffix(".json")) for p in summaries})

        settings = {"precision": v.precision, "export": v.export.model_dump(mode="json")}
        self._add(Step("export", v.name, settings, [v.checkpoint, *calib_inputs, *summaries],
                       [out / ONNX, out / SPEC], run, out))

    def _pack_summaries(self, v: Variant) -> list[Path]:
        """The workflow's packs that trained ``v`` (their summaries give the card's image and box counts)."""
        spec = self._resolved(v.task, v.spec, list(v.overrides))
        used = {Path(s if isinstance(s, Path) else s.path) for s in spec.dataset.train}
        return [self.pack_file(n) for n in self.wf.packs if self.pack_file(n) in used]

    def _evaluate_export(self, v: Variant) -> None:
        spec = self._resolved(v.task, v.spec, list(v.overrides))
        model_file = self.model_dir(v.name) / ONNX
        out = self.model_dir(v.name)
        self._add(Step("evaluate_exports", v.name, {"evaluation": spec.evaluation.model_dump(mode="json")},
                       [model_file, *spec.evaluation.datasets], [out / EVAL],
                       lambda: evaluate_model(model_file, "onnxruntime", spec, out)))

    def _triton_repo(self, cfg: Any) -> None:
        """The exported detector and classifier as a Triton model repository (``gesturekit serve`` runs it)."""
        def pick(task: str, wanted: str | None) -> Path | None:
            names = [v.name for v in self.variants if v.task == task]
            if wanted is not None and wanted not in names:
                raise GesturekitError(f"triton_repo.{task}: {wanted!r} is not an exported {task} "
                                      f"({', '.join(names) or 'none'})")
            name = wanted or (names[-1] if names else None)
            return self.model_dir(name) / ONNX if name else None

        detector, classifier = pick("detector", cfg.detector), pick("classifier", cfg.classifier)
        if detector is None:
            raise GesturekitError("triton_repo: the workflow exports no detector to serve")
        out = self.out / "triton_repo"

        def run() -> None:
            from gesturekit.export.triton import RepositoryOptions, write_repository

            write_repository(out, detector, classifier, options=RepositoryOptions(
                max_batch_size=cfg.max_batch_size, device=cfg.device, model_backend=cfg.model_backend))

        inputs = [p for p in (detector, classifier) if p is not None]
        self._add(Step("triton_repo", "all", cfg.model_dump(mode="json"), inputs, [out / "gesture_cascade"], run,
                       out))

    def _cards(self) -> None:
        from gesturekit.workflow.cards import write_cards

        dirs = [self.model_dir(v.name) for v in self.variants]
        cards = self.out / "cards"
        outputs = [cards / f"{v.name}.card.{ext}" for v in self.variants for ext in ("md", "json")]
        throughput = self.wf.throughput
        self._add(Step("cards", "all", throughput.model_dump(mode="json"),
                       [d / f for d in dirs for f in (EVAL, ONNX)], outputs,
                       lambda: write_cards(dirs, cards, throughput), cards))

    def _report(self) -> None:
        from gesturekit.workflow.report import write_report

        out, wf = self.out, self.wf
        names = [v.name for v in self.variants]
        inputs = [self.out / "cards"]
        inputs += [p for s in self.steps if s.stage in ("evaluate", *TRAINING_STAGES) for p in s.outputs]
        if any(s.stage == "prune" for s in self.steps):
            inputs.append(self.run_dir("prune", "detector"))
        self._add(Step("report", "all", {"name": wf.name, "models": names}, inputs,
                       [out / "report.html", out / "report.md"], lambda: write_report(out, wf.name, names)))


def _teacher(checkpoint: Path, weight: float | None) -> list[str]:
    """The override that makes ``checkpoint`` a training run's distillation teacher (none without a weight)."""
    return [f"distillation={{teacher_model_file: {checkpoint}, weight: {weight}}}"] if weight else []


def prune_fixed(checkpoint: Path, out: Path, threshold: float, selection: Any) -> None:
    """``gesturekit prune -pth``: prune ``checkpoint`` at ``threshold``; report beside ``out``."""
    import torch

    from gesturekit.engine.checkpoint import load_checkpoint
    from gesturekit.optimize.prune import prune_model, save_pruned_checkpoint
    from gesturekit.optimize.restore import model_from_state

    state = load_checkpoint(checkpoint)
    net = model_from_state(state, str(checkpoint))
    size = int(net.metadata["input_size"])
    result = prune_model(net, torch.zeros(1, 3, size, size), threshold, selection)
    result.save(out.with_suffix(".prune.json"))
    save_pruned_checkpoint(out, net, result, spec=state.get("spec"))


def evaluate_model(model: Path, backend: str, spec: DetectorSpec | ClassifierSpec, out: Path) -> None:
    """``gesturekit evaluate``: the spec's evaluation of ``model``, per-set JSON and plots in ``out`` and
    all sets in ``out/eval.json`` (the layout of a zoo model's ``eval.json``)."""
    cfg = spec.evaluation
    if isinstance(spec, DetectorSpec):
        from gesturekit.evaluation.detection import evaluate_detector_on
        from gesturekit.runtime.loading import load_detector

        detector = load_detector(model, backend, score_threshold=spec.postprocessing.coverage_threshold)  # type: ignore[arg-type]
        results = evaluate_detector_on(detector, cfg.datasets, cfg.split, spec.dataset.class_map, cfg.minimum_width,
                                       cfg.minimum_height, cfg.kitti_iou_threshold, out)
        task = "detection"
    else:
        from gesturekit.evaluation.classification import evaluate_classifier_on
        from gesturekit.runtime.loading import load_classifier

        classifier = load_classifier(model, backend)  # type: ignore[arg-type]
        results = evaluate_classifier_on(classifier, cfg.datasets, cfg.split, spec.dataset.class_map, out)
        task = "classification"
    atomic_write_json(out / EVAL, {"task": task, "split": cfg.split, "model": str(model), "backend": backend,
                                        "datasets": results})
