"""The age file format against Debian's age and age-keygen, both directions."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from awops.backup.encryption import (
    CHUNK_SIZE,
    AgeEncryptor,
    AgeError,
    bech32_decode,
    bech32_encode,
    decrypt_stream,
    parse_recipient,
    read_identities,
)


def keygen(path: Path) -> str:
    made = subprocess.run(["age-keygen", "-o", str(path)], capture_output=True, text=True)
    return made.stderr.split("Public key: ")[1].strip()


def encrypt(data: bytes, recipients: list[str], piece: int = 10_000) -> bytes:
    encryptor = AgeEncryptor([parse_recipient(r) for r in recipients])
    out = [encryptor.header()]
    for i in range(0, len(data), piece):
        out.append(encryptor.update(data[i : i + piece]))
    out.append(encryptor.finish())
    return b"".join(out)


SIZES = [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE, 200_003]


@pytest.mark.parametrize("size", SIZES)
def test_age_tool_decrypts_what_we_write(tmp_path: Path, size: int):
    key = tmp_path / "key.txt"
    recipient = keygen(key)
    other = keygen(tmp_path / "other.txt")
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    encrypted = tmp_path / "x.age"
    encrypted.write_bytes(encrypt(data, [other, recipient]))
    plain = subprocess.run(
        ["age", "-d", "-i", str(key), str(encrypted)], capture_output=True, check=True
    ).stdout
    assert plain == data


@pytest.mark.parametrize("size", [0, CHUNK_SIZE, 150_000])
def test_we_decrypt_what_the_age_tool_writes(tmp_path: Path, size: int):
    key = tmp_path / "key.txt"
    recipient = keygen(key)
    data = b"\x07" * size
    encrypted = subprocess.run(
        ["age", "-r", recipient], input=data, capture_output=True, check=True
    ).stdout
    pieces = [encrypted[i : i + 777] for i in range(0, len(encrypted), 777)]
    assert b"".join(decrypt_stream(pieces, read_identities(key))) == data


def test_damage_and_wrong_keys_are_refused(tmp_path: Path):
    recipient = keygen(tmp_path / "key.txt")
    keygen(tmp_path / "wrong.txt")
    encrypted = bytearray(encrypt(b"x" * 100_000, [recipient]))
    with pytest.raises(AgeError, match="none of the identities"):
        b"".join(decrypt_stream([bytes(encrypted)], read_identities(tmp_path / "wrong.txt")))
    encrypted[-5000] ^= 1
    with pytest.raises(AgeError, match="authentication"):
        b"".join(decrypt_stream([bytes(encrypted)], read_identities(tmp_path / "key.txt")))
    truncated = bytes(encrypted[: len(encrypted) - (len(encrypted) % (CHUNK_SIZE + 16))])
    with pytest.raises(AgeError):
        b"".join(decrypt_stream([truncated], read_identities(tmp_path / "key.txt")))


def test_bech32_round_trip_and_bad_recipients():
    key = bytes(range(32))
    assert bech32_decode(bech32_encode("age", key), "age") == key
    with pytest.raises(AgeError):
        parse_recipient("age1notavalidkey")
    with pytest.raises(AgeError):
        parse_recipient("ssh-ed25519 AAAA")
