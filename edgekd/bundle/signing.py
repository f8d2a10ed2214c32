"""Signed bundles: an Ed25519 signature of ``manifest.json``, kept in ``manifest.sig``.

The manifest holds the sha256 and size of every file, so signing it signs the whole bundle:
``edgekd verify BUNDLE --key PUB`` checks the signature of the manifest, then every file against
the manifest. Anyone can still recompute a manifest after changing a file (``verify`` alone then
passes), but only the holder of the private key can sign it again.

The manifest also carries the release's ``name`` and ``version``, so the signature binds them:
``verify`` prints them, compares them with ``--name`` / ``--version`` when given, and for a
tarball requires its file name and its top folder to be ``<name>-<version>``: a signed release
renamed to another model or version fails. An empty or malformed ``manifest.sig`` is "invalid",
never "signed". A private key file open to its group or others (mode ``& 077``) is refused, as
OpenSSH refuses one.

Keys are ordinary PEM files (PKCS#8 private, SubjectPublicKeyInfo public), the ones
``openssl genpkey -algorithm ed25519`` and ``edgekd keygen`` write; an OpenSSH ``ssh-ed25519``
public key works for checking too. Signing and checking use the ``cryptography`` library.

``manifest.sig`` (JSON)::

    {"schema": "edgekd.signature/v1", "algorithm": "ed25519", "signed_file": "manifest.json",
     "manifest_sha256": "...", "key_id": "<sha256 of the raw public key, 16 hex>",
     "public_key": "<raw public key, base64>", "signature": "<base64>"}

Torch-free: checking runs on the device.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path

from edgekd.bundle.manifest import MANIFEST, SIGNATURE, manifest_bytes, manifest_problems, parse_manifest
from edgekd.errors import EdgeKDError
from edgekd.files import write_atomic, write_json
from edgekd.paths import special_file

__all__ = [
    "SIGNATURE",
    "SIGNATURE_SCHEMA",
    "generate_keypair",
    "sign_bundle",
    "check_signature",
    "check_before_resign",
    "signature_after_change",
    "key_id",
    "load_private_key",
    "load_public_key",
    "verify_signed",
    "read_signature",
    "identity_problems",
    "release_identity",
]

SIGNATURE_SCHEMA = "edgekd.signature/v1"
PASSWORD_ENV = "EDGEKD_KEY_PASSWORD"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _raw(public_key) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public_key) -> str:
    """A short fingerprint of an Ed25519 public key: sha256 of its 32 raw bytes, 16 hex."""
    return hashlib.sha256(_raw(public_key)).hexdigest()[:16]


def _read_key_file(path: Path, what: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise EdgeKDError(f"--key: {path}: no such {what} file")
    if path.stat().st_size > 64 << 10:
        raise EdgeKDError(f"--key: {path}: too large to be an Ed25519 {what}")
    return path.read_bytes()


def _check_private_mode(path: Path) -> None:
    """Refuse a private key that the file's group or others may read or write, as OpenSSH
    does: whoever could read it can sign releases; whoever could write it can swap it."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise EdgeKDError(
            f"--key: {path}: private key with mode {mode:04o}, open to the file's group "
            f"or others; refused: make it private with `chmod 600 {path}`"
        )


def load_private_key(path: str | Path):
    """An Ed25519 private key from a PEM file (password from ``EDGEKD_KEY_PASSWORD`` if set)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read_key_file(Path(path), "private key")
    _check_private_mode(Path(path))
    password = os.environ.get(PASSWORD_ENV)
    try:
        key = load_pem_private_key(data, password.encode() if password else None)
    except TypeError:
        raise EdgeKDError(f"--key: {path}: the key is encrypted; set {PASSWORD_ENV}") from None
    except ValueError as err:
        raise EdgeKDError(
            f"--key: {path}: not a PEM private key ({str(err).splitlines()[0][:100]}); "
            f"make one with `edgekd keygen KEY`"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise EdgeKDError(
            f"--key: {path}: a {type(key).__name__.removeprefix('_')} key; edgekd signs with Ed25519 only"
        )
    return key


def load_public_key(path: str | Path):
    """An Ed25519 public key from a PEM or OpenSSH (``ssh-ed25519 ...``) file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key, load_ssh_public_key

    data = _read_key_file(Path(path), "public key")
    try:
        key = load_ssh_public_key(data) if data.lstrip().startswith(b"ssh-") else load_pem_public_key(data)
    except (ValueError, TypeError):
        hint = " (that is the private key; give the .pub file)" if b"PRIVATE KEY" in data else ""
        raise EdgeKDError(f"--key: {path}: not a PEM or OpenSSH public key{hint}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EdgeKDError(
            f"--key: {path}: a {type(key).__name__.removeprefix('_')} key; edgekd "
            f"checks Ed25519 signatures only"
        )
    return key


