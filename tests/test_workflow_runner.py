"""The workflow file's strict checks, the plan, and the runner's skip / rerun / resume rules on fast steps."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from gesturekit.config.base import load_spec
from gesturekit.config.specs import ClassifierSpec, DetectorSpec
from gesturekit.errors import GesturekitError
from gesturekit.workflow import runner
from gesturekit.workflow.config import DATA_VAR, load_workflow
from gesturekit.workflow.state import WorkflowState, content_digest
from gesturekit.workflow.steps import Step

REPO = Path(__file__).resolve().parents[1]


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _workflow(tmp_path: Path, **extra) -> dict:
    spec = _write(tmp_path / "det.yaml", {"dataset": {"train": ["${GESTUREKIT_WORKFLOW_OUT}/packs/p.gkpack"]}})
    return {"name": "t", "datasets": {"ego": {"format": "egohands-csv", "source": str(tmp_path)}},
            "packs": {"p": {"sources": ["ego"]}}, "detector": {"spec": str(spec)}, **extra}


def test_unknown_key_and_wrong_type_name_the_file_and_the_key(tmp_path: Path) -> None:
    bad = _workflow(tmp_path)
    bad["packs"]["p"]["max_szie"] = 3
    path = _write(tmp_path / "w.yaml", bad)
    with pytest.raises(GesturekitError, match=rf"^{path}: packs\.p\.max_szie: unknown key$"):
        load_workflow(path, tmp_path / "out")
    bad = _workflow(tmp_path)
    bad["detector"]["prune"] = {"threshold": "high"}
    _write(path, bad)
    with pytest.raises(GesturekitError, match=rf"{path}: detector\.prune\.threshold: "):
        load_workflow(path, tmp_path / "out")
    bad = _workflow(tmp_path)
    bad["datasets"]["ego"]["format"] = "coco"
    _write(path, bad)
    with pytest.raises(GesturekitError, match=rf"^{path}: datasets\.ego\.format: unknown format 'coco' \(known: "):
        load_workflow(path, tmp_path / "out")
    bad = _workflow(tmp_path)
    bad["detector"]["retrain"] = {}
    _write(path, bad)
    with pytest.raises(GesturekitError, match="retrain: needs a prune section"):
        load_workflow(path, tmp_path / "out")
    bad = _workflow(tmp_path)
    bad["detector"].update(finetune=[{"name": "v2"}, {"name": "v2"}])
    _write(path, bad)
    with pytest.raises(GesturekitError, match="finetune: the name 'v2' is taken"):
        load_workflow(path, tmp_path / "out")
    bad["detector"].update(finetune=[{"name": "v2"}], prune={"start": "v3"})
    _write(path, bad)
    with pytest.raises(GesturekitError, match=r"prune\.start: 'v3' is not train or a fine-tune \(v2\)"):
        load_workflow(path, tmp_path / "out")


def test_shipped_workflows_plan_every_stage_in_order(tmp_path: Path) -> None:
    quick = runner.plan_steps(REPO / "workflows" / "quickstart-cpu.yaml", tmp_path)
    stages = list(dict.fromkeys(s.stage for s in quick))
    assert stages == ["convert", "pack", "train", "finetune", "evaluate", "prune", "retrain", "qat", "export",
                      "evaluate_exports", "triton_repo", "cards", "report"]
    soup = next(s for s in quick if s.name == "finetune/detector-soup")
    assert soup.settings["spec"]["distillation"]["teacher_model_file"] == str(tmp_path / "train" / "detector" /
                                                                             "best.pt")
    averaged = tmp_path / "finetune" / "detector-soup-average" / "model.pt"
    assert next(s for s in quick if s.name == "prune/detector").inputs == [averaged]  # the chain's last model
    exported = [s.target for s in quick if s.stage == "export"]
    assert "detector-pruned-qat-int8" in exported and "classifier-int8" in exported
    qat = next(s for s in quick if s.name == "qat/detector")
    spec = qat.settings["spec"]
    assert spec["training"]["enable_qat"] and spec["model"]["load_graph"]
    assert spec["model"]["pretrained_model_file"] == str(tmp_path / "retrain" / "detector" / "best.pt")
    gpu = runner.plan_steps(REPO / "workflows" / "gesture-gpu.yaml", tmp_path)
    assert {s.stage for s in gpu} >= {"train", "prune", "retrain", "qat", "export", "cards", "report"}


def test_the_gpu_workflow_trains_each_recipe_as_written(tmp_path: Path) -> None:
    """Each training stage of gesture-gpu.yaml is its recipe with the recipe's data paths pointed at the
    workflow's packs and datasets (every repeat kept); only the wiring between stages differs."""
    steps = {s.name: s for s in runner.plan_steps(REPO / "workflows" / "gesture-gpu.yaml", tmp_path)}
    recipes = {"train/detector": "hand_detector.yaml", "train/classifier": "gesture_classifier.yaml",
               "finetune/detector-v2": "hand_detector_v2.yaml", "finetune/detector-v3": "hand_detector_v3.yaml",
               "finetune/detector-v4": "hand_detector_v4.yaml", "retrain/detector": "hand_detector_pruned.yaml",
               "qat/detector": "hand_detector_qat.yaml"}
    wired = {"model": ("pretrained_model_file", "load_graph"), "distillation": ("teacher_model_file",),
             "training": ("enable_qat",)}
    prefixes = {".pack/gpu/": f"{tmp_path}/packs/", ".pack/": f"{tmp_path}/packs/", "work/": f"{tmp_path}/data/"}

    def moved(path: str) -> str:
        prefix = next(p for p in prefixes if path.startswith(p))  # every recipe data path is one of these
        return prefixes[prefix] + path[len(prefix):]

    def entry(item: str | dict) -> str | dict:
        return moved(item) if isinstance(item, str) else {**item, "path": moved(item["path"])}

    written = {f"{tmp_path}/packs/{name}.gkpack" for name in yaml.safe_load(
        (REPO / "workflows" / "gesture-gpu.yaml").read_text())["packs"]}
    for name, recipe in recipes.items():
        spec_type = ClassifierSpec if "classifier" in name else DetectorSpec
        expected = load_spec(REPO / "recipes" / recipe, spec_type, check_files=False).model_dump(mode="json")
        got = copy.deepcopy(steps[name].settings["spec"])
        for section in ("dataset", "evaluation"):
            keys = ("train", "val") if section == "dataset" else ("datasets",)
            for key in keys:
                expected[section][key] = [entry(item) for item in expected[section][key]]
        for spec in (expected, got):
            for section, keys in wired.items():
                for key in keys:
                    if spec.get(section) is not None:
                        spec[section][key] = None
        assert got == expected, name
        packs = {item if isinstance(item, str) else item["path"] for item in got["dataset"]["train"]}
        assert packs <= written, f"{name} reads packs the workflow does not write: {packs - written}"
    # the wiring, as the recipes' comments say the shipped models were made
    model = {name: steps[name].settings["spec"]["model"]["pretrained_model_file"] for name in recipes}
    teacher = {name: (steps[name].settings["spec"].get("distillation") or {}).get("teacher_model_file")
               for name in recipes}
    v3, soup = f"{tmp_path}/finetune/detector-v3/last.pt", f"{tmp_path}/finetune/detector-v4-average/model.pt"
    assert model["finetune/detector-v2"] == f"{tmp_path}/train/detector/best.pt"
    v2 = f"{tmp_path}/finetune/detector-v2/last.pt"
    assert model["finetune/detector-v3"] == teacher["finetune/detector-v3"] == v2
    assert model["finetune/detector-v4"] == v3 and teacher["finetune/detector-v4"] is None
    assert steps["finetune/detector-v4-average"].inputs == [Path(f"{tmp_path}/finetune/detector-v4/last.pt"), Path(v3)]
    assert steps["prune/detector"].inputs == [Path(v3)] and teacher["retrain/detector"] == v3
    assert model["qat/detector"] == teacher["qat/detector"] == soup
    assert [s.target for s in steps.values() if s.stage == "export"] == [
        "detector-fp32", "detector-pruned-fp32", "detector-pruned-int8", "detector-qat-int8", "classifier-fp32",
        "classifier-int8"]


