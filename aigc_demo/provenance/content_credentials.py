"""Content Credentials: a signed C2PA manifest in every generated file, and reading one back.

A manifest says, under the signer's certificate, that the file was created by a trained model (the
``c2pa.created`` action with IPTC's *trainedAlgorithmicMedia* source type), by which software, and with
which parameters (the ``org.aigc-studio.generation`` assertion). It is bound to the file's bytes by a hash,
so metadata is written before signing and any later change of a pixel shows as tampering. Films list the
pictures they were made from as ingredients. c2pa-python (c2pa-rs) does the format work for PNG, JPEG, GIF,
WebP and MP4; signing is offline (no timestamp authority, no OCSP, no remote manifests).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from aigc_demo.config import AppConfig, ProvenanceConfig
from aigc_demo.provenance.credentials import DEMO_SIGNER, SigningCredentials, load_credentials

SOFTWARE = "AIGC Studio"
GENERATION_LABEL = "org.aigc-studio.generation"
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".mp4": "video/mp4",
}
OFFLINE = {"verify": {"verify_trust": True, "ocsp_fetch": False, "remote_manifest_fetch": False}}


@dataclass(frozen=True)
class Verdict:
    """What a file's Content Credentials say, in words and fields."""

    state: str  # "valid" | "untrusted" | "tampered" | "invalid" | "absent" | "unreadable"
    message: str
    signer: str | None = None
    issuer: str | None = None
    actions: list[dict] = field(default_factory=list)
    generation: dict | None = None  # the signed generation parameters
    ingredients: list[str] = field(default_factory=list)  # titles of what it was made from
    failures: list[str] = field(default_factory=list)  # c2pa validation codes
    manifest: dict | None = None  # the active manifest as c2pa reads it

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _version() -> str:
    try:
        return metadata.version("aigc-demo")
    except metadata.PackageNotFoundError:
        return "0"


def media_type(path: Path) -> str:
    kind = MEDIA_TYPES.get(Path(path).suffix.lower())
    if kind is None:
        raise ValueError(f"Content Credentials cover {', '.join(sorted(MEDIA_TYPES))} files, not {path.name}")
    return kind


