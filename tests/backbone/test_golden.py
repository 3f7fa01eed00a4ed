"""Golden values: the feature schema hash and one fixed history's feature vector.

A model bundle names the schema hash it was trained on; if the hash (or a feature's value
for the same history) changes, the bundle must be retrained, so a change here is deliberate:
bump ``SCHEMA_REVISION`` in ``agent/features/extract.py`` and regenerate the golden file.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from agent.features.batch import miner_features
from agent.features.extract import FeatureSchema, MinerFeatures
from tests.backbone.golden_history import GOLDEN_WINDOWS, golden_history
from tests.conftest import REPO

#: sha256 of the default schema (windows 5m 1h 6h 24h 7d), computed once and pinned.
DEFAULT_SCHEMA_HASH = "fbd3cfcaa981e49499acfb22719b66e64388a69e93a9cebd6011d2374424e070"
GOLDEN = Path(__file__).with_name("golden_features.json")
#: The golden vector was written by the streaming path on x86-64: last-bit drift only.
GOLDEN_REL = 1e-12
#: The batch path (pandas rolling sums) agrees with it to the property test's tolerance
#: (std of a slowly rising series: ~3e-12 relative from cancellation in the sums).
BATCH_REL = 1e-9


@pytest.mark.parametrize("seed", ["0", "12345"])
def test_schema_hash_is_pinned_in_any_hash_seed(seed: str) -> None:
    assert FeatureSchema().hash == DEFAULT_SCHEMA_HASH
    code = "from agent.features.extract import FeatureSchema; print(FeatureSchema().hash)"
    env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == DEFAULT_SCHEMA_HASH


def test_golden_feature_vector_streaming_and_batch() -> None:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    schema = FeatureSchema(GOLDEN_WINDOWS)
    assert schema.hash == golden["schema_hash"]
    rows = golden_history()
    feats = MinerFeatures(schema, 30.0)
    for row in rows:
        feats.add(row)
    streamed = feats.values()
    batch = miner_features(pd.DataFrame(rows), schema, 30.0).iloc[-1]
    assert set(streamed) == set(golden["features"])
    for name, want in golden["features"].items():
        for got, rel in ((streamed[name], GOLDEN_REL), (float(batch[name]), BATCH_REL)):
            if want is None:
                assert math.isnan(got), name
            else:
                assert got == pytest.approx(want, rel=rel, abs=1e-300), name
