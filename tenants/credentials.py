"""Minting instance ids, passwords and credential ids, and recognising our usernames.

Two usernames name an instance: its id, `emqx-` + 16 lowercase hex (the owner, full
rights), and `<instance id>.<credential id>` (a scoped credential of that instance).
A credential id is one rights letter and 7 lowercase hex digits: `p` publish only, `s`
subscribe only, `x` both (none of them a hex digit), so EMQX's own authorizer can read
the rights from the username (emqx-config/acl.conf matches them with a regex) and a
username can never be mistaken for another rights class. The rights are fixed when the
credential is created. Ids of 8 hex digits (before rights letters existed) are still
recognised, as legacy ids with no rights: the hook refuses them.

EMQX takes the namespace from the first 21 characters of the username
(`substr(username, 0, 21)`), so every form lands in the instance's namespace.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

INSTANCE_ID_PREFIX = "emqx-"
INSTANCE_ID_RE = re.compile(r"^emqx-[0-9a-f]{16}$")
INSTANCE_ID_LENGTH = 21  # len("emqx-") + 16: EMQX's namespace is this much of the username
CREDENTIAL_ID_RE = re.compile(r"^[psx][0-9a-f]{7}$")
LEGACY_CREDENTIAL_ID_RE = re.compile(r"^[0-9a-f]{8}$")
SCOPED_USERNAME_RE = re.compile(r"^(emqx-[0-9a-f]{16})\.([psx][0-9a-f]{7}|[0-9a-f]{8})$")
"""A scoped username, current (rights letter) or legacy (8 hex, refused) form."""
PASSWORD_BYTES = 32
PASSWORD_LENGTH = 43  # base64url of 32 bytes, no padding


def new_instance_id() -> str:
    """`emqx-` + 16 lowercase hex digits: 64 bits from the OS CSPRNG."""
    return INSTANCE_ID_PREFIX + secrets.token_hex(8)


class Rights(StrEnum):
    """What a scoped credential may do, as the letter that starts its id."""

    PUBLISH = "p"
    SUBSCRIBE = "s"
    BOTH = "x"

    @property
    def publish(self) -> bool:
        return self is not Rights.SUBSCRIBE

    @property
    def subscribe(self) -> bool:
        return self is not Rights.PUBLISH

    @classmethod
    def of(cls, publish: bool, subscribe: bool) -> Rights | None:
        """The letter for these rights; None for neither (no such credential)."""
        if publish and subscribe:
            return cls.BOTH
        if publish:
            return cls.PUBLISH
        return cls.SUBSCRIBE if subscribe else None


def new_credential_id(rights: Rights) -> str:
    """The rights letter + 7 lowercase hex digits: 28 bits from the OS CSPRNG (unique
    within an instance: the caller retries a collision)."""
    return rights.value + secrets.token_hex(4)[:7]


def rights_of(cred_id: str) -> Rights | None:
    """The rights a credential id carries; None for a legacy (8 hex) id or anything else."""
    if CREDENTIAL_ID_RE.fullmatch(cred_id) is None:
        return None
    return Rights(cred_id[0])


def new_password() -> str:
    """32 random bytes, base64url without padding (43 characters, 256 bits)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(PASSWORD_BYTES)).rstrip(b"=").decode()


def is_instance_id(value: str) -> bool:
    return INSTANCE_ID_RE.fullmatch(value) is not None


def is_credential_id(value: str) -> bool:
    """A credential id a record may hold: current, or legacy (kept so that the record stays
    readable and the credential can be listed and deleted; the hook refuses it)."""
    return (
        CREDENTIAL_ID_RE.fullmatch(value) is not None
        or LEGACY_CREDENTIAL_ID_RE.fullmatch(value) is not None
    )


def scoped_username(instance_id: str, cred_id: str) -> str:
    return f"{instance_id}.{cred_id}"


def parse_username(username: str) -> tuple[str, str | None] | None:
    """(instance id, None) for an instance id, (instance id, credential id) for a scoped
    username (current or legacy form), None for anything else."""
    if INSTANCE_ID_RE.fullmatch(username) is not None:
        return username, None
    match = SCOPED_USERNAME_RE.fullmatch(username)
    return None if match is None else (match[1], match[2])


@dataclass(frozen=True, slots=True)
class Username:
    """A username of ours, parsed once at the edge: the instance it names and, for a
    scoped credential, the credential id (None: the instance's own username)."""

    text: str
    instance_id: str
    cred_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> Username | None:
        """The username as one of ours; None for anything else (parse_username's rules)."""
        parsed = parse_username(text)
        return None if parsed is None else cls(text, parsed[0], parsed[1])

    @property
    def rights(self) -> Rights | None:
        """A scoped username's rights (None: the owner, or a legacy credential id)."""
        return None if self.cred_id is None else rights_of(self.cred_id)


def namespace_of(username: str) -> str:
    """The EMQX namespace a username lands in: `substr(username, 0, 21)` (emqx-config/)."""
    return username[:INSTANCE_ID_LENGTH]


def claims_a_namespace(username: str) -> bool:
    """Whether EMQX would put this username into one of our namespaces: its first 21
    characters are an instance id. Such a username is never left to another
    authenticator; it is ours to admit (in one of the two exact forms) or to refuse."""
    return INSTANCE_ID_RE.fullmatch(namespace_of(username)) is not None
