"""Who signs: a configured key and certificate chain, or a demo chain made on first start.

C2PA validators (c2pa-rs) accept an ES256 leaf only with: keyUsage digitalSignature (no keyCertSign), an
extended key usage they know (emailProtection; the C2PA signing EKU 1.3.6.1.4.1.62558.2.1 is carried too),
an AuthorityKeyIdentifier, and an issuer other than itself. The demo chain is a root CA and such a leaf,
written to a git-ignored folder; the root's key never leaves it. Files are signed without a timestamp
authority (offline), so they verify while the leaf is valid: it is renewed a week before it expires.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from aigc_demo.config import ProvenanceConfig

ORGANISATION = "AIGC Studio"
DEMO_SIGNER = "AIGC Studio Demo Signer"
C2PA_SIGNING_EKU = "1.3.6.1.4.1.62558.2.1"
LEAF_DAYS, ROOT_DAYS, RENEW_DAYS = 365, 3650, 7


@dataclass(frozen=True)
class SigningCredentials:
    chain_pem: bytes  # leaf first
    key_pem: bytes
    trust_anchors_pem: bytes  # the roots Verify trusts
    demo: bool  # the chain made on first start (trusted by this instance only)


def load_credentials(cfg: ProvenanceConfig) -> SigningCredentials:
    """The configured signer (AIGC_PROVENANCE_KEY / _CHAIN), else the demo chain in ``cfg.credentials_dir``."""
    extra = _pem(cfg.trust_anchors, "AIGC_PROVENANCE_TRUST_ANCHORS") if cfg.trust_anchors else b""
    if cfg.key or cfg.chain:
        if not (cfg.key and cfg.chain):
            raise ValueError("AIGC_PROVENANCE_KEY and AIGC_PROVENANCE_CHAIN are set together or not at all")
        chain = _pem(cfg.chain, "AIGC_PROVENANCE_CHAIN")
        return SigningCredentials(chain, _pem(cfg.key, "AIGC_PROVENANCE_KEY"), _root_of(chain) + extra, False)
    chain, key, root = demo_chain(Path(cfg.credentials_dir))
    return SigningCredentials(chain, key, root + extra, True)


def _pem(value: str, name: str) -> bytes:
    """PEM text as given, or the contents of the file it names."""
    if "-----BEGIN" in value:
        return value.encode()
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"{name}: {value!r} is neither PEM text nor a file")
    return path.read_bytes()


def _root_of(chain_pem: bytes) -> bytes:
    """The last certificate of a chain: the root a configured signer's files are trusted through."""
    marker = b"-----BEGIN CERTIFICATE-----"
    return marker + chain_pem.rsplit(marker, 1)[-1]


def demo_chain(folder: Path) -> tuple[bytes, bytes, bytes]:
    """(chain, leaf key, root certificate) PEMs, made once and reused; renewed when the leaf nears expiry.
    Processes starting together (the app and its tests) take turns: one makes the chain, the others read it."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _demo_chain(folder)


def _demo_chain(folder: Path) -> tuple[bytes, bytes, bytes]:
    from cryptography import x509

    paths = {name: folder / f"{name}.pem" for name in ("chain", "signer-key", "root", "root-key")}
    if all(p.is_file() for p in paths.values()):
        leaf = x509.load_pem_x509_certificate(paths["chain"].read_bytes())
        if leaf.not_valid_after_utc > _now() + dt.timedelta(days=RENEW_DAYS):
            return paths["chain"].read_bytes(), paths["signer-key"].read_bytes(), paths["root"].read_bytes()
        root_pem, root_key_pem = paths["root"].read_bytes(), paths["root-key"].read_bytes()
    else:
        root_pem, root_key_pem = _new_root()
    chain, key = _new_leaf(root_pem, root_key_pem)
    for name, data in (("chain", chain), ("signer-key", key), ("root", root_pem), ("root-key", root_key_pem)):
        paths[name].write_bytes(data)
        if name.endswith("key"):
            paths[name].chmod(0o600)
    return chain, key, root_pem


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(sign_certificates: bool):
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=not sign_certificates, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=sign_certificates,
        crl_sign=sign_certificates, encipher_only=False, decipher_only=False,
    )  # fmt: skip


def _pem_pair(cert, key) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _new_root() -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("AIGC Studio Demo Root CA")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(hours=1))  # clock skew
        .not_valid_after(_now() + dt.timedelta(days=ROOT_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(sign_certificates=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return _pem_pair(cert, key)


def _new_leaf(root_pem: bytes, root_key_pem: bytes) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

    root = x509.load_pem_x509_certificate(root_pem)
    root_key = serialization.load_pem_private_key(root_key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    root_ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    uses = [ObjectIdentifier(C2PA_SIGNING_EKU), ExtendedKeyUsageOID.EMAIL_PROTECTION]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(DEMO_SIGNER))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(hours=1))
        .not_valid_after(_now() + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(sign_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(uses), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(root_ski), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )
    leaf_pem, key_pem = _pem_pair(cert, key)
    return leaf_pem + root_pem, key_pem
