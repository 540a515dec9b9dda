"""The local cloud: TRTC rooms, the Cloud API 3.0 endpoint, API Gateway + SCF, COS and Redis on 127.0.0.1.

One folder per emulated service; in each, the state and behaviour (models) are kept apart from
the wire protocol. Never deployed.
"""
