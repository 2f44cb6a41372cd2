"""Passwords: the policy, argon2id hashing, and verification that reveals nothing by its timing.

Any Unicode is welcome. A password is NFKC-normalised before it is checked, hashed or verified
(NIST SP 800-63B §5.1.1.2), so "ﬁ" typed on one keyboard and "fi" on another are one password.

Hashing is deliberately slow (about 0.3 s and 64 MiB with argon2-cffi's RFC 9106 profile), so it
runs in worker threads, at most ``HASHING_CONCURRENCY`` at a time: a burst of sign-ins queues
instead of taking the event loop or all of the memory.
"""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Iterable
from typing import Final

import anyio
import argon2
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH: Final = 10  # NIST SP 800-63B asks for at least 8; 10 costs users little
# Long passphrases are welcome; 128 characters is far beyond any, and unbounded input is a
# denial-of-service vector for a deliberately slow hash.
MAX_PASSWORD_LENGTH: Final = 128
HASHING_CONCURRENCY: Final = 4  # 4 × 64 MiB at most in flight
GENERATED_PASSWORD_BYTES: Final = 12  # 96 bits, printed as 16 URL-safe characters

# Passwords people pick first, from the most common lists, that are long enough to pass the
# length rule; the policy refuses them whatever their case.
_COMMON_PASSWORDS: Final = frozenset(
    {
        *("1234567890", "0987654321", "1234512345", "1122334455", "1q2w3e4r5t", "1qaz2wsx3edc"),
        *("qwertyuiop", "asdfghjkl1", "zxcvbnm123", "qazwsxedc1", "q1w2e3r4t5", "qwerty1234"),
        *("a123456789", "123456789a", "abc1234567", "abcd123456", "12345678910", "1234567890a"),
        *("123qweasdzxc", "qwe123qwe123", "1q2w3e4r5t6y", "zaq12wsxcde3", "!qaz2wsx3edc"),
    }
)
# Words that many passwords are made of with digits or symbols around them ("Password2024!");
# the service's own name is one (NIST SP 800-63B asks for context-specific words).
_COMMON_WORDS: Final = frozenset(
    {
        *("password", "passw0rd", "p@ssw0rd", "p@ssword", "iloveyou", "welcome", "letmein"),
        *("admin", "administrator", "changeme", "trustno1", "qwerty", "qwertyuiop", "football"),
        *("baseball", "princess", "sunshine", "superman", "starwars", "whatever", "dragon"),
        *("monkey", "master", "shadow", "michael", "jennifer", "computer", "parley"),
    }
)
# Stripped from both ends of a password before it is compared with _COMMON_WORDS.
_DECORATION: Final = "0123456789!@#$%^&*()-_=+.,;:?~ "


class PasswordRejected(ValueError):
    """The password does not meet the policy; the message says why, for the person choosing it."""


def normalise_password(password: str) -> str:
    """The form of ``password`` that is checked, hashed and verified."""
    return unicodedata.normalize("NFKC", password)


def check_password_policy(password: str, personal_words: Iterable[str] = ()) -> None:
    """Raise ``PasswordRejected`` unless ``password`` is acceptable.

    Length rules and deny-lists, as NIST SP 800-63B recommends — no composition rules.
    ``personal_words`` (an email address, a mobile number, a name) must not be the password.
    """
    password = normalise_password(password)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordRejected(f"Use at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise PasswordRejected(f"Use at most {MAX_PASSWORD_LENGTH} characters.")
    if any(unicodedata.category(character) == "Cc" for character in password):
        raise PasswordRejected("Use only characters you can type: no control characters.")
    lowered = password.casefold()
    if (
        lowered in _COMMON_PASSWORDS
        or lowered.strip(_DECORATION) in _COMMON_WORDS
        or len(set(lowered)) < 3
    ):
        raise PasswordRejected("This password is too easy to guess.")
    for word in personal_words:
        word = normalise_password(word).casefold()
        if word and lowered in {word, word.lstrip("+")}:
            raise PasswordRejected(
                "Do not use your email address, mobile number or name as the password."
            )


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
        return await anyio.to_thread.run_sync(
            self._hasher.hash, normalise_password(password), limiter=self._limiter
        )

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches ``password_hash``; with no hash, as slow and False."""
        return await anyio.to_thread.run_sync(
            self._verify, password_hash, normalise_password(password), limiter=self._limiter
        )

    def _verify(self, password_hash: str | None, password: str) -> bool:
        if password_hash is None and self._decoy_hash is None:
            self._decoy_hash = self._hasher.hash(secrets.token_urlsafe(16))
        try:
            self._hasher.verify(password_hash or self._decoy_hash or "", password)
        except (VerificationError, InvalidHashError):
            return False
        return password_hash is not None
