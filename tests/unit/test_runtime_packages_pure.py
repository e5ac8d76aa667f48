"""The code-shipping part of runtime_env (ember._runtime_packages): checking the keys,
merging a task's own over what it inherits, the top folder of a zip, and packing with
excludes and the size limit. No process is started (packing reads temp files only)."""

from __future__ import annotations

import io
import zipfile

import pytest
from ember import _runtime_packages as rp
from ember._job_package import WorkingDirTooLarge


def test_parse_keeps_paths_and_refuses_what_cannot_be_shipped():
    assert rp.parse(None) is None and rp.parse({"env_vars": {"A": "1"}}) is None
    spec = rp.parse({"working_dir": "/w", "py_modules": ["/m/pkg", "/m/one.py"], "excludes": ["*.log"]})
    assert spec == rp.PackageSpec("/w", ("/m/pkg", "/m/one.py"), ("*.log",))
    import json  # a module is shipped from its file

    assert rp.parse({"py_modules": [json]}).py_modules[0].endswith("json")
    with pytest.raises(ValueError, match="remote URI"):
        rp.parse({"working_dir": "s3://bucket/code.zip"})
    with pytest.raises(ValueError, match="wheel"):
        rp.parse({"py_modules": ["/x/pkg-1.0-py3-none-any.whl"]})
    with pytest.raises(TypeError, match="py_modules"):
        rp.parse({"py_modules": "/m/pkg"})
    with pytest.raises(TypeError, match="excludes"):
        rp.parse({"working_dir": "/w", "excludes": "*.log"})
    with pytest.raises(ValueError, match="excludes applies"):
        rp.parse({"excludes": ["*.log"]})


def test_merge_replaces_key_by_key():
    a, b, c = (rp.Package(d, None, False) for d in "abc")
    job = rp.PackageSet(a, (b,))
    assert rp.merge(job, None, None) == job
    assert rp.merge(job, c, None) == rp.PackageSet(c, (b,))
    assert rp.merge(job, None, (c,)) == rp.PackageSet(a, (c,))
    assert rp.merge(None, None, None) is None
    assert rp.merge(None, None, ()) is None


def test_describe_names_packages_by_hash():
    assert rp.describe(None) == {}
    both = rp.PackageSet(rp.Package("aa", None, False), (rp.Package("bb", None, False),))
    assert rp.describe(both) == {"working_dir": "ember://aa.zip", "py_modules": ["ember://bb.zip"]}


def test_top_dir_of_a_zipped_folder():
    assert rp.top_dir(["proj/", "proj/a.py", "proj/b/c.py"]) == "proj"
    assert rp.top_dir(["a.py", "b.py"]) == ""
    assert rp.top_dir(["a.py"]) == ""
    assert rp.top_dir(["p/a.py", "q/b.py"]) == ""


def test_pack_leaves_out_excludes_and_is_the_same_for_the_same_files(tmp_path):
    (tmp_path / "keep.py").write_text("X = 1\n")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text("noise")
    first = rp.pack_path(str(tmp_path), "working_dir", ("logs/",))
    assert zipfile.ZipFile(io.BytesIO(first)).namelist() == ["keep.py"]
    (tmp_path / "keep.py").touch()  # a new mtime: the same content packs to the same bytes
    assert rp.pack_path(str(tmp_path), "working_dir", ("logs/",)) == first
    pkg = rp.pack_path(str(tmp_path), "py_modules", ("logs/",))
    assert zipfile.ZipFile(io.BytesIO(pkg)).namelist() == [f"{tmp_path.name}/keep.py"]


def test_pack_refuses_too_large_and_missing(tmp_path):
    (tmp_path / "big.bin").write_bytes(__import__("os").urandom(64 << 10))
    with pytest.raises(WorkingDirTooLarge, match="big.bin.*excludes"):
        rp.pack_path(str(tmp_path), "working_dir", (), limit=16 << 10)
    with pytest.raises(ValueError, match="not a directory"):
        rp.pack_path(str(tmp_path / "nope"), "working_dir", ())
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a valid zip"):
        rp.pack_path(str(tmp_path / "bad.zip"), "working_dir", ())
