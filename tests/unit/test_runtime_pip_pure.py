"""runtime_env ``pip`` as the driver reads it (ember._runtime_pip.parse_pip and its place in
ember._runtime_packages): the accepted forms, what is refused and why, and the venv name as
a hash of what is installed. No process is started."""

from __future__ import annotations

import pytest
from ember import _runtime_packages as rp
from ember import runtime_env
from ember._runtime_pip import PipSpec, parse_pip, requirement_lines


def test_a_list_a_file_and_a_dict_give_the_same_sorted_requirements(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("# pinned\nrequests==2.31  # http\n\nattrs\n")
    assert parse_pip(["requests==2.31", "attrs"]) == PipSpec(("attrs", "requests==2.31"))
    assert parse_pip(str(req)) == PipSpec(("attrs", "requests==2.31"))
    spec = parse_pip({"packages": ["b", "a", "a"], "pip_check": True, "pip_install_options": ["--no-index"]})
    assert spec == PipSpec(("a", "b"), True, ("--no-index",))
    assert parse_pip([]) is None and parse_pip(None) is None
    assert requirement_lines("x\n  # c\ny # z\n") == ["x", "y"]


def test_bad_pip_values_are_refused_naming_the_fix(tmp_path):
    with pytest.raises(ValueError, match="cannot read requirements file"):
        parse_pip(str(tmp_path / "missing.txt"))
    with pytest.raises(TypeError, match="list of requirements"):
        parse_pip(3)
    with pytest.raises(ValueError, match="'pip_version'"):
        parse_pip({"packages": ["a"], "pip_version": "==23.0"})
    with pytest.raises(ValueError, match="needs 'packages'"):
        parse_pip({"pip_check": True})
    with pytest.raises(TypeError, match="pip_install_options"):
        parse_pip({"packages": ["a"], "pip_install_options": "--no-index"})


def test_the_venv_name_depends_on_what_is_installed_and_for_which_python():
    a = PipSpec(("a", "b"))
    assert a.digest("/py") == PipSpec(("a", "b"), timeout_s=5).digest("/py")
    assert len({a.digest("/py"), a.digest("/other"), PipSpec(("a",)).digest("/py"),
                PipSpec(("a", "b"), True).digest("/py")}) == 4


def test_pip_rides_with_the_code_packages_and_a_task_replaces_the_job_one():
    spec = rp.parse({"pip": ["a"], "config": {"setup_timeout_seconds": 30}})
    assert spec == rp.PackageSpec(pip=PipSpec(("a",), timeout_s=30.0))
    job = rp.merge(None, None, None, PipSpec(("a",)))
    assert job is not None and job.pip == PipSpec(("a",))
    assert rp.merge(job, None, None, PipSpec(("b",))).pip == PipSpec(("b",))
    assert rp.merge(job, None, None).pip == PipSpec(("a",))
    assert rp.describe(job) == {"pip": {"packages": ["a"], "pip_check": False}}
    assert runtime_env.check({"pip": ["a"], "env_vars": {"X": "1"}}) == {"X": "1"}
    with pytest.raises(ValueError, match="setup_timeout_seconds"):
        rp.parse({"pip": ["a"], "config": {"setup_timeout_seconds": "soon"}})


def test_a_venv_imports_from_its_site_packages_and_what_its_pth_files_name(tmp_path):
    from ember._runtime_pip import PARENT_PTH, import_paths

    site = tmp_path / "site-packages"
    (site / "extra").mkdir(parents=True)
    (tmp_path / "src").mkdir()
    (site / "a.pth").write_text("# comment\nextra\nimport sys; sys.x = 1\n../src\nmissing\n")
    (tmp_path / "parent").mkdir()
    (site / PARENT_PTH).write_text(str(tmp_path / "parent") + "\n")  # already on the worker's path
    assert import_paths(str(site)) == [str(site), str(site / "extra"), str(tmp_path / "src")]
    assert import_paths(str(tmp_path / "nope")) == [str(tmp_path / "nope")]


def test_a_relative_wheel_path_is_made_absolute_for_the_workers(tmp_path, monkeypatch):
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "x-1.0-py3-none-any.whl").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    spec = parse_pip(["./dist/x-1.0-py3-none-any.whl", "requests", "./not-there.whl"])
    assert spec.packages == ("./not-there.whl", str(tmp_path / "dist" / "x-1.0-py3-none-any.whl"), "requests")
