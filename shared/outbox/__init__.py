"""The one sender of everything a run POSTs while it runs: lifecycle events, results, slice
callbacks, sentences. `delivery` is how one message goes (signing, egress, retry schedule);
`sender.Outbox` is the per-run queue and its worker (order per URL, bounded, off the media thread)."""
from .delivery import CALLBACK_ID_HEADER, CALLBACK_ID_KEY, Message, post, schedule, sign_body, with_id
from .sender import Outbox, Ticket

__all__ = ["CALLBACK_ID_HEADER", "CALLBACK_ID_KEY", "Message", "Outbox", "Ticket", "post", "schedule", "sign_body",
           "with_id"]
