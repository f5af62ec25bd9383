"""The pure-NumPy twin of the compiled core: one module per concept, each with
the same names and signatures as the submodule ``bayesgrad._core.<concept>``
(docs/design.md, "Kernel namespaces").

Used when the native core is unavailable or ``BAYESGRAD_BACKEND=numpy``, and
as the reference the native kernels are tested against.
"""
from . import (  # noqa: F401
    acquisition, curvature, distributions, estimators, latent, metrics, mlp, optim, random, runtime, vi,
)

#: The concept submodules, in the order the core registers them.
CONCEPTS = ("runtime", "random", "distributions", "estimators", "mlp", "optim", "vi", "curvature", "metrics",
            "acquisition", "latent")
