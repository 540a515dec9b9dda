"""The parameter models of both functions (pydantic, validated at the edge by shared.gateway)."""
from .push import PushParams
from .record import RecordParams

__all__ = ["PushParams", "RecordParams"]
