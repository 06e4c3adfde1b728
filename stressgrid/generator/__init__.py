"""The generator host: a host agent and one uvloop worker process per core.

``python -m stressgrid.generator`` runs the host agent (``agent.HostAgent``).
It registers with the coordinator over ZeroMQ, starts the workers
(``python -m stressgrid.generator.worker``), splits every cohort among them,
merges their metric deltas with the host's own utilization and pushes one
telemetry message a second. Modules:

- ``config``: command line and environment.
- ``limits``: the open-file limit and how many devices it lets the host hold.
- ``cohorts``: exact splitting of cohorts among workers and the book of what
  each worker runs.
- ``supervisor``: worker processes: start, notice death, restart, stop.
- ``coordinator_link``: registration, heartbeats and coordinator liveness.
- ``host_metrics``: CPU, network and TCP retransmit samples of the host.
- ``agent``: the event loop tying them together.
- ``worker``: the worker process.
"""
