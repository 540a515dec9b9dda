"""The parameter models of both functions (pydantic, validated at the edge by shared.gateway)."""
from .push import PushParams

__all__ = ["PushParams"]
