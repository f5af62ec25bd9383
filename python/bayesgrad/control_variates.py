"""Baselines and control variates for the score-function estimator.

A *baseline* b is subtracted from f inside the score-function estimator,
``s(x) (f(x) - b)``; it leaves the estimator unbiased when b does not depend
on x (``MovingAverageBaseline``, or the mean of f on independent samples) or
on x_i itself (the leave-one-out baseline, computed in the native kernel).

A *control variate* h with a known expectation gradient is subtracted and its
analytic gradient added back: ``s(x) (f(x) - beta h(x)) + beta grad E_q[h]``,
with the coefficient beta estimated on independent samples so that it does
not correlate with the samples it is applied to (DeltaControlVariate).

Both are used through ``bg.estimators.score_function(..., baseline=...,
control_variate=...)``; a baseline and a control variate may be combined
(the baseline is subtracted from what the control variate leaves).

``RelaxSurrogate`` is the learned control variate c_phi(z) of REBAR and RELAX
(``bg.estimators.rebar`` / ``relax``) on the continuous relaxation z of a
discrete sample: its parameters phi are kept across calls and moved by Adam
down the gradient of the estimator's variance.
"""
from __future__ import annotations

import numbers

import numpy as np

from . import _backend
from . import _checks as C
from . import optim as _optim
from . import random as _random
from .distributions._base import sum_to_shape

__all__ = ["MovingAverageBaseline", "DeltaControlVariate", "optimal_coefficient", "RelaxSurrogate"]


class MovingAverageBaseline:
    """Exponential moving average of f across calls: b <- decay b + (1 - decay) mean(f).

    The value used in a call is the one from *before* that call's samples, so
    the estimate stays unbiased. State lives in the object: pass the same
    instance to successive ``score_function`` calls (e.g. optimisation steps).

    Parameters
    ----------
    decay : float in [0, 1)
    initial : float
        Baseline used by the first call.
    """

    def __init__(self, decay=0.9, initial=0.0):
        d = C.scalar(decay, "decay")
        if not 0.0 <= d < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = d
        self.value = C.scalar(initial, "initial")
        self.n_updates = 0

    def update(self, batch_mean):
        """Fold the mean of f over one call's samples into the average."""
        m = C.scalar(batch_mean, "batch_mean")
        self.value = self.decay * self.value + (1.0 - self.decay) * m
        self.n_updates += 1
        return self.value

    def __repr__(self):
        return f"MovingAverageBaseline(decay={self.decay}, value={self.value:.6g})"


def optimal_coefficient(a, b):
    """Per-column coefficient beta = Cov(a, b) / Var(b) minimising Var(a - beta b).

    Parameters
    ----------
    a, b : (n, p) arrays, n >= 2
        Per-sample estimator terms and control-variate terms.

    Returns
    -------
    beta : (p,) float64, 0 where Var(b) = 0.
    """
    a = C.as_array(a, "a", dtype=np.float64, ndim=2)
    b = C.as_array(b, "b", dtype=np.float64, ndim=2)
    if a.shape != b.shape or a.shape[0] < 2:
        raise ValueError(f"a and b must have the same shape (n >= 2, p), got {a.shape} and {b.shape}")
    # each column in units of a power of two near its largest |value| (exact, so the result is what the
    # plain sums give wherever they stay in range): values of 1e200 made the products inf and beta NaN
    ua, ub = _pow2_unit(a), _pow2_unit(b)
    ac = a * ua
    ac -= ac.mean(axis=0)
    bc = b * ub
    bc -= bc.mean(axis=0)
    vb = (bc * bc).sum(axis=0)
    cov = (ac * bc).sum(axis=0)
    return np.divide(cov, vb, out=np.zeros_like(cov), where=vb > 0) * (ub / ua)


def _pow2_unit(v):
    """Per column of v (n, p) the power of two 2^-e with e the exponent of the largest |value| (frexp;
    1 for an all-zero column; e clamped so that 2^-e stays finite for subnormal values)."""
    e = np.frexp(np.abs(v).max(axis=0))[1]
    return np.ldexp(1.0, np.clip(-e, -1022, 1023))


