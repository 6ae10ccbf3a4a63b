from setuptools import setup

# All metadata lives in pyproject.toml; this file only hooks in the cffi extension.
setup(cffi_modules=["pm/_build_pmem.py:ffibuilder"])
