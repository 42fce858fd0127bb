"""Build hook for the optional C extension; all metadata lives in pyproject.toml.

interkube._udpfast batches UDP I/O with recvmmsg/sendmmsg (Linux). It is optional: when it
cannot be built (no compiler, not Linux), the listeners fall back to a pure-Python loop.
"""

import sys

from setuptools import Extension, setup

ext_modules: list[Extension] = []
if sys.platform.startswith("linux"):
    ext_modules.append(Extension("interkube._udpfast", ["src/interkube/_udpfast.c"], optional=True,
                                 extra_compile_args=["-O2"]))

setup(ext_modules=ext_modules)
