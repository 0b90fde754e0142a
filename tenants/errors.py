"""The exception hierarchy of the core. Each app maps these to its wire in one place."""


class ZeroEmqxError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(ZeroEmqxError):
    """The environment does not describe a usable configuration."""


class InvalidRecord(ZeroEmqxError):
    """A stored tenant record cannot be read (for instance a Secret edited by hand)."""


class StoreError(ZeroEmqxError):
    """The tenant store failed."""


class AlreadyExists(StoreError):
    """A record with that instance id exists already."""


class NotFound(StoreError):
    """No record with that instance id."""


class Conflict(StoreError):
    """The record changed since it was read (optimistic concurrency)."""


class StoreUnavailable(StoreError):
    """The backend answered with a server error or could not be reached."""


class StoreTimeout(StoreError):
    """The backend did not answer in time."""


class StoreForbidden(StoreError):
    """The backend refused us: missing credentials or RBAC permission (a misconfiguration)."""


class WatchExpired(StoreError):
    """The watch revision is too old (Kubernetes 410 Gone): relist and watch again."""
