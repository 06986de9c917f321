"""``gesturekit workflow run|stages WORKFLOW.yaml``: the whole chain as one resumable command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

app = typer.Typer(
    help=(
        "Run the whole workflow from one file: convert -> pack -> train -> evaluate -> prune -> retrain -> qat -> "
        "export -> evaluate_exports -> triton_repo -> cards -> report. Each step records its settings and the content hashes of "
        "its inputs in OUT/workflow_state.json: a rerun skips what is done and unchanged, and a run killed "
        "mid-step resumes that step (training from its checkpoint). Shipped files: workflows/quickstart-cpu.yaml "
        "(a few minutes on a laptop CPU) and workflows/gesture-gpu.yaml (the shipped models' recipe)."
    ),
    no_args_is_help=True,
)

WorkflowArg = Annotated[Path, typer.Argument(metavar="WORKFLOW", help="The workflow file (YAML).",
                                             show_default=False)]
OutOption = Annotated[Optional[Path], typer.Option(
    "--output", "-o", help="Output folder. (default: runs/workflow/<workflow file name>)", show_default=False)]


def _out(workflow: Path, out: Path | None) -> Path:
    return out if out is not None else Path("runs") / "workflow" / workflow.stem


@app.command()
def run(
    workflow: WorkflowArg,
    out: OutOption = None,
    from_stage: Annotated[Optional[str], typer.Option(
        "--from", help="Rerun this stage and every stage after it, done or not (a killed step resumes).",
        show_default=False)] = None,
    only: Annotated[Optional[str], typer.Option(
        "--only", help="Run this stage alone (its inputs must exist), done or not (a killed step resumes).",
        show_default=False)] = None,
) -> None:
    """Run (or resume) the workflow; ends with each step's time and OUT/report.html."""
    from gesturekit.workflow.runner import run_workflow

    folder = _out(workflow, out)
    run_workflow(workflow, folder, from_stage, only, Console(highlight=False))
    typer.echo(f"report: {folder / 'report.html'}")


@app.command()
def stages(workflow: WorkflowArg, out: OutOption = None) -> None:
    """Print the plan: every step in order and whether a run would skip, resume or (re)run it."""
    from gesturekit.workflow.runner import stages_table

    Console(highlight=False).print(stages_table(workflow, _out(workflow, out)))
