"""Fixtures for the LLM gateway tests; helpers live in support.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from date_spark.llm.rows import RowSchema
from date_spark.testing.stub import StubServer

from .support import make_schema


@pytest.fixture
def schema() -> RowSchema:
    return make_schema()


@pytest.fixture
def stub() -> Iterator[StubServer]:
    server = StubServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
