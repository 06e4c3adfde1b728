"""``python -m stressgrid.cli run``: run a plan on a coordinator from the command line.

The CLI speaks to a coordinator only through its JSON API (``/api/...``), in
local mode too: ``--local`` starts a coordinator and a generator on this
machine as child processes, runs the plan through the same API, downloads the
results archive and stops both.

While a run goes on, its telemetry is drawn on stderr (redrawn in place on a
terminal, one line a second otherwise). When it ends, the results archive's
URL (or, with ``--local``, the downloaded file's path) is the only line on
stdout, so ``wget $(python -m stressgrid.cli run ...)`` fetches it.

Modules: ``exits`` (exit codes and the error that ends the command), ``options``
(flags and the coordinator address), ``plan_spec`` (the plan from flags and plan
files), ``api_client`` (the coordinator's JSON API), ``display`` (telemetry on
stderr), ``local`` (``--local``'s child processes) and ``run`` (the command,
``stressgrid.cli.run:main``). Importing the package imports none of them.
"""
