from __future__ import annotations

import pytest

from protocol import Session


@pytest.fixture
def pair() -> tuple[Session, Session]:
    """A sender and a receiver session sharing one key."""
    return Session(b"test-key"), Session(b"test-key")
