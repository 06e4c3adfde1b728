"""The Cython hot path: each ``<name>.pyx`` here is compiled to the extension module
``stressgrid._core.<name>`` (``setup.py``).

Importing this package (``import stressgrid`` does) checks that every one is compiled, so
that a source tree before its build step fails here, in one line saying what to run,
instead of with a bare ``ModuleNotFoundError`` deep in an import chain.
"""
import importlib.machinery
import pathlib

_DIRECTORY = pathlib.Path(__file__).resolve().parent


def _uncompiled_modules(directory):
    """The names of the ``.pyx`` files in ``directory`` with no extension module beside them."""
    return sorted(source.stem for source in directory.glob("*.pyx")
                  if not any((directory / f"{source.stem}{suffix}").exists()
                             for suffix in importlib.machinery.EXTENSION_SUFFIXES))


def _not_compiled_message(directory, missing):
    """One line: which modules are not compiled, where, and what to run."""
    root = directory.parents[1]
    modules = ", ".join(f"{name}.pyx" for name in missing)
    if (root / "setup.py").is_file():
        return (f"stressgrid in the source tree {root} is not compiled ({modules}): run "
                f"'pip install -e .' or 'make' in {root}")
    return (f"stressgrid in {directory.parent} is not compiled ({modules}): reinstall it "
            f"(pip install --force-reinstall)")


_missing = _uncompiled_modules(_DIRECTORY)
if _missing:
    raise ImportError(_not_compiled_message(_DIRECTORY, _missing))
