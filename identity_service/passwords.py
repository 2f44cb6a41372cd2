"""Passwords: the policy, argon2id hashing, and verification that reveals nothing by its timing.

Hashing is deliberately slow (about 0.3 s and 64 MiB with argon2-cffi's RFC 9106 profile), so it
runs in worker threads, at most ``HASHING_CONCURRENCY`` at a time: a burst of sign-ins queues
instead of taking the event loop or all of the memory.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Final

import anyio
import argon2
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH: Final = 10  # NIST SP 800-63B asks for at least 8; 10 costs users little
MAX_PASSWORD_LENGTH: Final = 256  # long passphrases welcome; unbounded input is a DoS vector
HASHING_CONCURRENCY: Final = 4  # 4 × 64 MiB at most in flight
GENERATED_PASSWORD_BYTES: Final = 12  # 96 bits, printed as 16 URL-safe characters

# Passwords people pick first; the policy refuses them whatever their length.
_COMMON_PASSWORDS: Final = frozenset(
    {
        "1234567890",
        "0123456789",
        "1q2w3e4r5t",
        "qwertyuiop",
        "password123",
        "password1234",
        "passw0rd123",
        "iloveyou123",
        "letmein1234",
        "welcome123",
        "admin12345",
        "changeme123",
    }
)


class PasswordRejected(ValueError):
    """The password does not meet the policy; the message says why, for the person choosing it."""


def check_password_policy(password: str, personal_words: Iterable[str] = ()) -> None:
    """Raise ``PasswordRejected`` unless ``password`` is acceptable.

    Length rules and a short deny-list, as NIST SP 800-63B recommends — no composition rules.
    ``personal_words`` (an email address, a name) must not be the password.
    """
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(f"Use at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(f"Use at most {MAX_PASSWORD_LENGTH} characters.")
    lowered = password.lower()
    if lowered in _COMMON_PASSWORDS or len(set(lowered)) < 3:
        raise PasswordRejected("This password is too easy to guess.")
    if any(word and lowered == word.lower() for word in personal_words):
        raise PasswordRejected("Do not use your email address, number or name as the password.")


def generate_password() -> str:
    """A random password for an account created without one."""
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


def password_hasher(profile: str) -> argon2.PasswordHasher:
    """The argon2id hasher for a ``PASSWORD_HASH_PROFILE``.

    A hash records its own parameters, so hashes made under one profile verify under the other.
    """
    if profile == "fast":  # tests only: 1 pass over 1 MiB
        return argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    return argon2.PasswordHasher()


class Passwords:
    """Hashes and verifies passwords off the event loop."""

    def __init__(self, profile: str) -> None:
        self._hasher = password_hasher(profile)
        self._limiter = anyio.CapacityLimiter(HASHING_CONCURRENCY)
        # Verified against when no account matches, so that "no such account" takes as long as
        # "wrong password" and response times reveal nothing. Made on first need.
        self._decoy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches ``password_hash``; with no hash, as slow and False."""
        return await anyio.to_thread.run_sync(
            self._verify, password_hash, password, limiter=self._limiter
        )

    def _verify(self, password_hash: str | None, password: str) -> bool:
        if password_hash is None and self._decoy_hash is None:
            self._decoy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        try:
            self._hasher.verify(password_hash or self._decoy_hash or "", password)
        except (VerificationError, InvalidHashError):
            return False
        return password_hash is not None
