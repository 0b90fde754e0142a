"""Minting instance ids and passwords, and recognising ours."""

from __future__ import annotations

import base64
import re
import secrets

INSTANCE_ID_PREFIX = "emqx-"
INSTANCE_ID_RE = re.compile(r"^emqx-[0-9a-f]{16}$")
PASSWORD_BYTES = 32
PASSWORD_LENGTH = 43  # base64url of 32 bytes, no padding


def new_instance_id() -> str:
    """`emqx-` + 16 lowercase hex digits: 64 bits from the OS CSPRNG."""
    return INSTANCE_ID_PREFIX + secrets.token_hex(8)


def new_password() -> str:
    """32 random bytes, base64url without padding (43 characters, 256 bits)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(PASSWORD_BYTES)).rstrip(b"=").decode()


def is_instance_id(value: str) -> bool:
    return INSTANCE_ID_RE.fullmatch(value) is not None
