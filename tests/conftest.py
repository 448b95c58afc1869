"""Shared test settings.

``@pytest.mark.mnist`` marks a test that reads the real MNIST files: it is
skipped, with the reason shown in pytest's summary (``-ra``), when the files
are not on this machine (``$CNNLIB_DATA`` or the cache), because a test must
not depend on a download.
"""

import pytest

from cnnlib.data.mnist import mnist_available

MNIST_REASON = ("MNIST not found on this machine: set CNNLIB_DATA to a folder holding "
                "the four MNIST files, or run cnnlib.data.mnist.load_mnist() once online")


def pytest_configure(config):
    config.addinivalue_line("markers", "mnist: needs the real MNIST files; skipped without them")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("mnist") is not None and not mnist_available():
        pytest.skip(MNIST_REASON)