_EULER_GAMMA = 0.5772156649015329
_MOMENT_FAMILIES = ("Normal", "LogNormal", "Exponential", "Uniform", "Laplace", "Gumbel", "StudentT", "Gamma", "Beta",
                    "Poisson", "Bernoulli")
# families whose samples are vectors with a closed-form mean and covariance (the event axis last)
_EVENT_FAMILIES = ("MultivariateNormal", "Dirichlet")


def _refuse_delta(name):
    why = ""
    if name == "Categorical":
        why = ("; a Categorical's samples are class labels, where an expansion of f at the mean means nothing: "
               "use reinforce_loo, rebar or relax")
    raise TypeError("control_variate='delta' needs a family with closed-form mean and covariance: mean-field "
                    f"{', '.join(_MOMENT_FAMILIES)}, or {' and '.join(_EVENT_FAMILIES)}; got {name}{why}")


def _flat(dist, name):
    return np.broadcast_to(np.asarray(getattr(dist, name), dtype=np.float64), tuple(dist.batch_shape)).reshape(-1)


def moment_derivatives(dist):
    """Closed-form derivatives of each coordinate's mean and variance by each parameter.

    Parameters
    ----------
    dist : a mean-field family with closed-form mean and variance: Normal, LogNormal,
        Exponential, Uniform, Laplace, Gumbel, StudentT (df > 2), Gamma, Beta, Poisson,
        Bernoulli (logits or probs)

    Returns
    -------
    dict {param: (dmean (D,), dvar (D,))}, flat over the batch (before any reduction to a
    broadcast parameter's shape)
    """
    name = type(dist).__name__
    if name not in _MOMENT_FAMILIES:
        _refuse_delta(name)
    P = {k: _flat(dist, k) for k in dist.params}
    one = np.ones(int(np.prod(tuple(dist.batch_shape), dtype=np.int64)))
    zero = 0.0 * one
    if name in ("Normal", "Laplace"):
        c = 2.0 if name == "Normal" else 4.0  # variance sigma^2 / 2 b^2
        return {"loc": (one, zero), "scale": (zero, c * P["scale"])}
    if name == "Gumbel":
        b = P["scale"]
        return {"loc": (one, zero), "scale": (_EULER_GAMMA * one, np.pi ** 2 * b / 3.0)}
    if name == "LogNormal":
        mu, sg = P["loc"], P["scale"]
        m = np.exp(mu + sg ** 2 / 2)
        e = np.exp(2 * mu + sg ** 2)
        v = np.expm1(sg ** 2) * e
        return {"loc": (m, 2 * v), "scale": (sg * m, 2 * sg * e * (2 * np.exp(sg ** 2) - 1))}
    if name == "Exponential":
        lam = P["rate"]
        return {"rate": (-1 / lam ** 2, -2 / lam ** 3)}
    if name == "Uniform":
        w = P["high"] - P["low"]
        return {"low": (0.5 * one, -w / 6), "high": (0.5 * one, w / 6)}
    if name == "StudentT":
        nu, s = P["df"], P["scale"]
        if np.any(nu <= 2):
            raise ValueError("control_variate='delta' needs a StudentT with df > 2 (finite variance)")
        return {"df": (zero, -2 * s ** 2 / (nu - 2) ** 2), "loc": (one, zero), "scale": (zero, 2 * s * nu / (nu - 2))}
    if name == "Gamma":
        a, b = P["concentration"], P["rate"]
        return {"concentration": (1 / b, 1 / b ** 2), "rate": (-a / b ** 2, -2 * a / b ** 3)}
    if name == "Beta":
        a, b = P["concentration1"], P["concentration0"]
        s = a + b
        den = s ** 3 * (s + 1) ** 2
        return {"concentration1": (b / s ** 2, b * (s * s + s - 3 * a * s - 2 * a) / den),
                "concentration0": (-a / s ** 2, a * (s * s + s - 3 * b * s - 2 * b) / den)}
    if name == "Poisson":
        return {"rate": (one, one)}
    if name == "Bernoulli":
        if dist.prob_param == "logits":
            p = 1 / (1 + np.exp(-P["logits"]))
            q = p * (1 - p)
            return {"logits": (q, q * (1 - 2 * p))}
        return {"probs": (one, 1 - 2 * P["probs"])}
    raise AssertionError(name)  # _MOMENT_FAMILIES lists exactly the branches above


