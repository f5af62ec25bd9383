"""MultivariateNormal(loc, scale_tril): the one family with a dense event
covariance (pathwise x = loc + L z; triangular solves for log_prob/score).
"""
from __future__ import annotations

import numpy as np

from .. import _backend
from .. import _checks as C
from ._base import LOG_2PI, Distribution


def _tri_solve(L, v, batch, trans=False):
    """L^-1 v (or L^-T v) for v ``(*lead, *batch, k)`` and lower-triangular L ``(*batch, k, k)``."""
    from scipy.linalg import solve_triangular

    k = v.shape[-1]
    n_lead = v.ndim - len(batch) - 1
    lead = v.shape[:n_lead]
    v2 = v.reshape((-1,) + tuple(batch) + (k,))
    if not batch:
        sol = solve_triangular(L, v2.T, lower=True, trans=1 if trans else 0, check_finite=False).T
        return sol.reshape(v.shape)
    Lb = np.broadcast_to(L, tuple(batch) + (k, k))
    if trans:
        Lb = np.swapaxes(Lb, -1, -2)
    rhs = np.moveaxis(v2, 0, -1)  # (*batch, k, N)
    sol = np.linalg.solve(Lb, rhs)
    return np.moveaxis(sol, -1, 0).reshape(lead + tuple(batch) + (k,))


