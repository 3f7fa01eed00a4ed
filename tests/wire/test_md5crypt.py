"""md5-crypt against openssl-produced vectors and against passlib (an independent one)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from passlib.hash import md5_crypt as passlib_md5_crypt

from agent.protocols.md5crypt import md5_crypt, md5_crypt_hash_part

#: Produced with `openssl passwd -1 -salt SALT PASSWORD` (OpenSSL 3.0.19); the first is also
#: the classic published vector from FreeBSD/passlib test suites.
OPENSSL_VECTORS = [
    ("U*U*U*U*", "dXc3I7Rw", "$1$dXc3I7Rw$ctlgjDdWJLMT.qwHsWhXR1"),
    ("password", "saltstri", "$1$saltstri$qQY4WxjABChYG1ccLpfkz/"),
    ("admin", "BQ5hoXV9", "$1$BQ5hoXV9$RxmaDUO33TS7O26yeMHZ81"),
    ("", "", "$1$$qRPK7m23GJusamGpoGLby/"),
    ("", "ab", "$1$ab$rn6aQS/o7141mj179E/zA."),
    ("x", "12345678", "$1$12345678$7y7mHQRucjgVYVF1mZqKC1"),
    (
        "a-much-longer-password-than-sixteen-bytes!",
        "abcdefgh",
        "$1$abcdefgh$Fq7obMOa3F0EGt/zz4z.K1",
    ),
]


@pytest.mark.parametrize(("password", "salt", "expected"), OPENSSL_VECTORS)
def test_matches_openssl(password: str, salt: str, expected: str) -> None:
    assert md5_crypt(password, salt) == expected


def test_hash_part_is_after_third_dollar() -> None:
    assert md5_crypt_hash_part("admin", "BQ5hoXV9") == "RxmaDUO33TS7O26yeMHZ81"


def test_salt_is_cut_at_eight_chars_and_at_dollar() -> None:
    assert md5_crypt("pw", "abcdefghXYZ") == md5_crypt("pw", "abcdefgh")
    assert md5_crypt("pw", "$1$abcd$junk") == md5_crypt("pw", "abcd")


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    # passwords are UTF-8 text: no lone surrogates; passlib also refuses NUL
    password=st.text(
        st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40
    ),
    salt=st.text(
        alphabet="./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        min_size=1,
        max_size=8,
    ),
)
def test_matches_passlib(password: str, salt: str) -> None:
    assert md5_crypt(password, salt) == passlib_md5_crypt.using(salt=salt).hash(password)
