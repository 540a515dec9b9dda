"""The parameter models of the functions (pydantic, validated at the edge by shared.gateway)."""
from .control import ControlParams
from .push import PushParams
from .record import RecordParams

__all__ = ["ControlParams", "PushParams", "RecordParams"]
