"""Build script for the optional compiled kernels (``rscovlm._native``); everything else is in pyproject.toml.

The extension is optional: without a C compiler (or if its build fails) the package installs without it and runs
the numpy code paths, which give bitwise the same numbers (docs/metrics.md, "Speed"). Floating-point contraction
into fused multiply-adds is switched off so that the kernels round exactly like numpy.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    def build_extensions(self):
        if self.compiler.compiler_type == "msvc":
            flags = ["/O2", "/fp:precise"]
        else:
            flags = ["-O2", "-ffp-contract=off", "-fno-fast-math", "-std=c99"]
        for ext in self.extensions:
            ext.extra_compile_args = flags + list(ext.extra_compile_args or [])
        super().build_extensions()


setup(
    ext_modules=[Extension("rscovlm._native", ["rscovlm/_native.c"], optional=True)],
    cmdclass={"build_ext": BuildExt},
)