def _steps(out: Path, log: list[str], settings: dict) -> list[Step]:
    """convert writes a.txt from the input; train reads it and writes b.txt, different bytes on every run
    (as training does); report reads b.txt."""
    src = out.parent / "input.txt"

    def step(stage: str, inputs: list[Path], output: Path) -> Step:
        def run() -> None:
            log.append(stage)
            output.parent.mkdir(parents=True, exist_ok=True)
            run_mark = f" run {len(log)}" if stage == "train" else ""
            output.write_text("".join(p.read_text() for p in inputs) + stage + run_mark)

        return Step(stage, "x", settings.get(stage, {}), inputs, [output], run, output.parent,
                    resumable=stage == "train")

    return [step("convert", [src], out / "convert" / "a.txt"), step("train", [out / "convert" / "a.txt"],
                                                                       out / "train" / "b.txt"),
            step("report", [out / "train" / "b.txt"], out / "report" / "c.txt")]


def _run(monkeypatch, tmp_path: Path, settings: dict | None = None, **kwargs) -> tuple[list[str], list[str]]:
    log: list[str] = []
    out = tmp_path / "out"
    monkeypatch.setenv(DATA_VAR, str(tmp_path / "data"))
    monkeypatch.setattr(runner, "plan_steps", lambda wf, o: _steps(out, log, settings or {}))
    outcomes = runner.run_workflow(tmp_path / "w.yaml", out, console=Console(file=open("/dev/null", "w")), **kwargs)
    return log, [o.action for o in outcomes]


