"""Whether the notebook's kernel is one that can run it: the check its first import cell makes before anything else.

A kernel started by another Jupyter than the project's (``jupyter lab`` typed in a shell, say) runs another Python,
which usually lacks numba or SciPy; the notebook would then stop deep in an import with a bare ModuleNotFoundError.
``require_project_packages()`` stops it at once with a sentence that names the Python the kernel runs on and how to
open the notebook with the project's own (``make notebook``). This module imports nothing but the standard library,
so that the check itself cannot fail that way (nor can importing ``study``, whose ``__init__`` imports nothing).
"""

import importlib.util
import sys

# What the notebook imports, directly or through the project's modules: the first block of requirements.txt, by the
# names they are imported under (tests/test_make_notebook.py holds the two lists together).
PROJECT_PACKAGES = ("numpy", "numba", "pandas", "matplotlib", "tqdm", "joblib", "threadpoolctl", "scipy")


class WrongKernelError(ModuleNotFoundError):
    """The kernel's Python lacks packages the notebook imports."""


def missing_packages(packages=PROJECT_PACKAGES):
    """The names among ``packages`` that this Python cannot import (found without importing them)."""
    return [name for name in packages if importlib.util.find_spec(name) is None]


def require_project_packages(packages=PROJECT_PACKAGES):
    """Return None if this Python can import every one of ``packages``; otherwise raise WrongKernelError, saying which
    Python this is, what it lacks and how to open the notebook with the project's kernel."""
    missing = missing_packages(packages)
    if missing:
        raise WrongKernelError(
            f"This kernel runs on {sys.executable}, which lacks {', '.join(missing)}: open the notebook with "
            f"`make notebook` in the repository, which installs the project's packages into .venv and starts "
            f"Jupyter Lab with that Python's own kernel.", name=missing[0])
