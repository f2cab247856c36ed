"""The package itself: its version is the CMake project's, the binding module's type stubs (made by
nanobind's stubgen at build time) sit next to it and describe what the module has, and the
package is marked as typed.
"""

import inspect
import pathlib
import re

import flashcl
from flashcl import _flashcl

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_version_is_the_cmake_project_version():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert flashcl.__version__ == re.search(r"project\(flashcl\s+VERSION\s+([0-9.]+)", cmake).group(1)


def test_stubs_match_the_module():
    package = pathlib.Path(flashcl.__file__).parent
    assert (package / "py.typed").exists()
    stub = (package / "_flashcl.pyi").read_text()
    public = [name for name, value in vars(_flashcl).items() if not name.startswith("_")
              and (inspect.isclass(value) or callable(value))]
    missing = [name for name in public if not re.search(rf"^(class|def) {name}\b", stub, re.M)]
    assert not missing, f"not in _flashcl.pyi: {missing}"
