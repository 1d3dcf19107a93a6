"""Score -> FAR calibration tables, their JSON form, and threshold parsing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faceatlas.calibration import FORMAT_VERSION, Calibration, ThresholdSpec, parse_threshold
from faceatlas.errors import InvalidInputError


def small() -> Calibration:
    """Four impostor scores: FAR(.1)=1, FAR(.2)=3/4, FAR(.3)=1/2, FAR(.4)=1/4."""
    return Calibration.from_scores("m1", [0.3, 0.1, 0.4, 0.2], genuine_scores=[0.9, 0.8], source="unit", created="t0")


def test_table_by_hand() -> None:
    cal = small()
    assert cal.scores.tolist() == [0.1, 0.2, 0.3, 0.4]
    assert cal.fars.tolist() == [1.0, 0.75, 0.5, 0.25]
    assert (cal.n_impostors, cal.n_genuine, cal.model_id, cal.source, cal.created) == (4, 2, "m1", "unit", "t0")
    assert cal.min_far == 0.25
    assert cal.max_score == 0.4


def test_far_at_by_hand() -> None:
    cal = small()
    assert cal.far_at(-5.0) == 1.0
    assert cal.far_at(0.1) == 1.0
    assert cal.far_at(0.2) == pytest.approx(0.75)
    assert cal.far_at(0.25) == pytest.approx(math.sqrt(0.75 * 0.5))  # halfway in log space
    assert cal.far_at(0.4) == pytest.approx(0.25)
    assert cal.fars_at([0.1, 0.3]).tolist() == pytest.approx([1.0, 0.5])


def test_floor_beyond_measured_range_is_flagged() -> None:
    cal = small()
    assert cal.far_at(0.9) == pytest.approx(0.25)  # the floor, not an extrapolation
    assert cal.below_resolution(0.9)
    assert not cal.below_resolution(0.4)
    assert not cal.below_resolution(0.0)


def test_threshold_for_by_hand() -> None:
    cal = small()
    assert cal.threshold_for(1.0) == pytest.approx(0.1)
    assert cal.threshold_for(0.5) == pytest.approx(0.3)
    assert cal.threshold_for(0.25) == pytest.approx(0.4)
    assert cal.threshold_for(math.sqrt(0.375)) == pytest.approx(0.25)


def test_threshold_below_resolution_names_the_limit() -> None:
    with pytest.raises(InvalidInputError) as info:
        small().threshold_for(0.2)
    assert info.value.code == "far_unresolvable"
    assert "0.25" in info.value.message
    assert info.value.details["lowest_far"] == 0.25


@pytest.mark.parametrize("far", [0.0, -0.5, 1.01, float("nan"), float("inf"), "0.1", True])
def test_threshold_for_rejects_bad_far(far: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        small().threshold_for(far)  # type: ignore[arg-type]
    assert info.value.code == "invalid_input"


def test_ties_at_the_top_raise_the_floor() -> None:
    cal = Calibration.from_scores("m", [0.1, 0.5, 0.5])
    assert cal.min_far == pytest.approx(2 / 3)
    with pytest.raises(InvalidInputError, match="0.667"):
        cal.threshold_for(0.5)


def test_large_sample_is_compact_and_accurate() -> None:
    rng = np.random.default_rng(0)
    impostor = rng.normal(size=200_000)
    cal = Calibration.from_scores("m", impostor, source="synthetic")
    assert cal.scores.size <= 400
    assert cal.min_far == pytest.approx(1 / 200_000)
    assert np.all(np.diff(cal.scores) > 0) and np.all(np.diff(cal.fars) <= 0)
    for far in (0.5, 0.1, 1e-2, 1e-3, 1e-4):
        t = cal.threshold_for(far)
        assert cal.far_at(t) == pytest.approx(far, rel=1e-9)
        empirical = np.count_nonzero(impostor >= t) / impostor.size
        assert empirical == pytest.approx(far, rel=0.1)
    with pytest.raises(InvalidInputError):
        cal.threshold_for(1e-6)


def test_json_round_trip(tmp_path: Path) -> None:
    cal = Calibration.from_scores("m", np.random.default_rng(1).normal(size=5000), [1.0], source="s", created="c")
    data = json.loads(cal.to_json())
    assert data["format_version"] == FORMAT_VERSION
    back = Calibration.from_json(cal.to_json())
    assert np.array_equal(back.scores, cal.scores) and np.array_equal(back.fars, cal.fars)
    assert (back.model_id, back.n_impostors, back.n_genuine, back.source, back.created) == ("m", 5000, 1, "s", "c")
    path = tmp_path / "m.json"
    cal.save(path)
    loaded = Calibration.load(path)
    assert np.array_equal(loaded.scores, cal.scores)
    assert loaded.threshold_for(1e-3) == cal.threshold_for(1e-3)
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temporary file left behind


def test_created_defaults_to_utc_timestamp() -> None:
    cal = Calibration.from_scores("m", [0.1, 0.2])
    assert cal.created.endswith("+00:00")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(format_version=99),
        lambda d: d.pop("format_version"),
        lambda d: d.pop("fars"),
        lambda d: d.update(kind="something-else"),
        lambda d: d.update(fars=[1.0, 0.9, 0.95, 0.25]),  # not monotone
        lambda d: d.update(scores=[0.1, 0.1, 0.3, 0.4]),  # not strictly increasing
        lambda d: d.update(fars=[1.0, 0.75, 0.5, 0.1]),  # below 1/n_impostors
        lambda d: d.update(n_impostors=True),
        lambda d: d.update(model_id=""),
    ],
)
def test_from_json_rejects_bad_data(mutate: object) -> None:
    data = small().to_dict()
    mutate(data)  # type: ignore[operator]
    with pytest.raises(InvalidInputError) as info:
        Calibration.from_json(json.dumps(data))
    assert info.value.code == "invalid_input"


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        Calibration.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        Calibration.load(tmp_path / "bad.json")


@pytest.mark.parametrize("impostors", [[], [0.1, float("nan")], [[0.1, 0.2]], ["a"]])
def test_from_scores_validation(impostors: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        Calibration.from_scores("m", impostors)  # type: ignore[arg-type]
    assert info.value.code == "invalid_input"


finite = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False, allow_infinity=False, width=32)


@settings(max_examples=60, deadline=None, database=None)
@given(
    impostors=st.lists(finite, min_size=1, max_size=300),
    probes=st.lists(st.floats(min_value=-2.0, max_value=2.0, allow_nan=False), min_size=2, max_size=30),
)
def test_far_at_is_monotone_and_bounded(impostors: list[float], probes: list[float]) -> None:
    cal = Calibration.from_scores("m", impostors)
    xs = np.sort(np.asarray(probes))
    fars = cal.fars_at(xs)
    assert np.all(np.diff(fars) <= 1e-12)
    assert np.all((fars >= cal.min_far - 1e-15) & (fars <= 1.0))
    assert all(cal.below_resolution(float(x)) == (x > max(impostors)) for x in xs)


@settings(max_examples=60, deadline=None, database=None)
@given(
    impostors=st.lists(finite, min_size=1, max_size=300),
    u=st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=10),
)
def test_threshold_round_trip(impostors: list[float], u: list[float]) -> None:
    cal = Calibration.from_scores("m", impostors)
    # Target FARs spread log-uniformly over the resolvable range [min_far, 1].
    targets = sorted(math.exp(math.log(cal.min_far) * x) for x in u)
    thresholds = [cal.threshold_for(f) for f in targets]
    assert all(a >= b for a, b in zip(thresholds, thresholds[1:], strict=False))  # higher FAR -> lower threshold
    for far, t in zip(targets, thresholds, strict=True):
        assert cal.far_at(t) == pytest.approx(far, rel=1e-6)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.42, ThresholdSpec("score", 0.42)),
        (1, ThresholdSpec("score", 1.0)),
        (np.float32(0.5), ThresholdSpec("score", 0.5)),
        ("0.42", ThresholdSpec("score", 0.42)),
        (" -0.1 ", ThresholdSpec("score", -0.1)),
        ("score=0.3", ThresholdSpec("score", 0.3)),
        ("far=1e-3", ThresholdSpec("far", 1e-3)),
        ("far:1e-3", ThresholdSpec("far", 1e-3)),
        ("FAR = 0.01", ThresholdSpec("far", 0.01)),
    ],
)
def test_parse_threshold(value: str | float, expected: ThresholdSpec) -> None:
    assert parse_threshold(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "abc", "far=", "far=0", "far=1", "far=1.0", "far=2", "far=-1e-3", "far=x", "nan", "inf", "far=nan", "f=0.1",
     True, None],
)
def test_parse_threshold_rejects(value: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse_threshold(value)  # type: ignore[arg-type]
    assert info.value.code == "invalid_threshold"


def test_threshold_spec_resolve() -> None:
    cal = small()
    assert parse_threshold("0.35").resolve(None) == 0.35
    assert parse_threshold("far=0.5").resolve(cal) == pytest.approx(0.3)
    assert str(parse_threshold("far:1e-3")) == "far=0.001"
    with pytest.raises(InvalidInputError) as info:
        parse_threshold("far=0.5").resolve(None)
    assert info.value.code == "invalid_threshold"
