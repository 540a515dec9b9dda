"""Which SCF action the Cloud API endpoint runs for a request: service `scf`, version 2018-04-16,
and each action's ScfResponse method. (The API Gateway's routes, POST /<function> and /_runs,
are in gateway.py.)"""
from __future__ import annotations

from typing import Any, Callable

from emulator.cloudapi import CloudApi, action_handlers

from .models import Scf
from .responses import ScfResponse

SERVICE = "scf"
VERSION = "2018-04-16"
ACTIONS: dict[str, Callable[[ScfResponse], dict[str, Any]]] = {
    "Invoke": ScfResponse.invoke,
    "InvokeFunction": ScfResponse.invoke_function,
    "GetAsyncEventStatus": ScfResponse.get_async_event_status,
    "TerminateAsyncEvent": ScfResponse.terminate_async_event,
    "ListAsyncEvents": ScfResponse.list_async_events,
}


def actions(scf: Scf) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    return action_handlers(ACTIONS, lambda params: ScfResponse(scf, params))


def register(cloud_api: CloudApi, scf: Scf) -> None:
    cloud_api.register(SERVICE, VERSION, actions(scf))
