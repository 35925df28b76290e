"""Hashes of many messages at once, computed by the kernel in native code.

WebAssembly has no SHA instructions, so hashing inside a plugin (Python's
`hashlib` included) runs several times slower than the kernel's. When a
plugin derives many values (a print file's codes, a batch of signatures),
it hands the kernel all messages of one step at once: one call hashes up
to 65,536 messages of one length that share a prefix. No capability
needed::

    # The first 8 bytes of SHA-256(key ‖ round ‖ value) of three values.
    values = b"".join(v.to_bytes(8, "little") for v in (1, 2, 3))
    digests = crypto.sha256_each(b"key-and-round", values, 8, 8)
    assert len(digests) == 3 * 8

Limits (`InvalidInput` past them): `prefix` and `key` at most 1,024 bytes;
`messages` at most 1 MiB and 65,536 messages, a whole number of
`message_len` (1 to 1,024) bytes; `digest_len` 1 to 32.
"""

from wit_world.imports import crypto as _wit

from .errors import host

#: Most messages of one call.
MAX_MESSAGES = 65_536


def sha256_each(prefix: bytes, messages: bytes, message_len: int, digest_len: int) -> bytes:
    """For each `message_len`-byte message of `messages` (their
    concatenation), the first `digest_len` bytes of SHA-256(`prefix` ‖
    message), concatenated in order."""
    return bytes(host(_wit.sha256_each, bytes(prefix), bytes(messages), message_len, digest_len))


def hmac_sha256_each(key: bytes, prefix: bytes, messages: bytes, message_len: int,
                     digest_len: int) -> bytes:
    """The same with HMAC-SHA-256(`key`, `prefix` ‖ message) (RFC 2104)."""
    return bytes(host(_wit.hmac_sha256_each, bytes(key), bytes(prefix), bytes(messages),
                      message_len, digest_len))
