"""The fleet's join token: what a generator needs to be let in by its coordinator (DESIGN.md section 6).

A token is ``sgj1_`` followed by the base64url form (no padding) of 64 bytes:
the coordinator's CurveZMQ public key, then a 32-byte fleet secret. The
generators' CurveZMQ key pair is derived from the fleet secret, so the
coordinator, which keeps the same secret, lets in exactly the peers that hold
the token; the coordinator's public key lets a generator know it talks to the
real coordinator (CURVE authenticates both ends and encrypts everything).
"""
import base64
import binascii
import dataclasses
import hashlib
import hmac
import os
import secrets

import zmq
from zmq.utils import z85

PREFIX = "sgj1_"
ENV = "STRESSGRID_JOIN_TOKEN"
_KEY_BYTES = 32
_GENERATOR_KEY_LABEL = b"stressgrid generator curve key v1"


class JoinTokenError(ValueError):
    """A join token that cannot be used: says what is wrong with it."""


@dataclasses.dataclass(frozen=True)
class JoinToken:
    """``coordinator_public``: the coordinator's CURVE public key (Z85); ``fleet_secret``: 32 bytes."""

    coordinator_public: bytes
    fleet_secret: bytes = dataclasses.field(repr=False)

    @classmethod
    def new(cls, coordinator_public):
        """A token with a fresh fleet secret for the coordinator with this public key (Z85)."""
        return cls(coordinator_public, secrets.token_bytes(_KEY_BYTES))

    @classmethod
    def parse(cls, text):
        """The token in ``text`` (surrounding white space ignored); raises ``JoinTokenError``."""
        text = text.strip()
        if not text.startswith(PREFIX):
            raise JoinTokenError(f"a join token starts with {PREFIX!r}")
        body = text[len(PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise JoinTokenError("a join token is base64url after its prefix") from None
        if len(raw) != 2 * _KEY_BYTES:
            raise JoinTokenError("a join token holds 64 bytes; this one is cut short or too long")
        return cls(z85.encode(raw[:_KEY_BYTES]), raw[_KEY_BYTES:])

    def encode(self):
        """The token as text."""
        raw = z85.decode(self.coordinator_public) + self.fleet_secret
        return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def generator_keypair(self):
        """``(public, secret)``: the CURVE key pair (Z85) every generator of the fleet uses."""
        secret = hmac.new(self.fleet_secret, _GENERATOR_KEY_LABEL, hashlib.sha256).digest()
        secret_z85 = z85.encode(secret)
        return zmq.curve_public(secret_z85), secret_z85


def read_token_file(path):
    """The token in the file at ``path``; raises ``JoinTokenError`` naming the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise JoinTokenError(f"cannot read the join token file {path}: {exc.strerror}") from None
    try:
        return JoinToken.parse(text)
    except JoinTokenError as exc:
        raise JoinTokenError(f"{path}: {exc}") from None


def write_private(path, text):
    """Write ``text`` to ``path`` readable by its owner only (mode 0600), replacing it whole."""
    temporary = f"{path}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
