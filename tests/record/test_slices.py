"""Issue 21: audio slices, SliceCallback and the parameters that ask for them (snapshots are in
test_snapshots.py, the trimmed copy in test_trim.py)."""
from __future__ import annotations

import pytest

from .test_params import GOOD, refused


@pytest.mark.parametrize("field,value", [("SliceAudio", 14), ("SliceAudio", 61), ("SliceVideo", 4),
                                         ("SliceVideo", 61), ("RemoveSilence", 0), ("RemoveSilence", 61),
                                         ("SliceAudio", "x"), ("SliceVideo", True)])
def test_an_out_of_range_slice_parameter_is_refused_naming_it(field, value):
    assert field in refused({**GOOD, field: value})


@pytest.mark.parametrize("url", ["http://10.0.0.5/hook", "http://169.254.169.254/latest", "not a url",
                                 "ftp://example.com/x"])
def test_an_internal_or_unparsable_slice_callback_is_refused_naming_it(monkeypatch, url):
    monkeypatch.delenv("CALLBACK_ALLOWLIST", raising=False)
    message = refused({**GOOD, "SliceCallback": url})
    assert "SliceCallback" in message and "Callback:" not in message.replace("SliceCallback", "")


def test_slice_parameters_within_range_are_accepted_from_strings():
    from shared.contracts.record import RecordParams

    p = RecordParams.model_validate({**GOOD, "SliceAudio": "15", "SliceVideo": "60", "RemoveSilence": "1",
                                     "SliceCallback": "http://127.0.0.1:9/slices"})
    assert (p.SliceAudio, p.SliceVideo, p.RemoveSilence) == (15, 60, 1)
    assert RecordParams.model_validate(GOOD).RemoveSilence is None  # off by default