def event_moment_gradients(dist, g0, H):
    """Closed-form gradient of ``g0 . mean + 1/2 sum_b tr(H_b Cov_b)`` by each parameter of a family whose
    samples are vectors (MultivariateNormal, Dirichlet): the part of a second-order expansion's
    expectation that moves with the parameters.

    Parameters
    ----------
    dist : MultivariateNormal or Dirichlet with B = prod(batch_shape) vectors of k entries
    g0 : (B, k) float64, the coefficients of the mean
    H : (B, k, k) float64, symmetric, the coefficients of each vector's covariance

    Returns
    -------
    dict {param: (B, *the parameter's event shape)} float64, per batch element (before any
    reduction to a broadcast parameter's shape). MultivariateNormal: loc g0 and scale_tril
    tril(H L) (d/dL of 1/2 tr(H L L^T), L lower triangular); Dirichlet (m = a / a_0, Cov =
    (diag m - m m^T) / (a_0 + 1)): with T = sum_i H_ii m_i - m^T H m and u = diag H - 2 H m,
    (g0 - g0 . m) / a_0 + ((u - u . m) / (a_0 (a_0 + 1)) - T / (a_0 + 1)^2) / 2.
    """
    B, k = g0.shape
    name = type(dist).__name__
    if name == "MultivariateNormal":
        L = np.broadcast_to(np.asarray(dist.scale_tril, dtype=np.float64), tuple(dist.batch_shape) + (k, k))
        return {"loc": g0, "scale_tril": np.tril(H @ L.reshape(B, k, k))}
    if name == "Dirichlet":
        a = np.broadcast_to(np.asarray(dist.concentration, dtype=np.float64), tuple(dist.batch_shape) + (k,))
        a = a.reshape(B, k)
        a0 = a.sum(-1, keepdims=True)
        m = a / a0
        Hm = np.einsum("bij,bj->bi", H, m)
        dH = np.diagonal(H, axis1=1, axis2=2)
        u = dH - 2.0 * Hm
        T = (dH * m).sum(-1, keepdims=True) - (m * Hm).sum(-1, keepdims=True)
        mean_part = (g0 - (g0 * m).sum(-1, keepdims=True)) / a0
        cov_part = (u - (u * m).sum(-1, keepdims=True)) / (a0 * (a0 + 1.0)) - T / (a0 + 1.0) ** 2
        return {"concentration": mean_part + 0.5 * cov_part}
    _refuse_delta(name)


