"""The package as users get it: the wheel carries the license and every module, the README's
set-up names extras that exist, and the docs site knows its address."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """A wheel built from a copy of the checkout (the build leaves nothing in the checkout)."""
    pytest.importorskip("setuptools", minversion="77")  # the version pyproject's license fields need
    copy = tmp_path_factory.mktemp("checkout")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, copy / name)
    shutil.copytree(ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("dist")
    build = "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", build, str(out)], cwd=copy, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("pyluz-*.whl")
    archive = zipfile.ZipFile(path)
    yield archive
    archive.close()


def test_the_wheel_ships_the_mit_license(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(license_file) == (ROOT / "LICENSE").read_bytes()
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")
    (metadata_file,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    metadata = wheel.read(metadata_file).decode()
    assert "License-Expression: MIT" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines()


def test_the_wheel_holds_every_module_and_the_typing_marker(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    modules = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src" / "luz").rglob("*.py")}
    assert modules - names == set()
    assert "luz/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "examples/", "docs/"))]


def _extras() -> set[str]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(ROOT / "pyproject.toml", "rb") as file:
        return set(tomllib.load(file)["project"]["optional-dependencies"])


def test_the_readme_installs_only_extras_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set()
    for group in re.findall(r"(?:pyluz|\.)\[([\w,-]+)\]", readme):  # pyluz[plot], ".[dev,examples]"
        named |= set(group.split(","))
    assert {"dev", "examples"} <= named, "the README's set-up no longer installs the dev extras"
    assert named <= _extras(), f"the README names extras pyproject.toml lacks: {sorted(named - _extras())}"


def test_the_readme_warns_that_pip_install_luz_is_another_package() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "`pip install luz` installs an **unrelated** package" in readme
    assert 'python -m pip install -e ".[dev,examples]"' in readme


def test_the_docs_site_has_its_address() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    match = re.search(r"^site_url: (\S+)$", config, flags=re.MULTILINE)
    assert match is not None, "mkdocs.yml has no site_url (needed for canonical links and the sitemap)"
    assert re.fullmatch(r"https://[\w.-]+/[\w./-]*/", match.group(1)), match.group(1)
