"""Plain-text tables of ServedModels for a terminal: `servedmodel status` and `servedmodel list`."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .resolve import target_of


def table(header: list[str], rows: list[list[str]]) -> str:
    """Columns left-aligned and separated by two spaces, as kubectl prints them."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    ]
    return "\n".join(lines)


def age(timestamp: str | None, now: dt.datetime | None = None) -> str:
    """kubectl's short age: 45s, 12m, 3h, 5d."""
    if not timestamp:
        return "-"
    then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int(((now or dt.datetime.now(dt.timezone.utc)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= size):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _conditions(sm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("type"): c for c in (sm.get("status") or {}).get("conditions") or []}


def _desired(sm: dict[str, Any]) -> int:
    return (sm.get("status") or {}).get("replicas", (sm.get("spec") or {}).get("replicas", 1))


def serving(sm: dict[str, Any]) -> str:
    """The versions TF Serving reports AVAILABLE, highest first."""
    versions = (sm.get("status") or {}).get("versions") or []
    available = sorted((v["version"] for v in versions if v.get("state") == "AVAILABLE"), reverse=True)
    return ",".join(str(v) for v in available) or "-"


def list_table(items: list[dict[str, Any]], all_namespaces: bool, now: dt.datetime | None = None) -> str:
    header = (["NAMESPACE"] if all_namespaces else []) + [
        "NAME",
        "MODEL",
        "READY",
        "REASON",
        "POLICY",
        "SERVING",
        "REPLICAS",
        "AGE",
    ]
    rows = []
    for sm in sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])):
        meta, st = sm["metadata"], sm.get("status") or {}
        ready = _conditions(sm).get("Ready") or {}
        rows.append(
            ([meta.get("namespace", "")] if all_namespaces else [])
            + [
                meta["name"],
                target_of(sm).model,
                ready.get("status", "-"),
                ready.get("reason", "-"),
                st.get("versionPolicy", "-"),
                serving(sm),
                f"{st.get('readyReplicas', 0)}/{_desired(sm)}",
                age(meta.get("creationTimestamp"), now),
            ]
        )
    return table(header, rows)


def status_text(sm: dict[str, Any], now: dt.datetime | None = None) -> str:
    meta, spec, st = sm["metadata"], sm.get("spec") or {}, sm.get("status") or {}
    target = target_of(sm)
    generation, observed = meta.get("generation"), st.get("observedGeneration")
    stale = "" if generation == observed else "  (status is not up to date with the spec yet)"
    parts = [
        table(
            ["ServedModel:", f"{target.namespace}/{target.name}"],
            [
                ["Model:", f"{target.model} (TF Serving's name for it)"],
                ["Generation:", f"{generation}, observed {observed if observed is not None else '-'}{stale}"],
                ["Policy:", st.get("versionPolicy", "-")],
                [
                    "Replicas:",
                    f"{_desired(sm)} desired, {st.get('readyReplicas', 0)} ready, "
                    f"{st.get('updatedReplicas', 0)} up to date",
                ],
                ["Age:", age(meta.get("creationTimestamp"), now)],
            ],
        )
    ]
    labels: dict[int, list[str]] = {}
    for label, version in sorted((spec.get("versionLabels") or {}).items()):
        labels.setdefault(int(version), []).append(label)
    reported = {int(v["version"]): v for v in st.get("versions") or []}
    rows = []
    for version in sorted(set(reported) | set(labels), reverse=True):
        entry = reported.get(version, {})
        state = entry.get("state", "not reported")
        rows.append([str(version), state, ",".join(labels.get(version, [])) or "-", entry.get("error", "")])
    parts.append(
        table(["VERSION", "STATE", "LABELS", "ERROR"], rows) if rows else "VERSIONS  none reported yet"
    )
    conds = [
        [
            c.get("type", ""),
            c.get("status", ""),
            c.get("reason", ""),
            age(c.get("lastTransitionTime"), now),
            c.get("message", ""),
        ]
        for c in st.get("conditions") or []
    ]
    parts.append(
        table(["CONDITION", "STATUS", "REASON", "SINCE", "MESSAGE"], conds)
        if conds
        else "CONDITIONS  none yet"
    )
    if st.get("export"):
        ex = st["export"]
        parts.append(
            table(
                ["EXPORT", "JOB", "VERSION", "MESSAGE"],
                [
                    [
                        ex.get("phase", "-"),
                        ex.get("jobName", "-"),
                        str(ex.get("version", "-")),
                        ex.get("message", ""),
                    ]
                ],
            )
        )
    endpoints = st.get("endpoints") or {}
    parts.append(
        table(
            ["ENDPOINT", "IN THE CLUSTER"],
            [
                [
                    "rest",
                    endpoints.get("rest")
                    or f"http://{target.host}:{target.rest_port}/v1/models/{target.model}",
                ],
                ["grpc", endpoints.get("grpc") or f"{target.host}:{target.grpc_port}"],
                ["proxy", f"{target.proxy_path('/v1/models/' + target.model)} (on the API server)"],
            ],
        )
    )
    return "\n\n".join(parts)
