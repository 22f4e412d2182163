"""The sample generators under examples/, for tests that build a sample afresh instead of reading the
committed one.

Loaded from their files: examples/ is neither a package nor on sys.path, and a test must not depend on where
it is started from.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def generator(name: str) -> ModuleType:
    """examples/<name>.py, run afresh: a test may change a generator's module state without the next test
    seeing it."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def zarafa_sample(tmp_path: Path) -> Path:
    """The Zarafa/Kopano sample tree (configs, LDIF, attachments) built under ``tmp_path/sample``."""
    return generator("make_zarafa").build(tmp_path / "sample")
