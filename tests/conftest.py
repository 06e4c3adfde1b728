import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def example(name):
    """The text of ``examples/<name>``: examples are run exactly as shipped."""
    return (EXAMPLES / name).read_text()


sys.path.insert(0, str(ROOT))
