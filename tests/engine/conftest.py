from __future__ import annotations

import gc
from typing import Iterator

import pytest


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    """A test that runs an Agent settles the heap (kawa.engine.heap) of the test process: undo it."""
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)
