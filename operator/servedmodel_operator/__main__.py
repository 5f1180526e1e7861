"""Entry point: `servedmodel-operator` (or `python -m servedmodel_operator`)."""

from __future__ import annotations

import argparse
import logging
import sys

EPILOG = """\
examples:
  # from a laptop, against the cluster of your current kubeconfig, all namespaces
  servedmodel-operator

  # only two namespaces, JSON logs, liveness on :8080 (what the Helm chart runs)
  servedmodel-operator --namespace ml-prod --namespace ml-staging --log-format json \\
      --liveness http://0.0.0.0:8080/healthz

  # one of several replicas: the holder of the Lease acts, the others wait with warm caches
  # (what the Helm chart runs; outside a cluster name the Lease's namespace)
  servedmodel-operator --leader-elect --leader-election-namespace ml-system --metrics-port 9090

  # the same with kopf's own runner
  kopf run -m servedmodel_operator.handlers --all-namespaces --standalone

settings (environment):
  SERVEDMODEL_WORKERS                 reconciles at once (default 4)
  SERVEDMODEL_RESYNC_SECONDS          full resync period (default 300)
  SERVEDMODEL_REQUEST_TIMEOUT_SECONDS API request timeout (default 30)
  SERVEDMODEL_WATCH_TIMEOUT_SECONDS   watch restart period (default 300)
  SERVEDMODEL_MODEL_SERVER_URL        how model servers are reached (default http://{service}.{namespace}.svc:{port})
  SERVEDMODEL_ALLOWED_IMAGE_PREFIXES  comma-separated image prefixes ServedModels may run (default: any image)
  SERVEDMODEL_ALLOWED_SERVICE_ACCOUNTS
                                      comma-separated ServiceAccounts ServedModels may run as (default: any);
                                      "default" is the namespace's own. Others: reason PolicyViolation
  SERVEDMODEL_LEASE_DURATION_SECONDS  leader election: a standby takes over this long after the
                                      leader's last renewal (default 15)
  SERVEDMODEL_RENEW_DEADLINE_SECONDS  a leader that could not renew for this long exits (default 10)
  SERVEDMODEL_RETRY_PERIOD_SECONDS    how often the Lease is renewed or tried (default 2)
  POD_NAME, POD_NAMESPACE             this replica's name (in its identity) and the Lease's namespace
  KUBECONFIG                          used when not running in a cluster
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="servedmodel-operator",
        description="Run the ServedModel operator: it turns ServedModel resources into TensorFlow Serving "
        "Deployments, Services and ConfigMaps, and reports their state in the ServedModel's status.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL to serve, or '' to disable (default: %(default)s)",
    )
    parser.add_argument(
        "--leader-elect",
        action="store_true",
        help="run as one of several replicas: only the holder of a coordination.k8s.io Lease acts, the "
        "others wait and take over when it stops renewing (default: act alone)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default="",
        help="namespace of the Lease (default: POD_NAMESPACE or the service account's namespace; "
        "required outside a cluster)",
    )
    parser.add_argument(
        "--leader-election-id",
        default="servedmodel-operator",
        help="name of the Lease; replicas with the same name elect one leader (default: %(default)s)",
    )
    parser.add_argument(
        "--log-format",
        choices=["plain", "full", "json"],
        default="plain",
        help="log format (default: %(default)s; use json in clusters)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve the operator's Prometheus metrics on this port at /metrics (default: off; the Helm chart "
        "uses 9090)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import kopf

    from . import handlers  # registers the handlers
    from .leader import LeaseConfig, default_namespace
    from .settings import Settings

    if args.leader_elect:
        namespace = args.leader_election_namespace or default_namespace()
        if not namespace:
            raise SystemExit(
                "--leader-elect outside a cluster needs --leader-election-namespace (or POD_NAMESPACE)"
            )
        conf = Settings.from_env()
        try:
            handlers.LEADER_ELECTION = LeaseConfig(
                namespace=namespace,
                name=args.leader_election_id,
                identity=handlers.IDENTITY,
                lease_duration=conf.lease_duration_seconds,
                renew_deadline=conf.renew_deadline_seconds,
                retry_period=conf.retry_period_seconds,
            )
        except ValueError as exc:
            raise SystemExit(str(exc)) from None

    kopf.configure(
        verbose=args.verbose,
        log_format={"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}[
            args.log_format
        ],
    )
    logging.getLogger("servedmodel_operator").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from . import metrics

    metrics.serve(args.metrics_port)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=True,  # no kopf peering: replicas coordinate with a Lease (--leader-elect)
        liveness_endpoint=args.liveness or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
