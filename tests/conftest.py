"""Test session setup.

Environment variables must be set before triton / neurodsl are imported:
* ``TRITON_INTERPRET=1`` lets ``backend="triton"`` run on CPU through the Triton interpreter;
* ``NEURODSL_CACHE_DIR`` points the kernel cache at a private temp dir for this session.
"""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TRITON_INTERPRET", "1")
# Tests start fresh processes in other working directories; a relative PYTHONPATH entry (``PYTHONPATH=.``, how
# the project runs uninstalled) would not find neurodsl there.
if os.environ.get("PYTHONPATH"):
    os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in os.environ["PYTHONPATH"].split(os.pathsep)
                                               if p)
_CACHE_DIR = tempfile.mkdtemp(prefix="neurodsl-test-cache-")
os.environ["NEURODSL_CACHE_DIR"] = _CACHE_DIR
atexit.register(shutil.rmtree, _CACHE_DIR, ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci", max_examples=12, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile(
    "long", max_examples=200, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.load_profile(os.environ.get("NEURODSL_HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs CUDA (skipped without it)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def cache_dir():
    """The session's kernel cache directory."""
    return _CACHE_DIR
