import os
import pathlib
import sys
import sysconfig

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
# Set by 'tox -e installed': these tests are a copy outside the source tree, and test the
# stressgrid installed in this environment's site-packages.
TESTING_INSTALLED = os.environ.get("STRESSGRID_TEST_INSTALLED") == "1"


def example(name):
    """The text of ``examples/<name>``: examples are run exactly as shipped."""
    return (EXAMPLES / name).read_text()


def installed_package_directories():
    """The site-packages directories of this environment."""
    paths = sysconfig.get_paths()
    return {pathlib.Path(paths[key]).resolve() for key in ("purelib", "platlib")}


if TESTING_INSTALLED:
    import stressgrid

    _imported_from = pathlib.Path(stressgrid.__file__).resolve().parent
    if _imported_from.parent not in installed_package_directories():
        raise RuntimeError(f"STRESSGRID_TEST_INSTALLED=1, but stressgrid was imported from "
                           f"{_imported_from}, not from this environment's site-packages")
else:
    sys.path.insert(0, str(ROOT))
