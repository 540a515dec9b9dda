"""Emulated SCF behind API Gateway: functions run as processes (models, runner), the gateway's HTTP
side (gateway, events), and SCF's async-event actions of Cloud API 3.0 (responses, routed by urls).

    scf = Scf(state_dir / "runs", [FunctionConfig("push_stream", Path("functions/push_stream"), ...)])
    gateway = Gateway(scf).start()           # POST {gateway.url}/push_stream
    urls.register(cloud_api, scf)            # Invoke, GetAsyncEventStatus, TerminateAsyncEvent, ListAsyncEvents
    ...
    gateway.stop(); scf.shutdown()
"""
from .exceptions import ScfError
from .gateway import ASYNC_SUBMITTED, Gateway
from .models import EVENT, REQUEST_RESPONSE, FunctionConfig, Run, Scf, Status
from .urls import register

__all__ = ["ASYNC_SUBMITTED", "EVENT", "REQUEST_RESPONSE", "FunctionConfig", "Gateway", "Run", "Scf", "ScfError",
           "Status", "register"]
