"""Shared pytest fixtures."""

import os
import tempfile

import pytest
import torch

# Tests never write into the user's refseg home (~/refseg-book): one empty home for the session.
os.environ["REFSEG_HOME"] = tempfile.mkdtemp(prefix="refseg_home_")


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's torch work on one thread: on 2 shared cores, more threads only spin against
    each other (OpenMP barriers under oversubscription)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
