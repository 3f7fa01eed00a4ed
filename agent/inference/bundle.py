"""Model bundles: the manifest schema and the checks that run before anything is loaded.

A bundle is a directory holding ``manifest.json`` and the files it lists (native XGBoost
UBJ, Treelite checkpoint, compiled libraries per platform, generated C sources, the batch
shim). :func:`open_bundle` verifies the length and sha256 of every listed file and every
model's feature-schema hash before returning; nothing is unpickled, ever. Signatures,
versions per channel and atomic activation are a later layer (ARCHITECTURE "Model
bundles"); the manifest already carries the fields they need.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.errors import BundleError, BundleSignatureError

log = structlog.get_logger(__name__)

MANIFEST_NAME = "manifest.json"
BUNDLE_FORMAT = "hashpilot-bundle/1"
#: A manifest larger than this is refused before parsing (a real one is ~100 KB).
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
#: Read size for hashing files.
HASH_CHUNK_BYTES = 1 << 20


def platform_key() -> str:
    """Platform tag of compiled libraries this process can load, e.g. ``linux-x86_64``."""
    return f"{sys.platform}-{platform.machine().lower()}"


def feature_schema_hash(features: list[str] | tuple[str, ...]) -> str:
    """sha256 of the ordered feature names (canonical JSON); changes with order or names."""
    blob = json.dumps(list(features), separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Strict):
    """Digest and size of one bundle file."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    length: int = Field(ge=0)


class GoldenRow(_Strict):
    """A reference input (None = missing) and the native model's output for it."""

    x: list[float | None]
    y: float


class Intervals(_Strict):
    """Normalised-conformal interval: log p_q = log p50 + q * scale, scale = vol * sqrt(h)."""

    q10: float
    q90: float
    scale_features: list[str]
    scale_floor: float = Field(gt=0)
    scale_sqrt_h: float = Field(gt=0)


class OutputTransform(_Strict):
    """Maps the model's scale-free output back to the target: ``out * x[scale] + x[offset]``.

    Keeping the trees' outputs O(1) also keeps float32 summation error far below 1e-4.
    """

    scale: str | None = None
    offset: str | None = None

    def features(self) -> list[str]:
        """Feature names the transform reads."""
        return [f for f in (self.scale, self.offset) if f is not None]


class ModelEntry(_Strict):
    """One compiled model and how to use its output."""

    kind: Literal["hashprice", "miner"]
    target: str
    features: list[str] = Field(min_length=1)
    feature_schema_hash: str
    num_feature: int = Field(ge=1)
    threshold_type: Literal["float32", "float64"]
    leaf_output_type: Literal["float32", "float64"]
    #: role -> relative path: ``native`` (UBJ), ``checkpoint`` (Treelite), ``sources`` (zip)
    files: dict[str, str]
    #: platform key -> relative path of the compiled library
    libs: dict[str, str]
    #: hashprice only: features added to the tree output (scheduled log change)
    offset_features: list[str] = []
    #: miner only: how the output maps back to the target's unit
    output_transform: OutputTransform | None = None
    horizon_days: int | None = None
    intervals: Intervals | None = None
    unit: str = ""
    metrics: dict[str, Any] = {}
    golden: list[GoldenRow] = Field(min_length=1)
    verification: dict[str, Any] = {}


class Manifest(_Strict):
    """``manifest.json`` of a bundle."""

    format: Literal["hashpilot-bundle/1"]
    bundle_id: str = Field(min_length=1)
    version: int = Field(ge=1)
    channel: str = "dev"
    created: datetime
    expires: datetime | None = None
    min_agent_version: str = "0.1.0"
    hardware_profiles: list[str] = []
    feature_schema_hash: str
    toolchain: dict[str, Any]
    models: dict[str, ModelEntry] = Field(min_length=1)
    #: platform key -> relative path of the batch shim library; ``source`` -> its C source
    batch_shim: dict[str, str] = {}
    files: dict[str, FileEntry] = Field(min_length=1)


def bundle_schema_hash(models: dict[str, list[str]]) -> str:
    """Bundle-level schema hash over every model's name and ordered feature names."""
    blob = json.dumps({k: list(v) for k, v in sorted(models.items())}, separators=(",", ":"))
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


