"""Bundle checks run before anything loads: digests, paths, schema hashes, expiry, golden rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.errors import BundleError, BundleSignatureError
from agent.inference import model as model_mod
from agent.inference.bundle import open_bundle, platform_key, sha256_file
from agent.inference.model import load_model


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def _write(root: Path, manifest: dict) -> None:
    (root / "manifest.json").write_text(json.dumps(manifest))


def _relist(root: Path, manifest: dict, rel: str) -> None:
    path = root / rel
    manifest["files"][rel] = {"sha256": sha256_file(path), "length": path.stat().st_size}


def test_a_flipped_byte_is_refused(bundle_copy):
    lib = bundle_copy / _manifest(bundle_copy)["models"]["hashprice_h1"]["libs"][platform_key()]
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0x01
    lib.write_bytes(bytes(data))
    with pytest.raises(BundleSignatureError, match="sha256"):
        open_bundle(bundle_copy)


def test_a_missing_file_is_refused(bundle_copy):
    (bundle_copy / "models" / "miner_power" / "model.tl").unlink()
    with pytest.raises(BundleSignatureError, match="missing"):
        open_bundle(bundle_copy)


@pytest.mark.parametrize("bad", ["../outside.so", "/etc/passwd", "models/../../x"])
def test_unsafe_paths_are_refused(bundle_copy, bad):
    m = _manifest(bundle_copy)
    m["files"][bad] = {"sha256": "0" * 64, "length": 1}
    _write(bundle_copy, m)
    with pytest.raises(BundleError, match="unsafe path"):
        open_bundle(bundle_copy)


def test_feature_schema_tampering_is_refused(bundle_copy):
    m = _manifest(bundle_copy)
    feats = m["models"]["hashprice_h7"]["features"]
    feats[0], feats[1] = feats[1], feats[0]
    _write(bundle_copy, m)
    with pytest.raises(BundleError, match="feature_schema_hash"):
        open_bundle(bundle_copy)


def test_expired_bundle_is_refused(bundle_copy):
    m = _manifest(bundle_copy)
    m["expires"] = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    _write(bundle_copy, m)
    with pytest.raises(BundleError, match="expired"):
        open_bundle(bundle_copy)


def test_unknown_manifest_fields_and_garbage_are_refused(bundle_copy):
    m = _manifest(bundle_copy)
    m["surprise"] = 1
    _write(bundle_copy, m)
    with pytest.raises(BundleError, match="does not match"):
        open_bundle(bundle_copy)
    (bundle_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        open_bundle(bundle_copy)


def test_golden_mismatch_fails_the_self_check(bundle_copy):
    m = _manifest(bundle_copy)
    m["models"]["miner_power"]["golden"][0]["y"] += 0.01
    _write(bundle_copy, m)
    bundle = open_bundle(bundle_copy)  # digests are fine ...
    with pytest.raises(BundleError, match="golden row 0"):
        load_model(bundle, "miner_power")  # ... but the model disagrees with its golden row


def test_unloadable_library_falls_back_to_gtil_once(bundle_copy, monkeypatch, caplog):
    m = _manifest(bundle_copy)
    rel = m["models"]["hashprice_h1"]["libs"][platform_key()]
    (bundle_copy / rel).write_bytes(b"\x7fELF not really a library")
    _relist(bundle_copy, m, rel)
    _write(bundle_copy, m)
    monkeypatch.setattr(model_mod, "_fallback_logged", set())
    warnings = []
    monkeypatch.setattr(model_mod.log, "warning", lambda event, **kw: warnings.append(event))
    bundle = open_bundle(bundle_copy)
    first = load_model(bundle, "hashprice_h1")
    second = load_model(bundle, "hashprice_h1")
    assert first.backend == second.backend == "gtil"
    assert warnings == ["compiled_model_unavailable_using_gtil"]  # logged once
    golden = bundle.model("hashprice_h1").golden
    assert first.predict_row(golden[0].x) == pytest.approx(golden[0].y, abs=1e-4)
    with pytest.raises(BundleError):
        load_model(bundle, "nope")