class ContentCredentials:
    """Signs files in place and verifies files; one per process (it holds the signer and the trust list)."""

    def __init__(self, credentials: SigningCredentials, signing: bool = True):
        import c2pa

        self.credentials = credentials
        self.signing = signing  # False: files are handed out unsigned; verifying still works
        anchors = {"trust": {"trust_anchors": credentials.trust_anchors_pem.decode()}}
        # No claim thumbnail: c2pa would embed a JPEG scaled up to 1024 px into a 5 kB emoji PNG.
        self._sign_context = c2pa.Context.from_dict(
            {**OFFLINE, **anchors, "builder": {"thumbnail": {"enabled": False}}}
        )
        self._read_context = c2pa.Context.from_dict({**OFFLINE, **anchors})
        info = c2pa.C2paSignerInfo(
            alg=c2pa.C2paSigningAlg.ES256,
            sign_cert=credentials.chain_pem,
            private_key=credentials.key_pem,
            ta_url=None,
        )
        self._signer = c2pa.Signer.from_info(info)
        self._lock = threading.Lock()  # one signer, many request threads

    @classmethod
    def from_config(cls, cfg: ProvenanceConfig) -> ContentCredentials:
        return cls(load_credentials(cfg), cfg.sign)

    # -- signing --------------------------------------------------------------------------------------
    def manifest(self, generation: dict, title: str, ingredient_ids: Sequence[str] = ()) -> dict:
        agent = {"name": SOFTWARE, "version": _version()}
        actions = [
            {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA, "softwareAgent": agent}
        ]
        if ingredient_ids:
            actions.append({"action": "c2pa.placed", "parameters": {"ingredientIds": list(ingredient_ids)}})
        return {
            "title": title,
            "claim_generator_info": [agent],
            "assertions": [
                {"label": "c2pa.actions", "data": {"actions": actions}},
                {"label": GENERATION_LABEL, "data": json.loads(json.dumps(generation, default=str))},
            ],
        }

    def sign(self, path: Path, generation: dict, ingredients: Sequence[Path] = ()) -> None:
        """Embed a signed manifest into ``path`` (rewritten in place); ``ingredients`` are the files it was
        made from (a film's pictures), each carried with its own manifest."""
        import c2pa

        path = Path(path)
        kind = media_type(path)
        ids = [f"ingredient-{i}" for i in range(len(ingredients))]
        manifest = self.manifest(generation, path.name, ids)
        part = path.with_name(path.name + ".signing")
        with self._lock, c2pa.Builder(manifest, context=self._sign_context) as builder:
            for label, ingredient in zip(ids, ingredients, strict=True):
                ingredient = Path(ingredient)
                with open(ingredient, "rb") as stream:
                    about = {"title": ingredient.name, "relationship": "componentOf", "label": label}
                    builder.add_ingredient(about, media_type(ingredient), stream)
            try:
                with open(path, "rb") as source, open(part, "w+b") as signed:
                    builder.sign(self._signer, kind, source, signed)
                part.replace(path)
            finally:
                part.unlink(missing_ok=True)

    # -- verifying ------------------------------------------------------------------------------------
    def verify(self, path: Path) -> Verdict:
        """The file's Content Credentials: valid (and whose), untrusted, tampered, invalid, absent or unreadable."""
        import c2pa

        path = Path(path)
        try:
            with (
                open(path, "rb") as stream,
                c2pa.Reader(
                    MEDIA_TYPES.get(path.suffix.lower()), stream, context=self._read_context
                ) as reader,
            ):
                store = json.loads(reader.json())
        except c2pa.C2paError.ManifestNotFound:
            return Verdict(
                "absent",
                "No Content Credentials: this file carries no C2PA manifest (never signed, or re-saved by a "
                "program that drops it).",
            )
        except c2pa.C2paError as err:
            return Verdict(
                "unreadable", f"Not a file whose Content Credentials can be read ({_reason(err)})."
            )
        return self._verdict(store)

    def _verdict(self, store: dict) -> Verdict:
        active = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
        signature = active.get("signature_info") or {}
        signer, issuer = signature.get("common_name"), signature.get("issuer")
        assertions = {a.get("label", ""): a.get("data") for a in active.get("assertions", [])}
        actions = next(
            (d.get("actions", []) for k, d in assertions.items() if k.startswith("c2pa.actions")), []
        )
        generation = assertions.get(GENERATION_LABEL)
        failures = [s.get("code", "") for s in store.get("validation_status", [])]
        state = store.get("validation_state", "")
        who = f"{signer} ({issuer})" if signer else "an unnamed signer"
        if any(code.endswith(".mismatch") for code in failures):
            verdict = (
                "tampered",
                f"Changed after it was signed by {who}: the file no longer matches its manifest.",
            )
        elif state == "Trusted":
            if self.credentials.demo and signer == DEMO_SIGNER:
                message = (
                    "Signed by this AIGC Studio instance with a demo certificate, and unchanged since. "
                    "The demo certificate is trusted here only; it is not a publicly trusted signer."
                )
            else:
                message = f"Signed by {who}, a signer this instance trusts, and unchanged since."
            verdict = ("valid", message)
        elif failures and all(code == "signingCredential.untrusted" for code in failures):
            verdict = (
                "untrusted",
                f"Signed by {who} and unchanged since, but this instance does not trust that signer.",
            )
        else:
            verdict = ("invalid", f"The manifest does not validate ({', '.join(failures) or state}).")
        return Verdict(
            *verdict,
            signer=signer,
            issuer=issuer,
            actions=actions,
            generation=generation if isinstance(generation, dict) else None,
            ingredients=[i.get("title", "") for i in active.get("ingredients", [])],
            failures=failures,
            manifest=active or None,
        )


def _reason(err: Exception) -> str:
    text = str(err).strip() or type(err).__name__
    return text[:200]


@functools.cache
def content_credentials() -> ContentCredentials:
    """The process's signer and verifier, from the AIGC_PROVENANCE_* settings."""
    return ContentCredentials.from_config(AppConfig.from_env().provenance)


def sign_if_enabled(path: Path, generation: dict, ingredients: Sequence[Path] = ()) -> Path:
    """Sign ``path`` in place unless signing is off (AIGC_PROVENANCE_SIGN=false); returns it."""
    credentials = content_credentials()
    if credentials.signing:
        credentials.sign(path, generation, ingredients)
    return path
