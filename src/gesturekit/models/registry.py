"""Model registry: ``@register_model`` on a factory, ``create_model(name, **kwargs)`` to build it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from gesturekit.errors import GesturekitError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model factory under its function name."""
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model; ``None`` kwargs are dropped so CLI defaults never override model defaults."""
    if name not in _MODELS:
        raise GesturekitError(f"model.arch: unknown model {name!r} (known: {', '.join(list_models())})")
    return _MODELS[name](**{k: v for k, v in kwargs.items() if v is not None})
