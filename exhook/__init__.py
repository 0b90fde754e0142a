"""The ExHook server: EMQX 6 asks it, over gRPC, whether each CONNECT may in and each
PUBLISH/SUBSCRIBE may happen. Answers come from an in-memory index of the tenants.

- `decision`: the pure rules (frozen values, no I/O)
- `verifier`: argon2 off the event loop, bounded, with a verified-credential cache
- `service`: the HookProvider servicer (wire <-> domain)
- `server`: `create_server` and `ExhookRuntime`, the one context manager that runs it all
- `observability`: Prometheus metrics and the /healthz /readyz /metrics side app
- `main`: `serve()` and the `zero-emqx-exhook` entry point
"""
