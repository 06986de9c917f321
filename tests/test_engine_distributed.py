"""Runtime context from the torchrun environment, loaders and single-process collectives."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DistributedSampler, RandomSampler, SequentialSampler, TensorDataset

from gesturekit.engine.distributed import RuntimeContext, barrier, init_runtime, make_loader, reduce_dict, unwrap
from gesturekit.errors import GesturekitError


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_single_process_context() -> None:
    ctx = init_runtime("cpu", seed=3)
    assert ctx == RuntimeContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"),
                                 is_main=True, distributed=False)
    a = torch.rand(3)
    init_runtime("cpu", seed=3)
    torch.testing.assert_close(torch.rand(3), a)
    barrier()  # no process group: a no-op


def test_world_size_one_under_torchrun_is_not_distributed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not init_runtime("cpu").distributed


def test_bad_environment_and_devices_are_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(GesturekitError, match="WORLD_SIZE='two'"):
        init_runtime("cpu")
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(GesturekitError, match="'gpu0': not a torch device"):
        init_runtime("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(GesturekitError, match="CUDA is not available"):
            init_runtime("cuda")


def test_reduce_dict_without_process_group() -> None:
    out = reduce_dict({"a": torch.tensor(1.5), "b": 2, "c": torch.tensor([0.25])})
    assert out == {"a": 1.5, "b": 2.0, "c": 0.25}
    assert reduce_dict({}) == {}


def test_unwrap_compiled_model() -> None:
    model = nn.Linear(2, 2)
    assert unwrap(model) is model
    assert unwrap(torch.compile(model)) is model


def test_make_loader_samplers() -> None:
    data = TensorDataset(torch.arange(10.0))
    single = make_loader(data, 4, 0, True, None, RuntimeContext(), drop_last=False)
    assert isinstance(single.sampler, RandomSampler) and not single.pin_memory and len(single) == 3
    ordered = make_loader(data, 4, 2, False, None, RuntimeContext(), drop_last=True)
    assert isinstance(ordered.sampler, SequentialSampler) and len(ordered) == 2
    assert [[float(v) for v in batch] for (batch,) in ordered] == [[0, 1, 2, 3], [4, 5, 6, 7]]

    rank1 = RuntimeContext(rank=1, world_size=2, local_rank=1, is_main=False, distributed=True)
    sharded = make_loader(data, 2, 0, False, None, rank1, drop_last=False)
    assert isinstance(sharded.sampler, DistributedSampler) and len(sharded) == 3
    assert [float(v) for (batch,) in sharded for v in batch] == [1.0, 3.0, 5.0, 7.0, 9.0]
