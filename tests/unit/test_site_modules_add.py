"""`minihpc modules add`: what it is given is checked before any cluster is
asked (minihpc.modules.check), and what it writes for Lmod."""

from __future__ import annotations

from pathlib import Path

import pytest

from minihpc import modules
from minihpc.errors import BadInput


@pytest.mark.parametrize("text", ["a;b", "x/../y", "../x", "/etc/x", "x/y/z", "$(id)", "a b", ".hidden", "x/",
                                  "x/.1", "", "é", "a" * 65, "x\ny"])
def test_a_module_name_that_is_not_a_plain_name_and_version_is_refused(text: str, tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("cowsay==6.1\n")
    with pytest.raises(BadInput) as e:
        modules.check(text, str(req))
    assert "minihpc modules add mytools/1.0" in e.value.fix or "which version" in e.value.what


def test_a_name_without_a_version_is_todays_and_removal_needs_one(tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text("cowsay==6.1\n")
    spec, r = modules.check("mytools", str(req))
    assert spec.name == "mytools" and spec.version.count(".") == 2 and r.lines == ("cowsay==6.1",)
    with pytest.raises(BadInput, match="which version"):
        modules.parse("mytools")


@pytest.mark.parametrize("content", ["--index-url http://example.invalid/simple\n", "./local-dir\n",
                                     "-e git+https://example.invalid/x.git\n", "x @ https://example.invalid/x.whl\n"])
def test_requirements_are_checked_as_runs_are_before_anything_is_built(content: str, tmp_path: Path) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text(content)
    with pytest.raises(BadInput):
        modules.check("mytools/1.0", str(req))


def test_a_missing_requirements_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no such file"):
        modules.check("mytools/1.0", str(tmp_path / "nope.txt"))


def test_the_modulefile_sets_only_its_two_paths() -> None:
    lua = modules.modulefile(modules.Spec("mytools", "1.0"), "/opt/site/local/software/mytools/1.0",
                             "/opt/site/local/software/mytools/1.0/lib/python3.13/site-packages", "cowsay==6.1",
                             "requirements.txt")
    sets = [line for line in lua.splitlines() if line.startswith(("prepend_path", "append_path", "setenv",
                                                                  "pushenv", "load", "depends_on"))]
    assert sets == ['prepend_path("PYTHONPATH", "/opt/site/local/software/mytools/1.0/lib/python3.13/site-packages")',
                    'prepend_path("PATH", "/opt/site/local/software/mytools/1.0/commands")'], lua
    assert 'whatis("Version: 1.0")' in lua and "cowsay==6.1" in lua
