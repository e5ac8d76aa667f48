"""The namespace of a driver (ember._namespace): a named one as given, else an anonymous UUID
of its own. Pure: no process."""

from __future__ import annotations

import pytest
from ember._namespace import is_anonymous, job_namespace


def test_a_named_namespace_is_kept():
    assert job_namespace("colors") == "colors"
    assert not is_anonymous("colors")


def test_no_namespace_gives_a_fresh_anonymous_one():
    a, b = job_namespace(None), job_namespace(None)
    assert a != b
    assert is_anonymous(a) and is_anonymous(b)
    assert not is_anonymous(None) and not is_anonymous("")


@pytest.mark.parametrize("bad, err", [(3, TypeError), ("", ValueError), ("  ", ValueError)])
def test_a_bad_namespace_is_refused(bad, err):
    with pytest.raises(err):
        job_namespace(bad)