class DeltaControlVariate:
    """Second-order Taylor expansion of f at the mean of the distribution.

    h(x) = f(mu) + grad_f(mu) . (x - mu) + 1/2 (x - mu)^T H (x - mu) with mu
    the distribution's mean, whose expectation is f(mu) + 1/2 tr(H Cov), and
    whose gradient in a parameter theta, with the expansion point held fixed, is
    grad_f(mu) . dmu/dtheta + 1/2 tr(H dCov/dtheta): closed forms for every family
    with a closed-form mean and covariance. For a mean-field family Cov is
    diagonal (``moment_derivatives``), so only H's diagonal enters E_q[h], and a
    full Hessian ``(n, *batch, *batch)`` is reduced to its diagonal. For a family
    of vectors (MultivariateNormal, Dirichlet: event axis k last) Cov is block
    diagonal, one k x k block per batch element (``event_moment_gradients``), and
    h keeps the Hessian's matching blocks: hess_f may return the full
    ``(n, *shape, *shape)``, the blocks ``(n, *batch, k, k)`` or the diagonal
    ``(n, *shape)``, with shape = batch + (k,). f, grad_f and hess_f are
    evaluated at the mean, which for a discrete family (Bernoulli, Poisson) is not
    a point of the support: they must accept real inputs there.

    Parameters
    ----------
    f, grad_f, hess_f : callables, vectorised over axis 0
        ``f: (m, *shape) -> (m,)``, ``grad_f: (m, *shape) -> (m, *shape)``,
        ``hess_f``: as above.
    dist : a family that ``moment_derivatives`` or ``event_moment_gradients`` accepts
    """

    def __init__(self, f, grad_f, hess_f, dist):
        if not callable(grad_f) or not callable(hess_f):
            raise TypeError("control_variate='delta' needs callables grad_f and hess_f")
        self.dist = dist
        name = type(dist).__name__
        self.event = name in _EVENT_FAMILIES
        if not self.event:
            self._dmoments = moment_derivatives(dist)  # refuses the families without closed forms
        shape = tuple(dist.shape) if self.event else tuple(dist.batch_shape)
        D = int(np.prod(shape, dtype=np.int64))
        mu = np.broadcast_to(np.asarray(dist.mean, dtype=np.float64), shape)
        self.mu = np.ascontiguousarray(mu.reshape(-1))
        x0 = mu[None].astype(dist.dtype)

        def at_mean(fn, name, want=None):
            try:
                v = C.returned_real(fn(x0), name)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name} must return a real array") from exc
            if want is not None and v.shape != want:
                raise ValueError(f"{name} must return an array of shape {want} for one input, got {v.shape}")
            if not np.isfinite(v).all():
                raise ValueError(f"{name} returned NaN or inf at the distribution's mean, where the delta control "
                                 "variate expands f")
            return v

        f0 = at_mean(f, "f", (1,))
        g0 = at_mean(grad_f, "grad_f", (1,) + shape)
        h0 = at_mean(hess_f, "hess_f")
        self.f0 = float(f0[0])
        self.g0 = np.ascontiguousarray(g0.reshape(-1))
        if self.event:
            self._blocks(h0, shape)
            return
        if h0.shape == (1,) + shape + shape and shape:
            h0 = np.diagonal(h0.reshape(1, D, D), axis1=1, axis2=2)
        elif h0.shape != (1,) + shape:
            raise ValueError(f"hess_f must return shape {(1,) + shape} (diagonal) or {(1,) + shape + shape}, "
                             f"got {h0.shape}")
        self.var = np.broadcast_to(np.asarray(dist.variance, dtype=np.float64), shape).reshape(-1)
        self.h0 = np.ascontiguousarray(h0.reshape(-1))

    def _blocks(self, h0, shape):
        """H (B, k, k): the symmetrised blocks of the Hessian at the mean that E_q[h] sees, and the
        covariance blocks (B, k, k), for a family of vectors."""
        batch, k = shape[:-1], shape[-1]
        B = int(np.prod(batch, dtype=np.int64))
        if h0.shape == (1,) + shape + shape:
            H = h0.reshape(B, k, B, k)[np.arange(B), :, np.arange(B), :]
        elif h0.shape == (1,) + batch + (k, k):
            H = h0.reshape(B, k, k)
        elif h0.shape == (1,) + shape:
            H = np.zeros((B, k, k))
            H[:, np.arange(k), np.arange(k)] = h0.reshape(B, k)
        else:
            raise ValueError(f"hess_f must return shape {(1,) + shape} (diagonal), {(1,) + batch + (k, k)} (one "
                             f"block per vector) or {(1,) + shape + shape}, got {h0.shape}")
        self.H = 0.5 * (H + np.swapaxes(H, 1, 2))
        self.cov = np.broadcast_to(np.asarray(self.dist.covariance_matrix, dtype=np.float64),
                                   batch + (k, k)).reshape(B, k, k)

    def values(self, x):
        """h(x) for samples x ``(n, *shape)`` -> (n,) float64."""
        xf = np.ascontiguousarray(np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1))
        if self.event:
            B, k = self.H.shape[:2]
            d = (xf - self.mu).reshape(-1, B, k)
            quad = np.einsum("nbi,nbi->n", np.einsum("nbj,bij->nbi", d, self.H), d)
            return self.f0 + d.reshape(d.shape[0], -1) @ self.g0 + 0.5 * quad
        out = np.empty(xf.shape[0])
        _backend.kernels().estimators.quadratic_values(xf, self.mu, self.g0, self.h0, self.f0, out)
        return out

    def expectation(self):
        """E_q[h] (float)."""
        if self.event:
            return self.f0 + 0.5 * float((self.H * self.cov).sum())
        return self.f0 + 0.5 * float(self.h0 @ self.var)

    def expectation_grad(self):
        """{param: d E_q[h] / d param}, each of the parameter's shape (float64)."""
        if self.event:
            B, k = self.H.shape[:2]
            per = event_moment_gradients(self.dist, self.g0.reshape(B, k), self.H)
            per = {name: v.reshape(tuple(self.dist.batch_shape) + v.shape[1:]) for name, v in per.items()}
        else:
            shape = tuple(self.dist.batch_shape)
            per = {k: (self.g0 * dm + 0.5 * self.h0 * dv).reshape(shape) for k, (dm, dv) in self._dmoments.items()}
        return {k: sum_to_shape(v[None], 1, self.dist._param_shapes[k])[0] for k, v in per.items()}


