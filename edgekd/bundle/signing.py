"""Signed bundles: an Ed25519 signature of ``manifest.json``, kept in ``manifest.sig``.

The manifest holds the sha256 and size of every file, so signing it signs the whole bundle:
``edgekd verify BUNDLE --key PUB`` checks the signature of the manifest, then every file against
the manifest. Anyone can still recompute a manifest after changing a file (``verify`` alone then
passes), but only the holder of the private key can sign it again.

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
from pathlib import Path

from edgekd.bundle.manifest import MANIFEST, SIGNATURE, verify_bundle
from edgekd.errors import EdgeKDError
from edgekd.files import write_atomic, write_json

__all__ = ["SIGNATURE", "SIGNATURE_SCHEMA", "generate_keypair", "sign_bundle", "check_signature",
           "check_before_resign", "signature_after_change", "rewrite_tarball", "key_id",
           "load_private_key", "load_public_key", "sign_release", "verify_signed"]

SIGNATURE_SCHEMA = "edgekd.signature/v1"
PASSWORD_ENV = "EDGEKD_KEY_PASSWORD"


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


def load_private_key(path: str | Path):
    """An Ed25519 private key from a PEM file (password from ``EDGEKD_KEY_PASSWORD`` if set)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read_key_file(Path(path), "private key")
    password = os.environ.get(PASSWORD_ENV)
    try:
        key = load_pem_private_key(data, password.encode() if password else None)
    except TypeError:
        raise EdgeKDError(f"--key: {path}: the key is encrypted; set {PASSWORD_ENV}") from None
    except ValueError as err:
        raise EdgeKDError(f"--key: {path}: not a PEM private key ({str(err).splitlines()[0][:100]}); "
                          f"make one with `edgekd keygen KEY`") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise EdgeKDError(f"--key: {path}: a {type(key).__name__.removeprefix('_')} key; edgekd "
                          f"signs with Ed25519 only")
    return key