def generate_keypair(path: str | Path) -> tuple[Path, Path]:
    """Write a new Ed25519 private key to ``path`` (mode 0600) and its public key to
    ``path.pub``; refuses to overwrite either."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    private, public = Path(path), Path(f"{path}.pub")
    for existing in (private, public):
        if existing.exists():
            raise EdgeKDError(f"{existing}: exists; edgekd keygen never overwrites a key")
    key = Ed25519PrivateKey.generate()
    private.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    write_atomic(public, key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    return private, public


def sign_bundle(bundle: str | Path, key_path: str | Path) -> dict:
    """Sign ``bundle``'s manifest with the private key at ``key_path``; write ``manifest.sig``.

    The bundle must match its manifest first: a signature vouches for the files as they are.
    Returns the signature record.
    """
    bundle = Path(bundle)
    key = load_private_key(key_path)
    problems = manifest_problems(bundle)
    if problems:
        raise EdgeKDError(
            f"{bundle}: does not match its manifest ({problems[0]}"
            f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''}); "
            f"a bundle is signed only as it was built"
        )
    manifest = manifest_bytes(bundle)
    record = {
        "schema": SIGNATURE_SCHEMA,
        "algorithm": "ed25519",
        "signed_file": MANIFEST,
        "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
        "key_id": key_id(key.public_key()),
        "public_key": base64.b64encode(_raw(key.public_key())).decode("ascii"),
        "signature": base64.b64encode(key.sign(manifest)).decode("ascii"),
    }
    write_json(bundle / SIGNATURE, record)
    return record


def check_signature(bundle: str | Path, public_key_path: str | Path) -> list[str]:
    """Problems with ``bundle``'s signature under the given public key; empty when it holds.

    One line per problem, naming the file: no ``manifest.sig``, a manifest changed after
    signing, a signature by another key, or a signature that does not verify.
    """
    return _check(Path(bundle), load_public_key(public_key_path))


_SIG_FIELDS = {"signature": 64, "public_key": 32}  # decoded lengths of an Ed25519 signature, key


def read_signature(bundle: Path) -> tuple[dict | None, str | None]:
    """The parsed ``manifest.sig`` of ``bundle``, or the one-line problem with it.

    An absent file is "unsigned"; an empty, oversized, non-regular or malformed one (not JSON,
    another schema, a signature or key that is not base64 of the right length, a digest that is
    not 64 hex digits) is "invalid": never reported as signed.
    """
    sig_path = bundle / SIGNATURE
    kind = special_file(sig_path)
    if kind is None and not sig_path.exists():
        return None, f"unsigned: {SIGNATURE} is missing (sign with `edgekd sign BUNDLE --key KEY`)"
    if kind is not None:
        return None, f"invalid signature: {SIGNATURE} is {kind}, not a regular file"
    size = sig_path.stat().st_size
    if size == 0:
        return None, f"invalid signature: {SIGNATURE} is empty"
    if size > 64 << 10:
        return None, f"invalid signature: {SIGNATURE} is too large to be an edgekd signature"
    try:
        record = json.loads(sig_path.read_bytes())
        if record.get("schema") != SIGNATURE_SCHEMA or record.get("algorithm") != "ed25519":
            raise ValueError
        for field, length in _SIG_FIELDS.items():
            if len(base64.b64decode(record[field], validate=True)) != length:
                raise ValueError
        if not _HEX64.match(record["manifest_sha256"]) or not isinstance(record["key_id"], str):
            raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None, (
            f"invalid signature: {SIGNATURE} is not an {SIGNATURE_SCHEMA} ed25519 record "
            f"(JSON with a 64-byte signature and a 32-byte public key, base64)"
        )
    return record, None


def _check(bundle: Path, public) -> list[str]:
    from cryptography.exceptions import InvalidSignature

    record, problem = read_signature(bundle)
    if problem:
        return [problem]
    signature = base64.b64decode(record["signature"])
    signed_digest, signer = record["manifest_sha256"], record["key_id"]
    manifest = manifest_bytes(bundle)
    if signer != key_id(public):
        return [f"wrong signer: {SIGNATURE} was made by key {signer}, not by the given key {key_id(public)}"]
    try:
        public.verify(signature, manifest)
    except InvalidSignature:
        if hashlib.sha256(manifest).hexdigest() != signed_digest:
            return [f"signature mismatch: {MANIFEST} changed after it was signed"]
        return [f"signature mismatch: {SIGNATURE} does not verify {MANIFEST} under key {key_id(public)}"]
    if hashlib.sha256(manifest).hexdigest() != signed_digest:
        return [
            f"invalid signature: {SIGNATURE} records another manifest_sha256 than the manifest it "
            f"signs (the record was edited)"
        ]
    return []


def check_before_resign(bundle: str | Path, key_path: str | Path) -> None:
    """Before a change that will be re-signed with ``key_path``: the bundle's current signature
    must hold under that key, so re-signing never blesses a file someone else swapped in."""
    bundle = Path(bundle)
    problems = _check(bundle, load_private_key(key_path).public_key())
    if problems:
        raise EdgeKDError(
            f"{bundle}: {problems[0]}; --key re-signs only a bundle whose signature "
            f"holds under that key (check it with `edgekd verify {bundle} --key PUB`)"
        )


def signature_after_change(
    bundle: str | Path, key_path: str | Path | None, *, shown_as: str | Path | None = None
) -> str | None:
    """After the manifest of ``bundle`` (a staged copy, :mod:`edgekd.bundle.transaction`)
    changed: re-sign with ``key_path``, or remove the now-invalid ``manifest.sig``. Returns one
    line saying which (naming ``shown_as``, the bundle as the user knows it), or None when the
    bundle was not signed and no key was given."""
    bundle = Path(bundle)
    shown = Path(shown_as) if shown_as is not None else bundle
    sig_path = bundle / SIGNATURE
    if key_path is not None:
        record = sign_bundle(bundle, key_path)
        return f"signature: {shown / SIGNATURE} re-signed (key {record['key_id']})"
    if sig_path.exists() or sig_path.is_symlink():
        sig_path.unlink()
        return (
            f"signature: the manifest changed, so {shown / SIGNATURE} no longer held and was "
            f"removed; sign again with `edgekd sign {shown} --key KEY`"
        )
    return None


def release_identity(bundle: Path) -> tuple[str, str]:
    """The ``name`` and ``version`` of a bundle's (checked) manifest."""
    manifest = parse_manifest(manifest_bytes(bundle), bundle)
    return manifest["name"], manifest["version"]