class VerifiedBundle:
    """A bundle whose manifest parsed and whose every listed file matched its digest."""

    def __init__(self, root: Path, manifest: Manifest) -> None:
        self.root = root
        self.manifest = manifest

    def path(self, relative: str) -> Path:
        """Absolute path of a listed file (only files the manifest lists and we verified)."""
        if relative not in self.manifest.files:
            raise BundleError(f"{relative!r} is not listed in the manifest")
        return self.root / relative

    def model(self, name: str) -> ModelEntry:
        """Return the manifest entry of model ``name``."""
        try:
            return self.manifest.models[name]
        except KeyError as err:
            known = ", ".join(sorted(self.manifest.models))
            raise BundleError(f"bundle has no model {name!r} (has: {known})") from err

    def __repr__(self) -> str:
        return f"VerifiedBundle({self.root}, id={self.manifest.bundle_id})"


def _safe_relative(root: Path, relative: str) -> Path:
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or "\\" in relative:
        raise BundleError(f"unsafe path in manifest: {relative!r}")
    path = root / Path(*pure.parts)
    if path.is_symlink():
        raise BundleError(f"bundle file is a symlink: {relative!r}")
    return path


def read_manifest(root: Path) -> Manifest:
    """Parse and validate ``manifest.json`` (no file digests checked yet)."""
    path = root / MANIFEST_NAME
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise BundleError(f"manifest is {size} bytes (limit {MAX_MANIFEST_BYTES})")
        data = json.loads(path.read_bytes())
        return Manifest.model_validate(data)
    except OSError as err:
        raise BundleError(f"cannot read {path}: {err}") from err
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"manifest is not valid JSON: {err}") from err
    except ValidationError as err:
        raise BundleError(f"manifest does not match {BUNDLE_FORMAT}: {err}") from err


def _check_references(manifest: Manifest) -> None:
    listed = set(manifest.files)
    refs: list[str] = [p for k, p in manifest.batch_shim.items()]
    for name, entry in manifest.models.items():
        refs += list(entry.files.values()) + list(entry.libs.values())
        if feature_schema_hash(entry.features) != entry.feature_schema_hash:
            raise BundleError(f"model {name}: feature_schema_hash does not match its features")
        if len(entry.features) != entry.num_feature:
            raise BundleError(
                f"model {name}: {len(entry.features)} features, num_feature {entry.num_feature}"
            )
        transform = entry.output_transform
        if transform is not None and not set(transform.features()) <= set(entry.features):
            raise BundleError(f"model {name}: transform features not in its features")
        for row in entry.golden:
            if len(row.x) != entry.num_feature:
                raise BundleError(f"model {name}: golden row has {len(row.x)} values")
    missing = sorted(set(refs) - listed)
    if missing:
        raise BundleError(f"manifest references unlisted files: {missing}")
    expected = bundle_schema_hash({k: v.features for k, v in manifest.models.items()})
    if expected != manifest.feature_schema_hash:
        raise BundleError("bundle feature_schema_hash does not match its models")


def open_bundle(root: Path | str, now: datetime | None = None) -> VerifiedBundle:
    """Verify a bundle directory completely and return it; raise on the first problem.

    ``BundleSignatureError`` for a file whose length or sha256 differs from the manifest,
    ``BundleError`` for everything else (schema, unsafe paths, expiry, references).
    """
    root = Path(root).resolve()
    manifest = read_manifest(root)
    moment = now or datetime.now(UTC)
    if manifest.expires is not None and moment > manifest.expires:
        raise BundleError(f"bundle {manifest.bundle_id} expired at {manifest.expires.isoformat()}")
    _check_references(manifest)
    for relative, entry in manifest.files.items():
        path = _safe_relative(root, relative)
        try:
            length = path.stat().st_size
        except OSError as err:
            raise BundleSignatureError(f"bundle file missing: {relative}") from err
        if length != entry.length:
            raise BundleSignatureError(f"{relative}: length {length} != manifest {entry.length}")
        if sha256_file(path) != entry.sha256:
            raise BundleSignatureError(f"{relative}: sha256 does not match the manifest")
    log.debug("bundle_verified", bundle_id=manifest.bundle_id, files=len(manifest.files))
    return VerifiedBundle(root, manifest)
