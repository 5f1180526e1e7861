"""Runs the Argo CD health check of dist/gitops/ the way Argo CD does: Lua 5.1, `obj` a global, `hs` returned.

Argo CD runs health checks in gopher-lua (Lua 5.1) with the base, table, string and math libraries; the
same script runs here in the reference Lua 5.1 interpreter (lupa's lua51 module), with the libraries Argo
CD does not give a health check removed, so a script that leans on them fails here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PATCH = ROOT / "dist" / "gitops" / "argocd-cm-health-patch.yaml"
HEALTH_KEY = "resource.customizations.health.servedmodel.io_ServedModel"
ARGOCD_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def patch_script() -> str:
    """The Lua as the patch file ships it."""
    return yaml.safe_load(PATCH.read_text())["data"][HEALTH_KEY]


def health(script: str, obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) the script returns for `obj`, a ServedModel as the API server returned it."""
    from lupa import lua51

    lua = lua51.LuaRuntime(register_eval=False, register_builtins=False)
    assert lua.eval("_VERSION") == "Lua 5.1"
    lua.execute("io, os, debug, package, require, dofile, loadfile, load, loadstring = nil")
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(script)
    assert hs is not None, "the health check returned nothing"
    status, message = hs["status"], hs["message"]
    assert status in ARGOCD_STATUSES, f"not an Argo CD health status: {status!r}"
    assert isinstance(message, str) and message, f"no message with {status}"
    return status, message
