"""COS on loopback: moto's S3 backend behind COS's Host routing, signature and error shapes."""
from .exceptions import CosError
from .service import CosService
from .signature import Credential

__all__ = ["CosError", "CosService", "Credential"]