class RelaxSurrogate:
    """The learned control variate c_phi(z) of REBAR and RELAX, kept across calls.

    ``c_phi(z) = scale * f(relax_lambda(z)) + r_rho(z)``, where ``relax_lambda``
    is the Concrete relaxation at temperature lambda (sigmoid(z / lambda) for a
    Bernoulli, softmax(z / lambda) over the classes for a Categorical), f is the
    user's objective, and ``r_rho`` a small ``bg.nn.MLP`` (``hidden`` widths, one
    linear output) on the flattened z. REBAR is ``hidden=None`` (the relaxed-f
    term alone); RELAX uses both terms (``relaxed_f=True``) or the network alone.

    phi = (scale, log lambda, rho) is one float64 vector ``params`` updated by
    ``bg.optim.Adam`` with the gradient of the estimator's single-sample second
    moment sum_p E[g_p^2] (its variance plus a term that does not depend on phi),
    computed by the estimator from the same draws as the estimate. The estimate
    of a call uses phi from before that call's update, so it stays unbiased.

    Parameters
    ----------
    hidden : tuple of int or None
        Widths of the network's hidden layers; None for no network (REBAR).
    activation : str, the network's hidden activation (see ``bg.nn.MLP``)
    relaxed_f : bool
        Include the ``scale * f(relax_lambda(z))`` term (needs ``grad_f``).
    temperature : float > 0, the starting lambda
    scale : float, the starting multiplier of the relaxed f (REBAR's eta)
    lr : float > 0, Adam's step size for phi
    tune_temperature, tune_scale : bool, whether those two are trained
    seed : int, the network's initialisation (``bg.nn.MLP.init``); its last
        layer starts at zero so that an untrained network adds nothing

    Attributes
    ----------
    params : (2 + P,) float64, phi = (scale, log lambda, rho)
    mlp : bg.nn.MLP or None, built on first use once the input width is known
    n_updates : int
    objective : list of float, the second moment before each update
    """

    def __init__(self, hidden=(10,), activation="tanh", relaxed_f=True, temperature=0.5, scale=1.0, lr=0.01,
                 tune_temperature=True, tune_scale=True, seed=0):
        # everything checked here: the network is built on first use (bind), where a bad activation or
        # seed was refused only after the estimator's draws, and strings passed as flags counted as True
        if hidden is not None:
            if isinstance(hidden, (numbers.Integral, np.integer)) or isinstance(hidden, str):
                raise TypeError(f"hidden must be a tuple of ints (the hidden widths) or None, got {hidden!r}")
            try:
                hidden = tuple(C.integer(h, "hidden", 1) for h in hidden)
            except TypeError as exc:
                raise TypeError(f"hidden must be a tuple of ints (the hidden widths) or None, got {hidden!r}") from exc
        relaxed_f = C.flag(relaxed_f, "relaxed_f")
        if hidden is None and not relaxed_f:
            raise ValueError("a surrogate needs a network (hidden) or relaxed_f=True")
        self.hidden = hidden
        from .nn import ACTIVATIONS

        self.activation = C.option(activation, "activation", ACTIVATIONS)
        self.relaxed_f = relaxed_f
        t = C.scalar(temperature, "temperature")
        if t <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.lr = C.scalar(lr, "lr")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.tune_temperature = C.flag(tune_temperature, "tune_temperature")
        self.tune_scale = C.flag(tune_scale, "tune_scale")
        self.seed = _random.resolve_seed(seed)
        self.params = np.array([C.scalar(scale, "scale"), np.log(t)])
        self.mlp = None
        self.dim = None
        self._opt = None
        self.n_updates = 0
        self.objective = []

    @property
    def temperature(self):
        """lambda, the relaxation's temperature (float)."""
        return float(np.exp(self.params[1]))

    @property
    def scale(self):
        """The multiplier of the relaxed f (float)."""
        return float(self.params[0])

    @property
    def rho(self):
        """The network's flat parameters (P,) (a view of ``params``; empty without a network)."""
        return self.params[2:]

    def bind(self, dim):
        """Fix the input width (the number of relaxed coordinates) on first use.

        Parameters
        ----------
        dim : int, the flattened size of one relaxed sample z
        """
        dim = C.integer(dim, "dim", 1)
        if self.dim is None:
            # all or nothing: a failure here (a network too large to initialise) left dim set without a
            # network or an optimiser, and the next call estimated without the network, then failed
            mlp, params = None, self.params
            if self.hidden is not None:
                from .nn import MLP  # the engine of the surrogate network; imported on first use

                mlp = MLP((dim,) + self.hidden + (1,), activation=self.activation)
                rho = mlp.init(seed=self.seed, dtype=np.float64)
                w_last = mlp.offsets[-1][0]
                rho[w_last:] = 0.0
                params = np.concatenate([self.params, rho])
            opt = _optim.Adam(params, lr=self.lr)
            self.dim, self.mlp, self.params, self._opt = dim, mlp, params, opt
        elif dim != self.dim:
            raise ValueError(f"this surrogate was built for {self.dim} relaxed coordinates, got {dim}")
        return self

    # The two network calls go to the engine's mlp_backward directly: their inputs are the
    # estimators' own arrays, so MLP.vjp's checks (a finiteness pass over z among them) and the
    # weight gradient that network does not need would be work for nothing.
    def _points(self, z):
        z = np.ascontiguousarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"z must have shape (m, {self.dim}), got {z.shape}")
        return z

    def network(self, z):
        """r_rho(z) (m,) and its input gradient (m, dim) for z (m, dim) float64 (zeros without a network)."""
        m = z.shape[0]
        if self.mlp is None:
            return np.zeros(m), np.zeros_like(z)
        z = self._points(z)
        out, gx = np.empty((1, m, 1)), np.empty((1, m, self.dim))
        k = _backend.kernels()
        k.mlp.mlp_backward(self.mlp.net_config(k), self.rho[None], z, np.ones((1, m, 1)), None, gx, None, out)
        return out[0, :, 0], gx[0]

    def network_mixed_vjp(self, z, v, c, e):
        """sum_i d/d rho [c_i r_rho(z_i) + e_i grad_z r_rho(z_i) . v_i] (P,) for z, v (m, dim) and c, e (m,):
        the network's parameter gradient of its values and of its directional derivatives along the rows
        of v, exact (the engine's forward-over-reverse ``mlp_mixed_vjp``); zeros without a network."""
        if self.mlp is None:
            return np.zeros(0)
        z, v = self._points(z), self._points(v)
        if v.shape != z.shape:
            raise ValueError(f"v must have the shape of z {z.shape}, got {v.shape}")
        m = z.shape[0]
        c = np.ascontiguousarray(c, dtype=np.float64).reshape(1, m, 1)
        e = np.ascontiguousarray(e, dtype=np.float64).reshape(1, m, 1)
        grad = np.empty((1, self.mlp.n_params))
        k = _backend.kernels()
        k.mlp.mlp_mixed_vjp(self.mlp.net_config(k), self.rho[None], z, v, c, e, grad)
        return grad[0]

    def update(self, grad, objective):
        """One Adam step on phi with ``grad`` (like ``params``); records ``objective``."""
        g = np.array(grad, dtype=np.float64)
        if not self.tune_scale:
            g[0] = 0.0
        if not self.tune_temperature:
            g[1] = 0.0
        if not np.isfinite(g).all():
            raise FloatingPointError("non-finite surrogate gradient: the estimator's squared terms overflowed (|f| "
                                     "beyond ~1e150: rescale f) or the surrogate diverged (lower its lr)")
        self._opt.step(g)
        self.n_updates += 1
        self.objective.append(float(objective))
        return self.params

    def __repr__(self):
        net = "none" if self.hidden is None else f"MLP{list(self.hidden)}"
        return (f"RelaxSurrogate(scale={self.scale:.4g}, temperature={self.temperature:.4g}, network={net}, "
                f"updates={self.n_updates})")
