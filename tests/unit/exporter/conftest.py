"""Fixtures for the exporter's unit tests (fast: no model export)."""

from __future__ import annotations

import os

from httpfolder import http_root  # noqa: F401  (a fixture: a local HTTP server serving a folder)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