def test_rerun_skips_unchanged_steps_and_reruns_what_follows_a_change(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "input.txt").write_text("v1")
    assert _run(monkeypatch, tmp_path) == (["convert", "train", "report"], ["ran"] * 3)
    assert _run(monkeypatch, tmp_path) == ([], ["skipped"] * 3)
    assert _run(monkeypatch, tmp_path, {"train": {"epochs": 2}})[0] == ["train", "report"]  # settings changed
    (tmp_path / "input.txt").write_text("v2")  # an input's content changed
    assert _run(monkeypatch, tmp_path, {"train": {"epochs": 2}})[0] == ["convert", "train", "report"]
    (tmp_path / "out" / "train" / "b.txt").unlink()  # an output is missing
    assert _run(monkeypatch, tmp_path, {"train": {"epochs": 2}})[0] == ["train", "report"]
    assert _run(monkeypatch, tmp_path, {"train": {"epochs": 2}}, from_stage="train")[0] == ["train", "report"]
    assert _run(monkeypatch, tmp_path, {"train": {"epochs": 2}}, only="convert") == (["convert"], ["ran"])
    # convert ran again and wrote the same bytes: what reads them is still done
    assert _run(monkeypatch, tmp_path, {"train": {"epochs": 2}}) == ([], ["skipped"] * 3)
    with pytest.raises(GesturekitError, match="--only trian: unknown stage"):
        _run(monkeypatch, tmp_path, only="trian")


def test_an_interrupted_step_resumes_in_its_folder_and_a_changed_one_starts_clean(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    (tmp_path / "input.txt").write_text("v1")
    _run(monkeypatch, tmp_path)
    out = tmp_path / "out"
    state = WorkflowState(out)
    key = state.record("train/x")["key"]
    state.start("train/x", key)  # as if killed mid-step
    (out / "train" / "partial.pt").write_text("epoch 1")
    log, actions = _run(monkeypatch, tmp_path)
    assert log == ["train", "report"] and actions == ["skipped", "resumed", "ran"]
    assert (out / "train" / "partial.pt").is_file()  # resumed: its checkpoint kept
    state = WorkflowState(out)
    state.start("train/x", key)  # killed again; forcing the stage resumes it too
    assert _run(monkeypatch, tmp_path, only="train") == (["train"], ["resumed"])
    assert (out / "train" / "partial.pt").is_file()
    assert _run(monkeypatch, tmp_path, only="train") == (["train"], ["ran"])  # finished: forcing redoes it
    assert not (out / "train" / "partial.pt").exists()
    state = WorkflowState(out)
    state.start("train/x", "another key")  # killed, but with other settings: starts over
    _run(monkeypatch, tmp_path)
    assert not (out / "train" / "partial.pt").exists()


def test_a_moved_output_folder_and_data_folder_keep_every_step_done(tmp_path: Path, monkeypatch) -> None:
    """Keys name paths from the output and data roots: settings and inputs that name files there stay equal
    when both folders move (as when a run is carried to another machine)."""
    (tmp_path / "input.txt").write_text("v1")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "frames.txt").write_text("frames")
    out = tmp_path / "out"
    settings = {"train": {"pack": str(out / "convert" / "a.txt"), "data": str(tmp_path / "data" / "frames.txt"),
                          "other": f"{tmp_path}/data2/x"}}
    assert _run(monkeypatch, tmp_path, settings)[0] == ["convert", "train", "report"]
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for name in ("input.txt", "data", "out"):
        shutil.move(tmp_path / name, moved / name)
    settings = {"train": {"pack": str(moved / "out" / "convert" / "a.txt"),
                          "data": str(moved / "data" / "frames.txt"), "other": f"{tmp_path}/data2/x"}}
    # convert's input sits outside both roots: named as written, it moved, so convert runs again; it writes the
    # same bytes, so the training after it (whose settings and inputs name files under the roots) stays done
    assert _run(monkeypatch, moved, settings) == (["convert"], ["ran", "skipped", "skipped"])
    assert _run(monkeypatch, moved, settings) == ([], ["skipped"] * 3)
    state = WorkflowState(moved / "out")
    assert state.record("train/x")["outputs"] == ["train/b.txt"]
    settings["train"]["other"] = f"{moved}/data2/x"  # a path outside both roots is compared as written
    assert _run(monkeypatch, moved, settings)[0] == ["train", "report"]


