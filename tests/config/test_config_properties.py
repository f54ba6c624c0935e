"""Property-based tests of the loader: any input yields a ConfigReport (a config or problem
lines), never an exception or a hang.

Inputs are any JSON-ish values, configs whose every known field gets a random value (so the
validators themselves are exercised, not just the "expected an object" checks), and random bytes
written to a file for ``load_config``. A validator bug that the loader catches shows up as a
"cannot be validated" line, which these tests also count as a failure.
"""

import json
import math
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trakr.config import CameraConfig, CommonConfig, ConfigReport, TrakrOptions, load_config, parse_config

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["NA", "na", "", "0", "1", "true", "-1", "1e999", "nan", "0.1,0.2", "x,y", "1,2,3", "²"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=20,
)
values = st.one_of(scalars, scalars, json_values)
"""A field value: mostly a scalar of any type, sometimes any JSON."""
number = st.integers(-5, 5000) | st.floats(allow_nan=True, allow_infinity=True)
points = st.lists(
    st.one_of(
        st.builds(lambda x, y: f"{x},{y}", number, number),
        st.lists(number | st.booleans(), min_size=1, max_size=3),
        number,
        st.booleans(),
        values,
    ),
    max_size=6,
)
"""Polygon points: "x,y" strings, [x, y] pairs, and the wrong shapes (numbers, booleans, nests)."""
addresses = (
    st.sampled_from(["0", "rtsp://10.0.0.5/x", "rtsp://u:p@h/x", "/nonexistent.mp4", "", " "])
    | st.text(max_size=20)
    | st.builds(lambda n: "9" * n, st.integers(1, 400))
    | st.builds(lambda n: "a" * n, st.integers(250, 3000))
    | values
)


def _fields_of(model) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _section(model, overrides: dict | None = None, required: tuple = ()) -> st.SearchStrategy:
    """A dict with ``required`` and a random subset of ``model``'s other fields, random values."""
    value_for = {k: values for k in _fields_of(model)} | (overrides or {})
    return st.fixed_dictionaries(
        {k: value_for[k] for k in required}, optional={k: v for k, v in value_for.items() if k not in required}
    )


camera = _section(
    CameraConfig,
    {
        "CameraId": st.integers(min_value=-2, max_value=5) | values,
        "Address": addresses,
        "ROI": points | values,
        "points": points,
        "roi_config": st.dictionaries(
            st.text(max_size=5), st.fixed_dictionaries({}, optional={"points": points, "detections": values})
        )
        | values,
    },
    required=("CameraId", "Address"),
)
trakr_section = st.fixed_dictionaries(
    {},
    optional={
        name: _section(f.annotation) | values
        for name, f in TrakrOptions.model_fields.items()
        if hasattr(f.annotation, "model_fields")
    },
)
configs = st.fixed_dictionaries(
    {},
    optional={
        "common": st.one_of(_section(CommonConfig), _section(CommonConfig), values),
        "cameras": st.one_of(st.lists(camera, min_size=1, max_size=4), st.lists(camera | values, max_size=4), values),
        "trakr": st.one_of(trakr_section, trakr_section, values),
    },
)


def _check(report: ConfigReport, raw: object = None) -> None:
    assert isinstance(report, ConfigReport)
    lines = [str(p) for p in report.problems]  # every problem prints, shortly
    assert all(len(line) < 2000 for line in lines)
    assert not [line for line in lines if "cannot be validated" in line], lines
    if report.config is None:
        assert report.errors, "no config and no error"
        return
    for cam in report.config.cameras:  # what runs is finite and resolved
        assert math.isfinite(cam.cam_delay) and 0 <= cam.cam_delay <= 3600
        assert cam.camera_id >= 0
    if isinstance(raw, dict) and isinstance(raw.get("cameras"), list):
        # every listed camera either runs or is reported
        assert len(report.config.cameras) + len(report.invalid_cameras) == len(raw["cameras"])
    assert report.runnable == (not report.fatal and (bool(report.config.cameras) or not report.invalid_cameras))


@SETTINGS
@given(json_values)
def test_any_json_value_gives_a_report(raw):
    _check(parse_config(raw), raw)


@SETTINGS
@given(configs)
def test_any_config_shaped_document_gives_a_report(raw):
    _check(parse_config(raw), raw)
    _check(parse_config(raw, camera_list="sample_cameras"))


def _mutate(data: bytes) -> st.SearchStrategy:
    """``data`` with one byte replaced by up to 3 random ones (bad UTF-8, broken JSON...)."""
    return st.tuples(st.integers(0, max(len(data) - 1, 0)), st.binary(max_size=3)).map(
        lambda t: data[: t[0]] + t[1] + data[t[0] + 1 :]
    )


config_bytes = configs.map(lambda c: json.dumps(c).encode())
file_contents = st.binary(max_size=300) | config_bytes | config_bytes.flatmap(_mutate)


@SETTINGS
@given(file_contents)
def test_any_file_content_gives_a_report(content):
    fd, path = tempfile.mkstemp(suffix=".json")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        _check(load_config(path))
    finally:
        os.unlink(path)