def identity_problems(
    bundle: Path, *, name: str | None = None, version: str | None = None, archive: Path | None = None
) -> list[str]:
    """The release's name and version (from its manifest, which the signature covers) against
    what the user expects (``name``, ``version``) and, for a tarball, against its file name and
    top folder: a renamed release is a problem, one line each."""
    real_name, real_version = release_identity(bundle)
    release = f"{real_name}-{real_version}"
    problems = []
    if name is not None and name != real_name:
        problems.append(f"wrong release: the manifest names {real_name!r}, not the expected {name!r}")
    if version is not None and version != real_version:
        problems.append(
            f"wrong release: the manifest says version {real_version!r}, not the expected {version!r}"
        )
    if archive is not None:
        if bundle.name != release:
            problems.append(
                f"renamed release: the archive's top folder is {bundle.name!r} but its "
                f"manifest is release {release!r}"
            )
        if archive.name != f"{release}.tar.gz":
            problems.append(
                f"renamed release: {archive.name!r} holds release {release!r} (its "
                f"manifest); a release tarball is named {release}.tar.gz"
            )
    return problems


def verify_signed(
    bundle: str | Path,
    public_key_path: str | Path | None,
    *,
    name: str | None = None,
    version: str | None = None,
    archive: Path | None = None,
) -> tuple[list[str], str]:
    """:func:`~edgekd.bundle.manifest.manifest_problems`, with a public key the signature first, and
    the release's identity (:func:`identity_problems`).

    Returns the problems (one line each) and a note for the success line: the release's name
    and version, and the signature's state. Without a key an existing ``manifest.sig`` must at
    least be a well-formed record ("signed, signature not checked"); an empty or malformed one
    is a problem ("invalid signature"), never "signed".
    """
    bundle = Path(bundle)
    public = load_public_key(public_key_path) if public_key_path is not None else None
    if public is None:
        problems = manifest_problems(bundle)
        record, problem = read_signature(bundle)
        signature = [] if record is not None or problem.startswith("unsigned") else [problem]
        note = "signed, signature not checked (give --key PUB)" if record is not None else ""
    else:
        if (
            bundle.is_symlink()
            or not bundle.is_dir()
            or special_file(bundle / MANIFEST) is not None
            or not (bundle / MANIFEST).exists()
        ):
            return manifest_problems(bundle), ""  # its one line: not a bundle
        signature = _check(bundle, public)
        try:
            problems = manifest_problems(bundle)
        except EdgeKDError:
            if not signature:
                raise
            problems = []  # a manifest that fails its signature is not read further
        note = f"signature by key {key_id(public)} holds"
    try:
        identity = identity_problems(bundle, name=name, version=version, archive=archive)
        release = "release {} {}".format(*release_identity(bundle))
    except EdgeKDError:
        if not signature:
            raise
        identity, release = [], "release unknown"  # a manifest failing its signature is not read
    return signature + problems + identity, release + (f"; {note}" if note else "")