def _mini_egohands(data_root: Path, dest: Path, per_split: int = 3) -> None:
    """The first ``per_split`` images of each EgoHands split with their boxes."""
    (dest / "images").mkdir(parents=True)
    for split in ("train", "test"):
        header, *rows = (data_root / "egohands" / f"{split}_labels.csv").read_text().splitlines()
        names = list(dict.fromkeys(r.split(",")[0] for r in rows))[:per_split]
        kept = [r for r in rows if r.split(",")[0] in names]
        (dest / f"{split}_labels.csv").write_text("\n".join([header, *kept]) + "\n")
        for name in names:
            shutil.copyfile(data_root / "egohands" / "images" / name, dest / "images" / name)


def test_real_convert_and_pack_redone_elsewhere_leave_the_training_key_unchanged(tmp_path: Path, data_root: Path,
                                                                                 monkeypatch) -> None:
    """What lets a run carried to another machine skip its finished training: conversion and packing write
    the same bytes there, and the training step's key does not name where the output and the data sit."""
    spec = _write(tmp_path / "det.yaml", {"dataset": {"train": ["${GESTUREKIT_WORKFLOW_OUT}/packs/p.gkpack"]}})
    workflow = _write(tmp_path / "w.yaml", {
        "name": "t", "datasets": {"ego": {"format": "egohands-csv", "source": "${GESTUREKIT_DATA}/egohands",
                                          "split": "keep"}},
        "packs": {"p": {"sources": ["ego"], "splits": ["train"], "max_size": 128}}, "detector": {"spec": str(spec)}})
    _mini_egohands(data_root, tmp_path / "a" / "data" / "egohands")
    shutil.copytree(tmp_path / "a" / "data", tmp_path / "b" / "data")
    keys = []
    for place in ("a", "b"):
        monkeypatch.setenv(DATA_VAR, str(tmp_path / place / "data"))
        out = tmp_path / place / "out"
        for stage in ("convert", "pack"):
            runner.run_workflow(workflow, out, only=stage, console=Console(file=open("/dev/null", "w")))
        state = WorkflowState(out)
        steps = runner.plan_steps(workflow, out)
        keys.append({s.name: runner.stage_status(s, state, runner.step_keys(out))[0] for s in steps})
    packs = [(tmp_path / place / "out" / "packs" / "p.gkpack").read_bytes() for place in ("a", "b")]
    assert packs[0] == packs[1]
    assert keys[0]["train/detector"] == keys[1]["train/detector"] and keys[0] == keys[1]


def test_content_digest_follows_bytes_not_times(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "x.txt").write_text("a")
    before = content_digest(folder)
    (folder / "sub" / "x.txt").write_text("a")
    assert content_digest(folder) == before
    (folder / "sub" / "x.txt").write_text("b")
    assert content_digest(folder) != before and content_digest(tmp_path / "none") == "missing"
