"""Build the project's wheel into DIR from the in-place build (``pip wheel
--no-build-isolation``: seconds, the compiled objects are reused), unless DIR already
holds a stressgrid wheel newer than every source file. tox's ``py3`` and ``installed``
environments share the one wheel this way: building it again in ``installed`` would
re-cythonize every module (Cython's own ``.pxd`` files there are newer than the ``.c``
files) for nothing.

    python .ci/build_wheel.py DIR
"""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
GENERATED = {".c", ".so", ".pyc", ".html"}


def newest_source():
    files = [ROOT / "setup.py", ROOT / "pyproject.toml"]
    for package in ("stressgrid", "coordinator_app"):
        files += [path for path in (ROOT / package).rglob("*") if path.is_file() and path.suffix not in GENERATED]
    return max(path.stat().st_mtime for path in files)


def main(out):
    wheels = sorted(out.glob("stressgrid-*.whl"), key=lambda wheel: wheel.stat().st_mtime)
    if wheels and wheels[-1].stat().st_mtime > newest_source():
        print(f"{wheels[-1]}: up to date")
        return
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(ROOT)], check=True)


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]))
