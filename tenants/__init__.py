"""The shared core of Zero EMQX: tenant records, credentials, hashing and stores.

Knows nothing of HTTP or gRPC; both apps import from here, never the other way round.
"""
