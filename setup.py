"""Build script: compiles every Cython module under ``stressgrid/_core``.

Each ``stressgrid/_core/<name>.pyx`` becomes the extension ``stressgrid._core.<name>``.
Modules that link a system library list it in ``LINKED_LIBRARIES``; the HTTP/1 core
compiles llhttp's C sources in (``LLHTTP_SOURCES``: Debian's ``node-llhttp`` installs
them, and no Debian package has llhttp as a library).
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

# Extension name -> system libraries it links against (Debian package in the comment).
LINKED_LIBRARIES = {
    "http2": ["nghttp2"],  # libnghttp2-dev
}


# llhttp's sources and header, as Debian's node-llhttp installs them; each of
# LLHTTP_SHIMS includes one source (a distribution's sources must be paths inside it).
LLHTTP_SOURCES = "/usr/share/llhttp"
LLHTTP_INCLUDE = "/usr/share/include/llhttp"
LLHTTP_SHIMS = [os.path.join("stressgrid", "_core", f"llhttp_{name}.c") for name in ("parser", "api", "http")]
# Modules that see llhttp's parser struct: http1 and those that cimport its core (http1.pxd).
LLHTTP_HEADER_USERS = {"http1", "http1_client", "http_functions", "ws_client"}


def _llhttp():
    needed = [os.path.join(LLHTTP_SOURCES, name) for name in ("llhttp.c", "api.c", "http.c")]
    missing = [path for path in needed + [os.path.join(LLHTTP_INCLUDE, "llhttp.h")] if not os.path.exists(path)]
    if missing:
        raise SystemExit(f"building stressgrid needs llhttp's sources: {', '.join(missing)} not found "
                         "(apt-get install node-llhttp)")
    return LLHTTP_SHIMS


def _extensions():
    extensions = []
    for path in sorted(glob.glob(os.path.join("stressgrid", "_core", "*.pyx"))):
        name = os.path.splitext(os.path.basename(path))[0]
        extensions.append(
            Extension(
                f"stressgrid._core.{name}",
                [path] + (_llhttp() if name == "http1" else []),
                include_dirs=[LLHTTP_INCLUDE, LLHTTP_SOURCES] if name in LLHTTP_HEADER_USERS else [],
                libraries=LINKED_LIBRARIES.get(name, []),
                extra_compile_args=["-O2"],
            )
        )
    return extensions


setup(
    ext_modules=cythonize(
        _extensions(),
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
    ),
)
