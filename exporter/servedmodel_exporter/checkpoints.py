"""Named stages of a publish, where crash-safety tests can freeze the exporter and SIGKILL it.

Set ``SERVEDMODEL_EXPORTER_TEST_PAUSE_AT=<stage>``: on reaching that stage the exporter prints
``SERVEDMODEL_EXPORTER_PAUSED <stage>`` to stderr and sleeps, so a test can kill it at a known point.
"""

from __future__ import annotations

import os
import sys
import time

PAUSE_ENV = "SERVEDMODEL_EXPORTER_TEST_PAUSE_AT"
PAUSE_MARKER = "SERVEDMODEL_EXPORTER_PAUSED"

STAGING_CREATED = "staging-created"
EXPORTED = "exported"
VERIFIED = "verified"
SYNCED = "synced"
RENAMED = "renamed"
PRUNING = "pruning"
STAGES = (STAGING_CREATED, EXPORTED, VERIFIED, SYNCED, RENAMED, PRUNING)


def checkpoint(stage: str) -> None:
    if os.environ.get(PAUSE_ENV) == stage:
        print(f"{PAUSE_MARKER} {stage}", file=sys.stderr, flush=True)
        time.sleep(3600)
