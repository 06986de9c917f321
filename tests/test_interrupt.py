"""Signals at several points of a real ``gesturekit infer`` run (a subprocess, the shipped models).

``benchmarks/interrupt_soak.py`` does the same 50 times at random points; this keeps a few in CI.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from interrupt_soak import interrupted_run  # noqa: E402 - the soak's own run-and-check


@pytest.mark.parametrize(("plan", "delay_s"), [("SIGINT", 0.0), ("SIGTERM", 0.8), ("SIGINT twice", 0.3)])
def test_a_signal_leaves_matching_valid_outputs(tmp_path: Path, data_root: Path, plan: str, delay_s: float) -> None:
    clip = data_root / "video" / "asl_hand.25fps.mp4"
    run = interrupted_run(tmp_path, plan, delay_s, gap_s=0.05, clip=clip)
    assert not run["hang"] and not run["crash"], run
    assert run["rc"] == (143 if plan == "SIGTERM" else 130), run  # 325 frames outlast the delay
    assert run["problems"] == [], run  # every line valid, as many video frames as lines, nothing staged left
    assert 0 < run["json_lines"] < 325
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl", "v.mp4"]


def test_an_existing_output_survives_a_run_that_fails(tmp_path: Path, data_root: Path) -> None:
    """A run that cannot start (the detector file is not a model) leaves the old outputs as they were."""
    (tmp_path / "p.jsonl").write_text("old\n")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    run = interrupted_run(tmp_path, "SIGINT", 0.0, clip=data_root / "video" / "asl_hand.25fps.mp4",
                          extra=("--detector", str(tmp_path / "bad.onnx")))
    assert run["rc"] == 1 and not run["hang"], run
    assert "error: " in run["stderr_tail"] and "Traceback" not in run["stderr_tail"], run
    assert (tmp_path / "p.jsonl").read_text() == "old\n"
    assert not (tmp_path / "v.mp4").exists()


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_after_the_command_ended_exits_at_once_without_a_traceback(signame: str) -> None:
    """What the CLI boundary leaves in place for the interpreter's shutdown: a late signal ends the process
    with 128 + signal and prints nothing, even while a non-daemon thread is still being joined."""
    import signal
    import subprocess

    script = ("import os, signal, threading, time, sys\n"
              "from gesturekit.cli.signals import exit_at_once_on_signals\n"
              "threading.Thread(target=time.sleep, args=(30,)).start()  # joined at shutdown\n"
              "exit_at_once_on_signals()\n"
              f"os.kill(os.getpid(), signal.{signame})\n"
              "time.sleep(30)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 128 + getattr(signal, signame)
    assert "Traceback" not in proc.stderr


def test_ctrl_c_while_the_cli_imports_exits_quietly_and_commands_get_pythons_handlers_back() -> None:
    """The console script: a SIGINT while typer & co. are being imported ends the process with 130 and no
    traceback; once they are, the command runs under Python's own SIGINT handler (KeyboardInterrupt)."""
    import subprocess

    during_imports = (
        "import os, signal, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'typer':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "sys.argv = ['gesturekit', 'models', 'list']\n"
        "from gesturekit.cli.entry import main\n"
        "main()\n")
    proc = subprocess.run([sys.executable, "-c", during_imports], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (130, ""), proc
    assert "Traceback" not in proc.stderr, proc.stderr

    after_imports = (
        "import signal\n"
        "import gesturekit.cli.main as cli\n"
        "cli.main = lambda: print(signal.getsignal(signal.SIGINT) is signal.default_int_handler,\n"
        "                         signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)\n"
        "from gesturekit.cli.entry import main\n"
        "main()\n")
    proc = subprocess.run([sys.executable, "-c", after_imports], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["True", "True"], proc
