"""``python -m coordinator_app``: the coordinator served by waitress.

See ``python -m coordinator_app --help`` and ``coordinator_app.config`` for
flags and environment variables; ``python -m coordinator_app join-token
[--rotate]`` prints (or replaces) the join token generators need. SIGTERM and Ctrl-C stop it cleanly: an
active run is aborted and its report and archive are still written.
"""
import logging
import signal
import sys

import waitress

from . import fleet_auth
from .app import create_app
from .config import config_from_args

log = logging.getLogger("coordinator_app")

_OPEN_WARNING = """
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!! WARNING: the coordinator listens on {bind} WITHOUT A TOKEN.
!! Anyone who can reach port {port} can submit plans, and plan scripts run with
!! the generators' rights. Set STRESSGRID_TOKEN (clients then send
!! 'Authorization: Bearer <token>'), or bind to 127.0.0.1.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
"""

HTTP_CONNECTION_LIMIT = 1000


def exposed_ports(config, generator_port, join_token_path):
    """One line per port bound beyond loopback, saying whether (and by what) it is protected."""
    if config.is_loopback:
        return []
    management = ("protected by the management token (STRESSGRID_TOKEN)" if config.token
                  else "NOT PROTECTED: no STRESSGRID_TOKEN, anyone who reaches it can submit plans")
    return [f"management port {config.bind}:{config.management_port} is reachable from other "
            f"machines, {management}",
            f"generator port {config.bind}:{generator_port} is reachable from other machines, "
            f"protected by the fleet's join token ({join_token_path}, CurveZMQ)"]


def main(argv=None):
    """Parse flags, start the coordinator and serve HTTP until stopped."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["join-token"]:
        return fleet_auth.command(argv[1:])
    config = config_from_args(argv)
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not config.token and not config.is_loopback:
        sys.stderr.write(_OPEN_WARNING.format(bind=config.bind, port=config.management_port))
    app = create_app(config)
    coordinator = app.extensions["stressgrid"]
    for line in exposed_ports(config, coordinator.generator_port, coordinator.join_token_path):
        log.warning("%s", line)
    try:
        server = waitress.create_server(app, host=config.bind, port=config.management_port,
                                        threads=config.http_threads, ident="stressgrid",
                                        clear_untrusted_proxy_headers=True,
                                        # poll(), not select(): a big fleet's generator
                                        # connections push descriptors past 1024.
                                        asyncore_use_poll=True,
                                        # Browser tabs and CLIs keep connections open (an event
                                        # stream each): room for many more than waitress's 100.
                                        connection_limit=HTTP_CONNECTION_LIMIT)
    except OSError:
        coordinator.stop()
        raise

    def stop(signum, frame):
        # End event streams first: waitress waits for its request threads when it closes.
        coordinator.publisher.close()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("management API on http://%s:%s, generators connect to %s, data in %s",
             config.bind, server.effective_port, coordinator.generator_endpoint, config.data_dir)
    log.info(fleet_auth.start_hint(coordinator.join_token_path, coordinator.generator_endpoint))
    try:
        server.run()  # returns (or raises) on SIGTERM / Ctrl-C
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        log.info("stopping")
        coordinator.publisher.close()
        server.close()
        coordinator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
