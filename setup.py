"""setuptools needs this file only to run the cffi builder (cffi_modules)."""

from setuptools import setup

setup(cffi_modules=["build_ffi.py:ffibuilder"])
