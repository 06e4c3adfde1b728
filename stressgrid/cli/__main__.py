"""``python -m stressgrid.cli``."""
import sys

from .run import main

sys.exit(main())
