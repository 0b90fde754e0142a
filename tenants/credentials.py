"""Minting instance ids, passwords and credential ids, and recognising our usernames.

Two usernames name an instance: its id, `emqx-` + 16 lowercase hex (the owner, full
rights), and `<instance id>.<credential id>` with 8 lowercase hex (a scoped credential
of that instance). EMQX takes the namespace from the first 21 characters of the
username (`substr(username, 0, 21)`), so both land in the instance's namespace.
"""

from __future__ import annotations

import base64
import re
import secrets

INSTANCE_ID_PREFIX = "emqx-"
INSTANCE_ID_RE = re.compile(r"^emqx-[0-9a-f]{16}$")
INSTANCE_ID_LENGTH = 21  # len("emqx-") + 16: EMQX's namespace is this much of the username
CREDENTIAL_ID_RE = re.compile(r"^[0-9a-f]{8}$")
SCOPED_USERNAME_RE = re.compile(r"^(emqx-[0-9a-f]{16})\.([0-9a-f]{8})$")
PASSWORD_BYTES = 32
PASSWORD_LENGTH = 43  # base64url of 32 bytes, no padding


def new_instance_id() -> str:
    """`emqx-` + 16 lowercase hex digits: 64 bits from the OS CSPRNG."""
    return INSTANCE_ID_PREFIX + secrets.token_hex(8)


def new_credential_id() -> str:
    """8 lowercase hex digits: 32 bits from the OS CSPRNG (unique within an instance)."""
    return secrets.token_hex(4)


def new_password() -> str:
    """32 random bytes, base64url without padding (43 characters, 256 bits)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(PASSWORD_BYTES)).rstrip(b"=").decode()


def is_instance_id(value: str) -> bool:
    return INSTANCE_ID_RE.fullmatch(value) is not None


def is_credential_id(value: str) -> bool:
    return CREDENTIAL_ID_RE.fullmatch(value) is not None


def scoped_username(instance_id: str, cred_id: str) -> str:
    return f"{instance_id}.{cred_id}"


def parse_username(username: str) -> tuple[str, str | None] | None:
    """(instance id, None) for an instance id, (instance id, credential id) for a scoped
    username, None for anything else."""
    if INSTANCE_ID_RE.fullmatch(username) is not None:
        return username, None
    match = SCOPED_USERNAME_RE.fullmatch(username)
    return None if match is None else (match[1], match[2])


def namespace_of(username: str) -> str:
    """The EMQX namespace a username lands in: `substr(username, 0, 21)` (emqx-config/)."""
    return username[:INSTANCE_ID_LENGTH]


def claims_a_namespace(username: str) -> bool:
    """Whether EMQX would put this username into one of our namespaces: its first 21
    characters are an instance id. Such a username is never left to another
    authenticator; it is ours to admit (in one of the two exact forms) or to refuse."""
    return INSTANCE_ID_RE.fullmatch(namespace_of(username)) is not None
