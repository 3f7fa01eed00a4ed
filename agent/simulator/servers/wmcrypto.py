"""Whatsminer crypto, server side: md5-crypt, the V2 AES key and sign, the V3 token.

Written from the published algorithms (protocols.md §3.2, §3.5; the FreeBSD md5-crypt
description), independently of the agent's client code, so that a bug in one side cannot
hide a bug in the other. Tests check ``md5_crypt`` against passlib's vectors.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
#: md5-crypt's fixed number of strengthening rounds (FreeBSD crypt-md5.c).
MD5_CRYPT_ROUNDS = 1000
_AES_BLOCK = 16


def md5_crypt(password: str, salt: str) -> str:
    """Unix md5-crypt: ``$1$<salt>$<22 chars>``, same as ``openssl passwd -1 -salt``."""
    pw = password.encode("utf-8")
    salt_b = salt.encode("utf-8")[:8]
    magic = b"$1$"
    alt = hashlib.md5(pw + salt_b + pw).digest()  # noqa: S324 - md5-crypt is MD5 by definition
    ctx = hashlib.md5(pw + magic + salt_b)  # noqa: S324
    remaining = len(pw)
    while remaining > 0:
        ctx.update(alt[: min(16, remaining)])
        remaining -= 16
    i = len(pw)
    while i:
        ctx.update(b"\x00" if i & 1 else pw[:1])
        i >>= 1
    final = ctx.digest()
    for r in range(MD5_CRYPT_ROUNDS):
        step = hashlib.md5()  # noqa: S324
        step.update(pw if r & 1 else final)
        if r % 3:
            step.update(salt_b)
        if r % 7:
            step.update(pw)
        step.update(final if r & 1 else pw)
        final = step.digest()
    out = []
    for a, b, c in ((0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)):
        out.append(_to64((final[a] << 16) | (final[b] << 8) | final[c], 4))
    out.append(_to64(final[11], 2))
    return f"$1${salt_b.decode('utf-8')}${''.join(out)}"


def _to64(value: int, n: int) -> str:
    chars = []
    for _ in range(n):
        chars.append(_ITOA64[value & 0x3F])
        value >>= 6
    return "".join(chars)


def crypt_part(password: str, salt: str) -> str:
    """Return the 22-character hash part of ``md5_crypt`` (btminer's host_passwd_md5)."""
    return md5_crypt(password, salt).split("$")[3]


def v2_aes_key(password: str, salt: str) -> bytes:
    """AES-256 key for V2 privileged traffic: SHA-256 of the md5-crypt hash part (§3.2)."""
    return hashlib.sha256(crypt_part(password, salt).encode("ascii")).digest()


def v2_sign(password: str, salt: str, time_str: str, newsalt: str) -> str:
    """Return the token a V2 client puts in an encrypted command (§3.2 step 4)."""
    return crypt_part(crypt_part(password, salt) + time_str, newsalt)


def aes_ecb_encrypt(key: bytes, plaintext: bytes) -> bytes:
    """AES-ECB with NUL padding to a 16-byte multiple (btminer's padding)."""
    pad = (-len(plaintext)) % _AES_BLOCK
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - the protocol's
    return enc.update(plaintext + b"\x00" * pad) + enc.finalize()


def aes_ecb_decrypt(key: bytes, ciphertext: bytes) -> bytes:
    """AES-ECB decrypt; raises ValueError on a length that is not a block multiple."""
    if not ciphertext or len(ciphertext) % _AES_BLOCK:
        raise ValueError("ciphertext is not a whole number of AES blocks")
    dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()  # noqa: S305 - the protocol's
    return dec.update(ciphertext) + dec.finalize()


def strip_padding(plaintext: bytes) -> bytes:
    """Remove btminer's NUL padding; raise ValueError on any other padding.

    V2 and V3 both pad with NUL bytes (protocols.md §3.2 "AES-256-ECB, NUL padding"; asic-rs
    and the agent's V3 client pad V3 params the same way). A plaintext that ends in PKCS#7
    padding (n bytes of value n, 1 ≤ n ≤ 16) is refused: JSON would read some of those bytes
    (tab, newline, carriage return) as whitespace and let a wrongly padding client pass.
    """
    text = plaintext.rstrip(b"\x00")
    n = text[-1] if text else 0
    if 0 < n <= _AES_BLOCK and len(text) >= n and text.endswith(bytes([n]) * n):
        raise ValueError("plaintext ends in PKCS#7 padding; btminer pads with NUL bytes")
    return text


def v3_digest(cmd: str, password: str, salt: str, ts: int | str) -> bytes:
    """SHA-256(cmd + password + salt + ts): the V3 token source and AES key (§3.5)."""
    return hashlib.sha256(f"{cmd}{password}{salt}{ts}".encode()).digest()


def v3_token(cmd: str, password: str, salt: str, ts: int | str) -> str:
    """First 8 characters of Base64(SHA-256(cmd + password + salt + ts)) (§3.5)."""
    return base64.b64encode(v3_digest(cmd, password, salt, ts)).decode("ascii")[:8]
