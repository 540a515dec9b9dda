"""The control channel: how push_control reaches a running push and hears back, through the push's Redis.

    commands.py  what travels: PushState, Command, answers (a failure's kind by name), the limits
    proof.py     what a control call must present (userSig or controlToken), kept as salted hashes
    inbox.py     the push's side: registration, inbox reader and answer writer (workers), its Lua
    caller.py    push_control's side: prove, find, deliver, wait (`send`, `run_control`)

The keys are in shared.redis.keys; every connection goes through shared.redis.connection.
The names the pusher uses are importable from here.
"""
from .commands import MAX_QUEUE, STATUS_PAUSED, STATUS_PLAYING, Command, PushState
from .inbox import ControlInbox, ControlUnavailable

__all__ = ["MAX_QUEUE", "STATUS_PAUSED", "STATUS_PLAYING", "Command", "ControlInbox", "ControlUnavailable",
           "PushState"]
