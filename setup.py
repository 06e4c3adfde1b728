"""Build script: compiles every Cython module under ``stressgrid/_core``.

Each ``stressgrid/_core/<name>.pyx`` becomes the extension ``stressgrid._core.<name>``.
Modules that link a system library list it in ``LINKED_LIBRARIES``.
"""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

# Extension name -> system libraries it links against (Debian package in the comment).
LINKED_LIBRARIES = {
    "http2": ["nghttp2"],  # libnghttp2-dev
}


def _extensions():
    extensions = []
    for path in sorted(glob.glob(os.path.join("stressgrid", "_core", "*.pyx"))):
        name = os.path.splitext(os.path.basename(path))[0]
        extensions.append(
            Extension(
                f"stressgrid._core.{name}",
                [path],
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
