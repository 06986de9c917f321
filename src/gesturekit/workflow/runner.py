"""Run a workflow's steps in order, skipping those already done with the same settings and inputs.

A step runs when it never finished, when its settings or the contents of its inputs changed (so a step
after one that wrote different files runs again; one after a step that wrote the same bytes does not), when
an output is missing, or when ``--from`` / ``--only`` force it. A step killed mid-way with the same key
resumes in its folder (training from its checkpoint), forced or not: forcing redoes finished work and never
throws a killed run's checkpoints away. Any other step that runs starts from an empty folder.
Keys do not depend on where the output folder and the data sit (``state.StepKeys``).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from gesturekit.errors import GesturekitError
from gesturekit.workflow.config import DATA_VAR, OUT_VAR, load_workflow
from gesturekit.workflow.state import StepKeys, WorkflowState
from gesturekit.workflow.steps import STAGES, Planner, Step

Plan = Literal["done", "run", "resume", "changed"]


@dataclass
class Outcome:
    """What happened to a step in one invocation: ``ran``, ``resumed`` or ``skipped``."""

    step: str
    action: Literal["ran", "resumed", "skipped"]
    seconds: float


def plan_steps(workflow_file: Path, out: Path) -> list[Step]:
    return Planner(load_workflow(workflow_file, out), out).plan()


def _check_stage(stage: str | None, option: str) -> None:
    if stage is not None and stage not in STAGES:
        raise GesturekitError(f"{option} {stage}: unknown stage (stages: {', '.join(STAGES)})")


def _depends_on(step: Step, earlier: Step) -> bool:
    """``step`` reads something ``earlier`` writes."""
    roots = [*earlier.outputs, *([earlier.workdir] if earlier.workdir else [])]
    return any(p == root or root in p.parents or p in root.parents for p in step.inputs for root in roots)


def step_keys(out: Path) -> StepKeys:
    """The keys of this invocation, paths named from the output folder and the data (as ``plan_steps`` set
    them)."""
    return StepKeys(out, {f"${{{OUT_VAR}}}": out, f"${{{DATA_VAR}}}": Path(os.environ[DATA_VAR])})


def stage_status(step: Step, state: WorkflowState, keys: StepKeys) -> tuple[str, Plan]:
    """The step's key and what a plain run would do with it."""
    key = keys.key(step.settings, step.inputs)
    if state.is_done(step.name, key, step.outputs):
        return key, "done"
    if state.interrupted(step.name, key) and step.resumable:
        return key, "resume"
    return key, "changed" if state.record(step.name) else "run"


def run_workflow(workflow_file: Path, out: Path, from_stage: str | None = None, only: str | None = None,
                 console: Console | None = None) -> list[Outcome]:
    """Run (or resume) the workflow into ``out``; returns what happened to each step."""
    _check_stage(from_stage, "--from")
    _check_stage(only, "--only")
    console = console or Console(highlight=False)
    out.mkdir(parents=True, exist_ok=True)
    steps = plan_steps(workflow_file, out.resolve())
    state = WorkflowState(out.resolve())
    keys = step_keys(out.resolve())
    outcomes: list[Outcome] = []
    for index, step in enumerate(steps, 1):
        if only is not None and step.stage != only:
            continue
        forced = only is not None or (from_stage is not None and STAGES.index(step.stage) >= STAGES.index(from_stage))
        key, status = stage_status(step, state, keys)
        label = f"[{index}/{len(steps)}] {escape(step.name)}"
        if status == "done" and not forced:
            console.print(f"[dim]{label}: done, skipped[/dim]")
            outcomes.append(Outcome(step.name, "skipped", 0.0))
            continue
        resume = status == "resume"
        console.rule(f"{label}" + (" (resuming)" if resume else ""))
        if step.workdir is not None and not resume and step.workdir.exists():
            shutil.rmtree(step.workdir) if step.workdir.is_dir() else step.workdir.unlink()
        state.start(step.name, key)
        started = time.perf_counter()
        step.run()
        seconds = time.perf_counter() - started
        missing = [p for p in step.outputs if not p.exists()]
        if missing:
            raise GesturekitError(f"{step.name}: finished without writing {missing[0]}")
        state.finish(step.name, key, step.outputs, seconds)
        outcomes.append(Outcome(step.name, "resumed" if resume else "ran", seconds))
    console.print(summary_table(outcomes, state))
    return outcomes


def summary_table(outcomes: list[Outcome], state: WorkflowState) -> Table:
    """Each step with what this run did and its time (a skipped step: the time its last run took)."""
    table = Table("step", "this run", Column("time", justify="right"), title="workflow summary")
    total = 0.0
    for o in outcomes:
        rec = state.record(o.step) or {}
        seconds = o.seconds if o.action != "skipped" else float(rec.get("seconds", 0.0))
        total += o.seconds
        note = "" if o.action != "skipped" else " (earlier run)"
        table.add_row(escape(o.step), o.action, f"{seconds:.1f} s{note}")
    table.caption = f"{total:.1f} s in this run"
    return table


def stages_table(workflow_file: Path, out: Path) -> Table:
    """The plan: every step in order and what a plain ``workflow run`` would do with it."""
    steps = plan_steps(workflow_file, out.resolve())
    state = WorkflowState(out.resolve())
    keys = step_keys(out.resolve())
    words = {"done": "done (skipped)", "run": "to run", "resume": "interrupted: resumes",
             "changed": "changed: reruns", "after": "done; reruns if an earlier step changes its inputs"}
    table = Table("#", "stage", "target", "status", Column("time", justify="right"),
                  title=f"{workflow_file} -> {out}")
    dirty: list[Step] = []
    for index, step in enumerate(steps, 1):
        _, status = stage_status(step, state, keys)
        if status == "done" and any(_depends_on(step, d) for d in dirty):
            status = "after"
        if status != "done":
            dirty.append(step)
        rec = state.record(step.name) or {}
        seconds = f"{rec['seconds']:.1f} s" if status in ("done", "after") and "seconds" in rec else ""
        table.add_row(str(index), step.stage, escape(step.target), words[status], seconds)
    return table
