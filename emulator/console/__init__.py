"""The local console: runs, rooms (with a live watch of any publishing member) and recordings of
the local cloud in a browser, on 127.0.0.1, read from the emulator's own models.

    console = Console(scf=..., rooms=..., buckets=[cos.state], gateway_url=..., sdk_app_id=...,
                      sdk_secret_key=..., asr=asr.backend).start()   # asr: live captions (optional)
    console.url      # "http://127.0.0.1:PORT/" (the JSON line's "console")
    console.stop()
"""
from .server import Console

__all__ = ["Console"]
