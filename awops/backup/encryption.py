"""The age v1 file format (https://age-encryption.org/v1), X25519 recipients only, streaming.

What this writes, Debian's ``age -d -i key.txt`` reads, and the other way round. The file key
is wrapped once per recipient; the payload is ChaCha20-Poly1305 in 64 KiB chunks (STREAM), so
memory stays at one chunk whatever the size of the dump.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from awops.errors import JobError

CHUNK_SIZE = 64 * 1024
_TAG_SIZE = 16
_VERSION_LINE = b"age-encryption.org/v1"
_X25519_INFO = b"age-encryption.org/v1/X25519"
_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


class AgeError(JobError):
    """A recipient, identity or age file could not be used."""


# --- bech32 (BIP 173), the encoding of age recipients and identities ---------------------


def _bech32_polymod(values: Iterable[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            checksum ^= generator[i] if (top >> i) & 1 else 0
    return checksum


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: Iterable[int], from_bits: int, to_bits: int, pad: bool) -> bytes:
    accumulator = bits = 0
    out = bytearray()
    max_value = (1 << to_bits) - 1
    for value in data:
        accumulator = (accumulator << from_bits) | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((accumulator >> bits) & max_value)
    if pad and bits:
        out.append((accumulator << (to_bits - bits)) & max_value)
    elif not pad and (bits >= from_bits or (accumulator << (to_bits - bits)) & max_value):
        raise ValueError("invalid padding")
    return bytes(out)


def bech32_decode(text: str, expected_hrp: str) -> bytes:
    lowered = text.lower()
    if text != lowered and text != text.upper():
        raise ValueError("mixed case")
    hrp, sep, data_part = lowered.rpartition("1")
    if not sep or hrp != expected_hrp.lower() or len(data_part) < 6:
        raise ValueError(f"not a {expected_hrp} key")
    try:
        data = [_BECH32_CHARSET.index(c) for c in data_part]
    except ValueError:
        raise ValueError("invalid character") from None
    if _bech32_polymod(_hrp_expand(hrp) + data) != 1:
        raise ValueError("bad checksum")
    return _convert_bits(data[:-6], 5, 8, pad=False)


def bech32_encode(hrp: str, payload: bytes) -> str:
    data = list(_convert_bits(payload, 8, 5, pad=True))
    polymod = _bech32_polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32_CHARSET[d] for d in data + checksum)


# --- keys -----------------------------------------------------------------------------------


def parse_recipient(text: str) -> bytes:
    """The 32-byte X25519 public key of an ``age1...`` recipient."""
    try:
        key = bech32_decode(text.strip(), "age")
    except ValueError as exc:
        raise AgeError(f"age recipient {text.strip()[:12]}...: {exc}") from None
    if len(key) != 32:
        raise AgeError(f"age recipient {text.strip()[:12]}...: not an X25519 key")
    return key


def check_recipient(text: str) -> str | None:
    """For ``setting(check=...)``: None when ``text`` is a usable age recipient."""
    try:
        parse_recipient(text)
    except AgeError:
        return "age X25519 recipients (age1...)"
    return None


def read_identities(path: Path) -> list[bytes]:
    """The X25519 secret keys in an age identity file (``age-keygen`` output)."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise AgeError(f"age identity file {path}: {exc.strerror or exc}") from None
    keys = []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = bech32_decode(line, "AGE-SECRET-KEY-")
        except ValueError:
            raise AgeError(
                f"age identity file {path}, line {number}: not an age secret key"
            ) from None
        if len(key) != 32:
            raise AgeError(f"age identity file {path}, line {number}: not an X25519 key")
        keys.append(key)
    if not keys:
        raise AgeError(f"age identity file {path}: no AGE-SECRET-KEY-1... line")
    return keys


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    if b"=" in text or b"\n" in text or b"\r" in text:
        raise AgeError("age header: non-canonical base64")
    return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)


