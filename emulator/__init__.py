"""The local cloud: TRTC rooms, the Cloud API 3.0 endpoint, API Gateway + SCF, COS and Redis on 127.0.0.1.

One folder per emulated service, its files named as moto names a service's: models.py (state and
behaviour, no I/O), responses.py (the wire: read a request, call the models, answer), urls.py
(routing), exceptions.py (errors with the real service's codes), service.py (the parts started
as one); a file for what has no such name says what it is (signature.py, room_server.py, gateway.py).
Beside them, what the demo, the tests and the benches share: clients.py, callbacks.py, media.py,
httpserver.py. Never deployed.
"""
