"""Named stages of a publish, where crash-safety tests can freeze the exporter and SIGKILL it.

Set ``SERVEDMODEL_EXPORTER_TEST_PAUSE_AT=<stage>``: on reaching that stage the exporter prints
``SERVEDMODEL_EXPORTER_PAUSED <stage>`` to stderr and sleeps, so a test can kill it at a known point.
With ``SERVEDMODEL_EXPORTER_TEST_PAUSE_MODE=stop`` it stops itself (SIGSTOP) instead, so a test can let
something else happen meanwhile and resume it with SIGCONT.
"""

from __future__ import annotations

import os
import signal
import sys
import time

PAUSE_ENV = "SERVEDMODEL_EXPORTER_TEST_PAUSE_AT"
PAUSE_MODE_ENV = "SERVEDMODEL_EXPORTER_TEST_PAUSE_MODE"
PAUSE_MARKER = "SERVEDMODEL_EXPORTER_PAUSED"

STAGING_CREATED = "staging-created"
EXPORTED = "exported"
VERIFIED = "verified"
SYNCED = "synced"
VERSION_CHOSEN = "version-chosen"  # under the lock, the version number picked, not yet renamed
RENAMED = "renamed"
PRUNING = "pruning"
# Publishing to S3 (objectstore.publisher): the number claimed, the first object uploaded, all uploaded
# (the commit marker not yet written).
CLAIMED = "claimed"
UPLOADING = "uploading"
UPLOADED = "uploaded"
STAGES = (
    *(STAGING_CREATED, EXPORTED, VERIFIED, SYNCED, VERSION_CHOSEN, RENAMED, PRUNING),
    *(CLAIMED, UPLOADING, UPLOADED),
)


def checkpoint(stage: str) -> None:
    if os.environ.get(PAUSE_ENV) == stage:
        print(f"{PAUSE_MARKER} {stage}", file=sys.stderr, flush=True)
        if os.environ.get(PAUSE_MODE_ENV) == "stop":
            os.environ.pop(PAUSE_ENV)  # once: a stage reached again (a retried commit) runs on
            os.kill(os.getpid(), signal.SIGSTOP)
            return
        time.sleep(3600)
