"""The parameter models of the functions (pydantic, validated at the edge by shared.gateway).

Each function imports its own model from its own module (shared.contracts.push, .control, .record,
.recognize): building a model costs import time at every cold start, so this package builds none
itself. The names below are still importable from here, each loaded on first use (PEP 562).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .control import ControlParams
    from .push import PushParams
    from .recognize import RecognizeParams
    from .record import RecordParams

_MODULE_OF = {"ControlParams": "control", "PushParams": "push", "RecordParams": "record",
              "RecognizeParams": "recognize"}

__all__ = ["ControlParams", "PushParams", "RecognizeParams", "RecordParams"]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next lookup is an ordinary one
    return value
