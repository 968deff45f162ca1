"""The package version, in a module of its own so that the report and the command line can name it
without importing the package root (which loads the facade)."""

from __future__ import annotations

__version__ = "0.1.0"
