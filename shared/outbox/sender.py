"""A run's one sender: everything it POSTs while it runs (lifecycle events, its result, slice
callbacks, sentences) goes through one queue and one worker thread, never the media thread.

    outbox = Outbox(log=log, deadline=inv.deadline - 1).start()
    ticket = outbox.put(url, body, what="event", id_key="EventId")   # never blocks
    ...
    outbox.finish(deadline)   # the run's end: deliver what is queued until `deadline`, then stop
    ticket.delivered          # True / False (given up) / None (not settled)

Order is per URL (a lane): a message to a URL is not sent before the earlier ones to that URL were
delivered or given up. Lanes do not wait for one another's backoff: the worker makes one attempt at
a time (each at most ATTEMPT_TIMEOUT_S), taking the due lanes in turn, so a slow receiver delays
another URL's message by one of its attempts at most.

Retries follow delivery.schedule for each message, from when it reaches the head of its lane (so a
receiver down for 30 s then up gets everything, in order). A lane whose receiver used up a whole
schedule is "down": the messages behind get one attempt each until one goes through, so a receiver
gone for good costs one attempt per message rather than a minute each.

Memory is bounded: at most `max_bytes` of encoded bodies (and `max_messages` messages) wait at once.
Past that, put() refuses a message (returns None; logged once per overflow, counted in `dropped`),
except an `essential` one (a run's result, its last event: a few per run), which is always taken.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from shared.egress import DestinationRefused
from shared.runtime import RetryPolicy, RunLogger, get_logger
from shared.secrets import mask_url
from shared.worker import Worker

from . import delivery
from .delivery import ATTEMPT_TIMEOUT_S, BACKOFF_S, CALLBACK_ID_KEY, MAX_BACKOFF_S, Message, NotDelivered

MAX_QUEUED_BYTES = 8 * 1024 * 1024
MAX_QUEUED = 10_000
IDLE_WAIT_S = 1.0  # how long the idle worker sleeps between looks (put() and close() wake it sooner)


@dataclass
class Ticket:
    """One message put in the outbox, and what became of it."""

    message: Message
    essential: bool = False
    tries: int | None = None
    delivered: bool | None = None  # None until settled
    attempts: int = 0
    error: str = ""
    policy: RetryPolicy | None = None
    on_settled: Callable[["Ticket"], None] | None = None  # told once, from the worker, when settled
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait(self, timeout: float | None = None) -> bool | None:
        """Wait up to `timeout` for the message to be settled; `delivered`."""
        self._done.wait(timeout)
        return self.delivered

    def _settle(self, delivered: bool, error: str = "") -> None:
        self.delivered, self.error = delivered, error
        self._done.set()


@dataclass
class _Lane:
    url: str
    queue: deque[Ticket] = field(default_factory=deque)
    due: float = 0.0  # clock() before which the head is not tried again
    down: bool = False  # the last message used up its schedule: one attempt each until one gets through
    turn: int = 0  # when the worker last served it (the due lane served longest ago goes next)


class Outbox(Worker):
    """A per-run queue of POSTs and the one worker that sends them (see the module's docstring)."""

    def __init__(self, *, log: RunLogger | None = None, deadline: float | None = None, sign_key: str | None = None,
                 retry_for: float | None = None, backoff: float = BACKOFF_S, max_backoff: float = MAX_BACKOFF_S,
                 timeout: float = ATTEMPT_TIMEOUT_S, max_bytes: int = MAX_QUEUED_BYTES,
                 max_messages: int = MAX_QUEUED, name: str = "outbox"):
        super().__init__(name)
        self.log = log or get_logger()
        self.deadline = deadline
        self.sign_key = delivery.sign_key_from_env() if sign_key is None else sign_key
        self.retry_for, self.backoff, self.max_backoff, self.timeout = retry_for, backoff, max_backoff, timeout
        self.max_bytes, self.max_messages = max_bytes, max_messages
        self.dropped = 0  # refused past the bound
        self.given_up = 0  # settled without delivery
        self.delivered = 0
        self._lanes: dict[str, _Lane] = {}
        self._cond = threading.Condition()
        self._queued = 0
        self._queued_bytes = 0
        self._in_flight = 0
        self._overflowing = False
        self._turns = 0

    # --- the caller's side (any thread; never blocks on the network) ------------------------------

    def put(self, url: str, body: Mapping[str, Any], *, what: str = "callback", id_key: str = CALLBACK_ID_KEY,
            param: str = "Callback", essential: bool = False, tries: int | None = None,
            on_settled: Callable[[Ticket], None] | None = None) -> Ticket | None:
        """Queue a POST of `body` (JSON, signed, with its id under `id_key`) to `url`. The ticket, or
        None when the outbox is full (past its bound; never for an `essential` message) or closed.
        A URL the egress rule refuses gives a ticket settled as not delivered (logged)."""
        message = Message.make(url, body, what=what, id_key=id_key, sign_key=self.sign_key, param=param)
        ticket = Ticket(message, essential, tries, on_settled=on_settled)
        try:
            delivery.check_url(url)
        except DestinationRefused as e:
            self.log.error(f"{what} refused", reason=str(e))
            ticket._settle(False, str(e))
            self._tell(ticket)
            return ticket
        size = len(message.data)
        with self._cond:
            if self.closing.is_set():
                self.log.warning(f"{what} not sent: the run's outbox is closed", url=mask_url(url))
                return None
            full = self._queued >= self.max_messages or self._queued_bytes + size > self.max_bytes
            if full and not essential:
                self.dropped += 1
                if not self._overflowing:
                    self._overflowing = True
                    self.log.error("outbox full: messages are dropped until receivers catch up",
                                   queued=self._queued, queued_bytes=self._queued_bytes, what=what)
                return None
            if not full:
                self._overflowing = False
            lane = self._lanes.get(url)
            if lane is None:
                lane = self._lanes[url] = _Lane(url)
            lane.queue.append(ticket)
            self._queued += 1
            self._queued_bytes += size
            self._cond.notify_all()
        return ticket

    @property
    def pending(self) -> int:
        """Messages queued or being sent."""
        with self._cond:
            return self._queued

    def flush(self, deadline: float) -> bool:
        """Wait until every queued message is settled, or until `deadline` (time.monotonic()); True
        when nothing is left."""
        with self._cond:
            while self._queued:
                left = deadline - delivery._clock()
                if left <= 0 or not self.alive:
                    return False
                self._cond.wait(min(left, 0.5))
            return True

    def finish(self, deadline: float) -> bool:
        """The run's end: deliver what is queued until `deadline`, then stop the worker; what is left
        is given up (logged, with a count). True when everything was settled in time."""
        if not self.alive and self._queued:
            self.start()  # a run that never started its outbox still sends what it queued
        done = self.flush(deadline)
        self.close()
        self.join(max(0.0, deadline - delivery._clock()) + 1.0)
        if not done:
            self._abandon("the run's time to deliver ran out")
        return done

    def close(self) -> None:
        super().close()
        with self._cond:
            self._cond.notify_all()

    # --- the worker -----------------------------------------------------------------------------

    def run(self) -> None:
        while True:
            with self._cond:
                lane = self._due_lane()
                while lane is None:
                    if self.closing.is_set():
                        break
                    self._cond.wait(self._idle_wait())
                    lane = self._due_lane()
                if lane is None:
                    break
                ticket = lane.queue[0]
                self._in_flight += 1
            try:
                self._try(lane, ticket)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()
        self._abandon("the run's outbox closed")

    def _due_lane(self) -> _Lane | None:
        now = delivery._clock()
        due = [lane for lane in self._lanes.values() if lane.queue and lane.due <= now]
        if not due:
            return None
        lane = min(due, key=lambda lane: lane.turn)
        self._turns += 1
        lane.turn = self._turns
        return lane

    def _idle_wait(self) -> float:
        now = delivery._clock()
        dues = [lane.due for lane in self._lanes.values() if lane.queue]
        return max(0.0, min(dues) - now) if dues else IDLE_WAIT_S

    def _try(self, lane: _Lane, ticket: Ticket) -> None:
        m = ticket.message
        if ticket.policy is None:
            ticket.policy = delivery.schedule(ticket.tries, self.backoff, self.max_backoff, self.retry_for,
                                              self.deadline)
        policy = ticket.policy
        ticket.attempts += 1
        left = policy.seconds_left()
        timeout = self.timeout if left is None else max(0.1, min(self.timeout, left))
        try:
            status = delivery.attempt(m, timeout)
        except DestinationRefused as e:  # refused when connecting: never retried
            self.log.error(f"{m.what} refused", reason=str(e))
            self._settle(lane, ticket, False, str(e))
            return
        except NotDelivered as e:
            wait_s = policy.delay(ticket.attempts)
            more = ticket.attempts < policy.tries and not (lane.down and ticket.attempts >= 1)
            if e.retryable and more and policy.in_time(wait_s) and not self.closing.is_set():
                with self._cond:
                    lane.due = delivery._clock() + wait_s
                self.log.warning(f"{m.what} attempt failed, retrying", url=mask_url(m.url), attempt=ticket.attempts,
                                 error=str(e), retry_in_s=round(wait_s, 2), id=m.id)
                return
            if e.retryable and not lane.down and ticket.attempts >= policy.tries:
                lane.down = True  # its receiver was down for a whole schedule
            why = str(e)
            if e.retryable and more and not policy.in_time(wait_s):
                why += "; no time left to retry"
            self.log.error(f"{m.what} failed", url=mask_url(m.url), tries=ticket.attempts, error=why, id=m.id)
            self._settle(lane, ticket, False, why)
            return
        except Exception as e:  # never let one message stop the ones after it
            self.log.error(f"{m.what} failed", url=mask_url(m.url), error=f"{type(e).__name__}: {e}", id=m.id)
            self._settle(lane, ticket, False, f"{type(e).__name__}: {e}")
            return
        lane.down = False
        log = self.log.info if (ticket.attempts > 1 or ticket.essential) else self.log.debug
        log(f"{m.what} delivered", url=mask_url(m.url), status=status, attempt=ticket.attempts, id=m.id)
        self._settle(lane, ticket, True)

    def _settle(self, lane: _Lane, ticket: Ticket, delivered: bool, error: str = "") -> None:
        with self._cond:
            if ticket._done.is_set():  # settled already (an abandon racing the last attempt)
                return
            ticket._settle(delivered, error)
            try:
                lane.queue.remove(ticket)
            except ValueError:
                pass
            lane.due = 0.0
            self._queued -= 1
            self._queued_bytes -= len(ticket.message.data)
            if delivered:
                self.delivered += 1
            else:
                self.given_up += 1
            self._cond.notify_all()
        self._tell(ticket)

    def _tell(self, ticket: Ticket) -> None:
        if ticket.on_settled is not None:
            try:
                ticket.on_settled(ticket)
            except Exception as e:  # a listener's bug must not stop the sender
                self.log.error("a delivery listener failed", error=f"{type(e).__name__}: {e}")

    def _abandon(self, why: str) -> None:
        """Give up everything still queued (the worker has stopped, or the time ran out)."""
        with self._cond:
            left = [(lane, t) for lane in self._lanes.values() for t in list(lane.queue)]
        if not left:
            return
        for lane, ticket in left:
            self._settle(lane, ticket, False, why)
        self.log.error("messages not delivered before the run ended", count=len(left), why=why,
                       ids=[t.message.id for _, t in left[:20]])
