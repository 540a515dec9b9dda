"""recognize_stream's run: each anchor of a room recognised live (recognizer), its sentences sent
on (outbox) and kept (transcript)."""
