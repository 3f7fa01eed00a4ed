"""Unix md5-crypt (``$1$``), as ``openssl passwd -1``: the Whatsminer V2 key derivation step.

Implemented here from Poul-Henning Kamp's FreeBSD algorithm so the agent needs neither the
deprecated ``crypt`` module nor passlib (tests check it against both and against openssl).
"""

from __future__ import annotations

import hashlib

MAGIC = "$1$"
#: md5-crypt uses at most 8 salt characters.
MAX_SALT_CHARS = 8
#: The algorithm's fixed stretching rounds.
ROUNDS = 1000
_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: Byte triples of the final digest, in the order the encoding emits them.
_TRIPLES = ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5))


def md5_crypt(password: str | bytes, salt: str) -> str:
    """Return the full ``$1$<salt>$<22 chars>`` hash of ``password`` with ``salt``."""
    pw = password.encode("utf-8") if isinstance(password, str) else password
    salt = salt.removeprefix(MAGIC).split("$", 1)[0][:MAX_SALT_CHARS]
    salt_b = salt.encode("ascii")
    magic_b = MAGIC.encode("ascii")

    alternate = hashlib.md5(pw + salt_b + pw).digest()  # noqa: S324 - the algorithm is MD5
    ctx = hashlib.md5(pw + magic_b + salt_b)  # noqa: S324
    for remaining in range(len(pw), 0, -16):
        ctx.update(alternate[: min(16, remaining)])
    i = len(pw)
    while i:
        ctx.update(b"\x00" if i & 1 else pw[:1])
        i >>= 1
    digest = ctx.digest()

    for r in range(ROUNDS):
        round_ctx = hashlib.md5(pw if r & 1 else digest)  # noqa: S324
        if r % 3:
            round_ctx.update(salt_b)
        if r % 7:
            round_ctx.update(pw)
        round_ctx.update(digest if r & 1 else pw)
        digest = round_ctx.digest()

    out = [_to64((digest[a] << 16) | (digest[b] << 8) | digest[c], 4) for a, b, c in _TRIPLES]
    out.append(_to64(digest[11], 2))
    return f"{MAGIC}{salt}${''.join(out)}"


def md5_crypt_hash_part(password: str | bytes, salt: str) -> str:
    """Return only the 22-character part after the third ``$`` (what btminer calls the md5)."""
    return md5_crypt(password, salt).split("$", 3)[3]


def _to64(value: int, count: int) -> str:
    chars = []
    for _ in range(count):
        chars.append(_ITOA64[value & 0x3F])
        value >>= 6
    return "".join(chars)
