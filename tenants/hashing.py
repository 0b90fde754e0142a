"""argon2id hashing of tenant passwords.

The passwords are 256-bit random strings, so no amount of hashing cost changes
how hard they are to guess: 2**256 candidates. The hash only has to be one-way,
so that a leaked record is not a usable credential. Every MQTT CONNECT that
misses the verified-credential cache pays one verify, so the parameters are the
cheapest argon2id we consider sound: 2 MiB, one pass, one lane (about 2 ms on
one core here). Records hashed with other parameters keep verifying: the PHC
string carries its own parameters.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MEMORY_COST_KIB = 2048
TIME_COST = 1
PARALLELISM = 1

_hasher = PasswordHasher(
    time_cost=TIME_COST,
    memory_cost=MEMORY_COST_KIB,
    parallelism=PARALLELISM,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)

# A hash of nothing anyone knows: verifying against it costs what a real verify
# costs, so an unknown username takes as long to refuse as a wrong password.
DECOY_HASH = _hasher.hash("zero-emqx decoy: this password is never issued")


def hash_password(password: str) -> str:
    """The argon2id PHC string for `password` (CPU-bound: call it off the event loop)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches; False on mismatch or an unreadable hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def is_phc_argon2(value: str) -> bool:
    return value.startswith(("$argon2id$", "$argon2i$", "$argon2d$"))
