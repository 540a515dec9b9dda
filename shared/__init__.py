"""The library the functions import.

- the edge: `gateway` (envelope, validation errors), `contracts/` (the pydantic models),
  `runtime` (SCF context, JSON logs, stops, retries), `egress` (where a function may connect)
- `media/`: the media vocabulary and the source side (open, decode, convert, pace)
- `room/`: one Room interface, over liteav (`trtc`) or the emulator (`local`)
- `push/`: push_stream's loop and checkpoint; `record/`: record_stream's recorder, writer, upload, callback
"""