def load_public_key(path: str | Path):
    """An Ed25519 public key from a PEM or OpenSSH (``ssh-ed25519 ...``) file."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key, load_ssh_public_key

    data = _read_key_file(Path(path), "public key")
    try:
        key = (load_ssh_public_key(data) if data.lstrip().startswith(b"ssh-")
               else load_pem_public_key(data))
    except (ValueError, TypeError):
        hint = " (that is the private key; give the .pub file)" if b"PRIVATE KEY" in data else ""
        raise EdgeKDError(f"--key: {path}: not a PEM or OpenSSH public key{hint}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise EdgeKDError(f"--key: {path}: a {type(key).__name__.removeprefix('_')} key; edgekd "
                          f"checks Ed25519 signatures only")
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
    problems = verify_bundle(bundle)
    if problems:
        raise EdgeKDError(f"{bundle}: does not match its manifest ({problems[0]}"
                          f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''}); "
                          f"a bundle is signed only as it was built")
    manifest = (bundle / MANIFEST).read_bytes()
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


def _check(bundle: Path, public) -> list[str]:
    from cryptography.exceptions import InvalidSignature

    sig_path = bundle / SIGNATURE
    if sig_path.is_symlink() or not sig_path.is_file():
        return [f"unsigned: {SIGNATURE} is missing (sign with `edgekd sign BUNDLE --key KEY`)"]
    if sig_path.stat().st_size > 64 << 10:
        return [f"bad signature: {SIGNATURE} is too large to be an edgekd signature"]
    try:
        record = json.loads(sig_path.read_bytes())
        signature = base64.b64decode(record["signature"], validate=True)
        signed_digest, signer = record["manifest_sha256"], record["key_id"]
        if record.get("schema") != SIGNATURE_SCHEMA or record.get("algorithm") != "ed25519":
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return [f"bad signature: {SIGNATURE} is not an {SIGNATURE_SCHEMA} ed25519 record"]
    manifest = (bundle / MANIFEST).read_bytes()
    if signer != key_id(public):
        return [f"wrong signer: {SIGNATURE} was made by key {signer}, not by the given key "
                f"{key_id(public)}"]
    try:
        public.verify(signature, manifest)
    except InvalidSignature:
        if hashlib.sha256(manifest).hexdigest() != signed_digest:
            return [f"signature mismatch: {MANIFEST} changed after it was signed"]
        return [f"signature mismatch: {SIGNATURE} does not verify {MANIFEST} under key "
                f"{key_id(public)}"]
    if hashlib.sha256(manifest).hexdigest() != signed_digest:
        return [f"bad signature: {SIGNATURE} records another manifest_sha256 than the manifest it "
                f"signs (the record was edited)"]
    return []


def check_before_resign(bundle: str | Path, key_path: str | Path) -> None:
    """Before a change that will be re-signed with ``key_path``: the bundle's current signature
    must hold under that key, so re-signing never blesses a file someone else swapped in."""
    bundle = Path(bundle)
    problems = _check(bundle, load_private_key(key_path).public_key())
    if problems:
        raise EdgeKDError(f"{bundle}: {problems[0]}; --key re-signs only a bundle whose signature "
                          f"holds under that key (check it with `edgekd verify {bundle} --key PUB`)")


def rewrite_tarball(bundle: str | Path) -> Path | None:
    """Re-write the ``<name>-<version>.tar.gz`` beside a build's ``bundle/`` (if there is one) so
    the release tarball carries the signature too; returns its path."""
    from edgekd.bundle.write import _write_tarball, tarball_path

    bundle = Path(bundle)
    manifest = json.loads((bundle / MANIFEST).read_text())
    path = tarball_path(bundle.parent, manifest["name"], manifest["version"])
    if bundle.name != "bundle" or not path.is_file():
        return None
    _write_tarball(bundle, path, f"{manifest['name']}-{manifest['version']}")
    return path


def signature_after_change(bundle: str | Path, key_path: str | Path | None) -> str | None:
    """After the manifest changed (``bench --update-card``): re-sign with ``key_path``, or drop
    the now-invalid ``manifest.sig``. Returns one line saying which, or None when the bundle
    was not signed and no key was given."""
    bundle = Path(bundle)
    sig_path = bundle / SIGNATURE
    if key_path is not None:
        record = sign_bundle(bundle, key_path)
        return f"signature: {sig_path} re-signed (key {record['key_id']})"
    if sig_path.exists():
        sig_path.unlink()
        return (f"signature: the manifest changed, so {sig_path} no longer held and was removed; "
                f"sign again with `edgekd sign {bundle} --key KEY`")
    return None


def sign_release(bundle: str | Path, key_path: str | Path) -> tuple[dict, Path | None]:
    """:func:`sign_bundle` under the run folder's lock, then :func:`rewrite_tarball`."""
    from edgekd.lock import run_lock

    bundle = Path(bundle)
    if not bundle.is_dir():
        raise EdgeKDError(f"{bundle}: not a bundle directory (sign the bundle folder; its tarball "
                          f"is re-written)")
    with run_lock(bundle.resolve().parent):
        record = sign_bundle(bundle, key_path)
        return record, rewrite_tarball(bundle)


def verify_signed(bundle: str | Path, public_key_path: str | Path | None) -> tuple[list[str], str]:
    """:func:`~edgekd.bundle.manifest.verify_bundle`, and with a public key the signature first.

    Returns the problems (one line each) and a note on the signature for the success line.
    """
    bundle = Path(bundle)
    if public_key_path is None:
        problems = verify_bundle(bundle)
        signed = (bundle / SIGNATURE).is_file()
        return problems, ("signed, signature not checked (give --key PUB)" if signed else "")
    public = load_public_key(public_key_path)
    if not bundle.is_dir() or not (bundle / MANIFEST).is_file():
        return verify_bundle(bundle), ""  # its one line: not a bundle
    signature = _check(bundle, public)
    try:
        problems = verify_bundle(bundle)
    except EdgeKDError:
        if not signature:
            raise
        problems = []  # a manifest that fails its signature is not read further
    return signature + problems, f"signature by key {key_id(public)} holds"