class MultivariateNormal(Distribution):
    """The multivariate normal distribution with a Cholesky-factor parameter.

    The batch shapes of the two broadcast to ``batch_shape``. Pathwise:
    x = loc + L z. ``score``/``rsample_vjp`` w.r.t. ``scale_tril`` are lower
    triangular.

    Parameters
    ----------
    loc : array_like, shape ``(*batch, k)``, the mean
    scale_tril : array_like, shape ``(*batch, k, k)``, lower triangular with a
        positive diagonal: the covariance is L L^T
    """

    params = ("loc", "scale_tril")
    reparam = "pathwise"
    event_ndim = 1

    def __init__(self, loc, scale_tril):
        m = C.as_array(loc, "loc", min_ndim=1)
        L = C.as_array(scale_tril, "scale_tril", min_ndim=2)
        k = m.shape[-1]
        if L.shape[-2:] != (k, k):
            raise ValueError(f"scale_tril must have shape (..., {k}, {k}) to match loc {m.shape}, got {L.shape}")
        if np.any(np.triu(L, 1) != 0):
            raise ValueError("scale_tril must be lower triangular")
        if np.any(np.diagonal(L, axis1=-2, axis2=-1) <= 0):
            raise ValueError("scale_tril must have a positive diagonal")
        self.dtype = C.result_dtype(m, L)
        self.loc = np.asarray(m, dtype=self.dtype, order="C")
        self.scale_tril = np.asarray(L, dtype=self.dtype, order="C")
        self._param_shapes = {"loc": m.shape, "scale_tril": L.shape}
        try:
            self.batch_shape = np.broadcast_shapes(m.shape[:-1], L.shape[:-2])
        except ValueError as exc:
            raise ValueError(f"parameter shapes do not broadcast: loc {m.shape}, scale_tril {L.shape}") from exc
        self.event_shape = (k,)

    def sample(self, n, seed=0, stream=0, out=None):
        """Draw ``n`` samples from the Philox stream ``(seed, stream)``.

        Parameters
        ----------
        n : int >= 0
        seed : int in [0, 2**64) or None
        stream : int in [0, 2**63)
        out : optional array of the returned shape and dtype, written in place

        Returns
        -------
        ``(n, *batch_shape, k)`` array of the parameters' dtype
        """
        out = self._out(n, out)
        seed, stream = self._seed_stream(seed, stream)
        if out.size:
            z = _backend.empty(out.shape, self.dtype)
            _backend.kernels().random.fill_normal(z, seed, stream, 0)
            # one factor: z L^T as one BLAS product (einsum's loop took 16 ms for 20000 x 50 values, 6 now)
            if self.scale_tril.ndim == 2:
                np.matmul(z, self.scale_tril.T, out=out)
            else:
                np.matmul(self.scale_tril, z[..., None], out=out[..., None])
            out += self.loc
        return out

    def _w(self, x):
        return _tri_solve(self.scale_tril, x - self.loc, self.batch_shape)

    def _logdiag(self):
        return np.log(np.diagonal(self.scale_tril, axis1=-2, axis2=-1))

    def log_prob(self, x):
        """Log density (nats) at ``x``; -inf where a coordinate of x is infinite.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape, k)`` array

        Returns
        -------
        ``(*sample_shape, *batch_shape)`` array
        """
        x = self._x(x)
        at_inf = np.any(np.isinf(x), axis=-1)
        if at_inf.any():  # the triangular solve would give inf - inf there
            x = np.where(at_inf[..., None], 0, x).astype(x.dtype)
        w = self._w(x)
        k = self.event_shape[0]
        with np.errstate(over="ignore", invalid="ignore"):
            lp = -0.5 * np.sum(w * w, -1) - np.sum(self._logdiag(), -1) - 0.5 * k * LOG_2PI
        # NaN only where the solve overflowed (inf * 0 in back substitution): the distance is infinite there
        return np.where(at_inf | np.isnan(lp), -np.inf, lp).astype(self.dtype)

    def score(self, x):
        """Gradients of ``log_prob(x)`` with respect to each parameter.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape, k)`` array

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}, summed over the dimensions a parameter was broadcast along
        """
        x = self._x(x)
        n = self._lead(x)
        at_inf = np.any(np.isinf(x), axis=-1)
        if at_inf.any():  # the density vanishes there: gradients 0, as log_prob's -inf and the loc-scale families
            x = np.where(at_inf[..., None], self.loc, x).astype(x.dtype)
        w = self._w(x)
        u = _tri_solve(self.scale_tril, w, self.batch_shape, trans=True)  # Sigma^-1 (x - loc)
        dL = np.tril(u[..., :, None] * w[..., None, :])
        k = self.event_shape[0]
        dL = dL - np.eye(k) / np.diagonal(self.scale_tril, axis1=-2, axis2=-1)[..., None, :]
        if at_inf.any():
            u = np.where(at_inf[..., None], 0, u)
            dL = np.where(at_inf[..., None, None], 0, dL)
        return {"loc": self._reduce("loc", u, n), "scale_tril": self._reduce("scale_tril", dL, n)}

    @property
    def mean(self):
        """The mean, ``(*batch_shape, k)`` array."""
        return np.broadcast_to(self.loc, self.shape).copy()

    @property
    def covariance_matrix(self):
        """The covariance ``scale_tril @ scale_tril.T``, ``(*batch_shape, k, k)`` array."""
        L = self.scale_tril
        return np.broadcast_to(L @ np.swapaxes(L, -1, -2), self.batch_shape + self.event_shape * 2).copy()

    @property
    def variance(self):
        """The marginal variance, ``(*batch_shape, k)`` array."""
        return np.broadcast_to(np.sum(self.scale_tril ** 2, -1), self.shape).copy()

    def entropy(self):
        """The differential entropy (nats), ``(*batch_shape)`` array."""
        k = self.event_shape[0]
        h = 0.5 * k * (1.0 + LOG_2PI) + np.sum(self._logdiag(), -1)
        return np.broadcast_to(h, self.batch_shape).astype(self.dtype)

    def rsample_vjp(self, x, g):
        """Per-sample vector-Jacobian products ``g . dx/dparam`` at samples ``x``.

        The reparameterisation gradient used by ``bg.estimators.pathwise``;
        pathwise: x = loc + scale_tril eps.

        Parameters
        ----------
        x : ``(*sample_shape, *batch_shape, k)`` samples of this distribution
        g : array shaped like ``x``, the cotangent (e.g. df/dx at x)

        Returns
        -------
        dict {param: ``(*sample_shape, *param.shape)``}
        """
        x = self._x(x)
        g = self._check_g(x, g)
        n = self._lead(x)
        w = self._w(x)
        return {"loc": self._reduce("loc", g, n),
                "scale_tril": self._reduce("scale_tril", np.tril(g[..., :, None] * w[..., None, :]), n)}
