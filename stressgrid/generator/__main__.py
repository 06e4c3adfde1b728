"""``python -m stressgrid.generator``: run this machine's host agent."""
import sys

from .agent import HostAgent
from .config import config_from, configure_logging


def main(argv=None):
    config = config_from(argv)
    configure_logging(config.log_level, f"generator {config.generator_id}")
    return HostAgent(config).run()


if __name__ == "__main__":
    sys.exit(main())
