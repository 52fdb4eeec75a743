"""The parts of the MLServer comparison that need no MLServer: the model handed to it and
the requests each server gets. The comparison itself runs with `make bench-mlserver`."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import orjson
import pytest
import treelite

from bidder.scoring.payloads import CSV, decode_rows
from bidder.settings import DEFAULT_MODEL_PATH
from loadtests import mlserver_bench

SEED_ROW_SCORE = 0.000847571762278676


def test_the_seed_models_booster_comes_out_of_its_pickle_unexecuted(seed_model: Path) -> None:
    booster = mlserver_bench.booster_bytes(seed_model)
    # XGBoost's legacy binary format, without the pickle around it or the 1.0 header.
    assert booster.startswith(b"binf")
    with tempfile.NamedTemporaryFile(suffix=".model") as handle:
        handle.write(booster)
        handle.flush()
        model = treelite.frontend.load_xgboost_model_legacy_binary(handle.name)
    row = np.array([[2, 0, 0.0, 7.0, 3.0, 20.0, 2]], dtype=np.float32)
    [score] = np.asarray(treelite.gtil.predict(model, row)).ravel()
    assert abs(score - SEED_ROW_SCORE) < 1e-6


def test_both_servers_get_the_same_rows() -> None:
    rows = mlserver_bench.feature_rows(50, 7)
    for row in rows.tolist():
        csv = mlserver_bench.csv_request(row)
        [tensor] = orjson.loads(mlserver_bench.v2_request(row).body)["inputs"]
        assert tensor["shape"] == [1, 7]
        assert tensor["datatype"] == "FP32"
        assert decode_rows(csv.body, CSV, 7).tolist() == [tensor["data"]]


def test_the_ratio_is_taken_against_the_fastest_mlserver() -> None:
    results = [
        {"server": "model-server", "saturation_rps": 9000.0},
        {"server": "mlserver", "saturation_rps": 2000.0},
        {"server": "mlserver-pool", "saturation_rps": 1000.0},
    ]
    verdict = mlserver_bench.summary(results)
    assert verdict == {"fastest_mlserver": "mlserver", "ratio": 4.5, "target": 3.0, "met": True}


def test_without_mlserver_it_says_how_to_get_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        mlserver_bench.main(["--mlserver-venv", str(tmp_path)])
    assert exit_.value.code == 2
    assert "make bench-mlserver" in capsys.readouterr().err


def test_a_model_directory_gives_its_model_file_as_it_is() -> None:
    booster = mlserver_bench.booster_bytes(DEFAULT_MODEL_PATH)
    assert booster == (DEFAULT_MODEL_PATH / "xgboost-model.json").read_bytes()
