"""Lifecycle events and idempotent starts of the asynchronous functions: which events exist
(`kinds`), one run's numbered events (`emitter.RunEvents`), IdempotencyKey (`idempotency`), and the
frame every run goes through (`lifecycle.run_with_events`). Sent through shared.outbox."""
