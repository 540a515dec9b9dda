"""COS on loopback: moto's S3 backend behind COS's Host routing, signature and error shapes."""
from .errors import CosError
from .server import CosService
from .signature import Credential

__all__ = ["CosError", "CosService", "Credential"]