def _hkdf(key: bytes, salt: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def _x25519_wrap_key(shared: bytes, share: bytes, recipient: bytes) -> bytes:
    if shared == bytes(32):
        raise AgeError("age: X25519 produced an all-zero shared secret")
    return _hkdf(shared, share + recipient, _X25519_INFO)


# --- encryption -----------------------------------------------------------------------------


class AgeEncryptor:
    """Turns a plaintext stream into an age file, chunk by chunk.

    ``header()`` first, then ``update(data)`` for each piece, then ``finish()``; each returns
    the bytes to write.
    """

    def __init__(self, recipients: list[bytes]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

        if not recipients:
            raise AgeError("age: no recipients")
        self._file_key = os.urandom(16)
        self._recipients = recipients
        nonce = os.urandom(16)
        self._nonce_prefix = nonce
        self._aead = ChaCha20Poly1305(_hkdf(self._file_key, nonce, b"payload"))
        self._buffer = bytearray()
        self._counter = 0

    def header(self) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.x25519 import (
            X25519PrivateKey,
            X25519PublicKey,
        )
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        lines = [_VERSION_LINE]
        for recipient in self._recipients:
            ephemeral = X25519PrivateKey.generate()
            share = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
            wrap_key = _x25519_wrap_key(shared, share, recipient)
            body = ChaCha20Poly1305(wrap_key).encrypt(bytes(12), self._file_key, None)
            lines.append(b"-> X25519 " + _b64(share))
            lines.append(_b64(body))  # 43 characters: one line shorter than 64
        header = b"\n".join(lines) + b"\n---"
        mac = hmac.new(_hkdf(self._file_key, b"", b"header"), header, hashlib.sha256).digest()
        return header + b" " + _b64(mac) + b"\n" + self._nonce_prefix

    def _seal(self, chunk: bytes | bytearray, last: bool) -> bytes:
        nonce = self._counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        self._counter += 1
        return self._aead.encrypt(nonce, bytes(chunk), None)

    def update(self, data: bytes) -> bytes:
        self._buffer += data
        out = []
        # Keep at least one byte back: only finish() knows which chunk is the last.
        while len(self._buffer) > CHUNK_SIZE:
            out.append(self._seal(self._buffer[:CHUNK_SIZE], last=False))
            del self._buffer[:CHUNK_SIZE]
        return b"".join(out)

    def finish(self) -> bytes:
        sealed = self._seal(self._buffer, last=True)
        self._buffer.clear()
        return sealed


# --- decryption -----------------------------------------------------------------------------


def decrypt_stream(chunks: Iterable[bytes], identities: list[bytes]) -> Iterator[bytes]:
    """The plaintext of the age file arriving as ``chunks``; raises AgeError on any damage."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    reader = _Reader(iter(chunks))
    file_key, header_bytes, mac = _read_header(reader, identities)
    expected = hmac.new(_hkdf(file_key, b"", b"header"), header_bytes, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise AgeError("age: header MAC does not match (damaged file)")
    nonce_prefix = reader.read_exact(16)
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce_prefix, b"payload"))
    counter = 0
    sealed_size = CHUNK_SIZE + _TAG_SIZE
    chunk = reader.read_up_to(sealed_size)
    while True:
        following = reader.read_up_to(sealed_size) if len(chunk) == sealed_size else b""
        last = not following
        nonce = counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")
        try:
            plain = aead.decrypt(nonce, chunk, None)
        except InvalidTag:
            raise AgeError(f"age: payload chunk {counter} failed authentication") from None
        if last and not plain and counter > 0:
            raise AgeError("age: empty last chunk")
        yield plain
        if last:
            return
        counter += 1
        chunk = following


class _Reader:
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()

    def _fill(self, size: int) -> None:
        while len(self._buffer) < size:
            piece = next(self._chunks, None)
            if piece is None:
                return
            self._buffer += piece

    def read_line(self, limit: int = 1024) -> bytes:
        while b"\n" not in self._buffer:
            before = len(self._buffer)
            if before > limit:
                raise AgeError("age: header line too long")
            self._fill(before + 1)
            if len(self._buffer) == before:
                raise AgeError("age: truncated header")
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return line

    def read_exact(self, size: int) -> bytes:
        data = self.read_up_to(size)
        if len(data) != size:
            raise AgeError("age: truncated file")
        return data

    def read_up_to(self, size: int) -> bytes:
        self._fill(size)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


def _read_header(reader: _Reader, identities: list[bytes]) -> tuple[bytes, bytes, bytes]:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.asymmetric.x25519 import (
        X25519PrivateKey,
        X25519PublicKey,
    )
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    if reader.read_line() != _VERSION_LINE:
        raise AgeError("age: not an age v1 file")
    header = [_VERSION_LINE]
    file_key: bytes | None = None
    while True:
        line = reader.read_line()
        if line.startswith(b"--- "):
            header.append(b"---")
            mac = _unb64(line[4:])
            break
        if not line.startswith(b"-> "):
            raise AgeError("age: malformed header")
        header.append(line)
        arguments = line[3:].split(b" ")
        body = b""
        while True:
            body_line = reader.read_line()
            header.append(body_line)
            body += _unb64(body_line)
            if len(body_line) < 64:
                break
        if arguments[0] != b"X25519" or len(arguments) != 2 or file_key is not None:
            continue
        share = _unb64(arguments[1])
        if len(share) != 32 or len(body) != 32:
            raise AgeError("age: malformed X25519 stanza")
        for identity in identities:
            secret = X25519PrivateKey.from_private_bytes(identity)
            ours = secret.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            shared = secret.exchange(X25519PublicKey.from_public_bytes(share))
            wrap_key = _x25519_wrap_key(shared, share, ours)
            try:
                file_key = ChaCha20Poly1305(wrap_key).decrypt(bytes(12), body, None)
                break
            except InvalidTag:
                continue
    if file_key is None:
        raise AgeError("age: none of the identities can decrypt this file")
    return file_key, b"\n".join(header), mac
