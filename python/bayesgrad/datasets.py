"""Small synthetic data sets for the demo, the tests and the quickstart.

Each generator is deterministic in ``seed`` (every draw goes through
``bayesgrad.random`` on its own stream, so the data are the same on every
backend) and returns a :class:`Dataset`: inputs ``X`` (N, D) float64,
targets ``y`` (N,) (int64 class labels or float64 values), named query points
``points`` (name -> (D,) array) that show one kind of uncertainty each, and a
plotting range ``bounds``.

- :func:`binary_1d` -- 1-D binary classification with unambiguous regions,
  a region without data and an ambiguous region where the classes overlap.
- :func:`regression_1d_gap` -- 1-D regression with a gap in the inputs.
- :func:`three_class_2d` -- a 3-class problem in 2-D: one well separated class,
  two overlapping ones, and empty space.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _checks as C
from . import random as _random

__all__ = ["Dataset", "binary_1d", "regression_1d_gap", "three_class_2d"]


@dataclass
class Dataset:
    """A synthetic data set.

    Attributes
    ----------
    X : ndarray (N, D) float64
    y : ndarray (N,) -- int64 class labels or float64 targets
    points : dict of str -> ndarray (D,)
        Query points, e.g. ``"confident"``, ``"ambiguous"``, ``"unseen"``.
    bounds : tuple of (low, high) per input dimension, for grids and plots
    task : ``"classification"`` or ``"regression"``
    description : one line saying what the data show
    """

    X: np.ndarray
    y: np.ndarray
    points: dict = field(default_factory=dict)
    bounds: tuple = ()
    task: str = "classification"
    description: str = ""

    def grid(self, n=200):
        """An evenly spaced grid over ``bounds`` (1-D data only): (n, 1)."""
        if self.X.shape[1] != 1:
            raise ValueError("grid is for 1-D inputs; build a 2-D grid from bounds")
        lo, hi = self.bounds[0]
        n = C.integer(n, "n", 2)
        C.check_allocation(C.n_bytes((n,)), f"n={n}: the grid")
        return np.linspace(lo, hi, n)[:, None]


def _size_and_seed(n, seed, n_min, width):
    """``n`` checked (>= n_min, its arrays of ``width`` floats within the allocation limit, before
    np.arange allocates them) and ``seed`` resolved once: with seed=None each draw took fresh
    entropy of its own, so ``bayesgrad.random.last_seed`` did not reproduce the data set."""
    n = C.integer(n, "n", n_min)
    C.check_allocation(C.n_bytes((n, width), copies=4), f"n={n}: the data set")
    return n, _random.resolve_seed(seed)


def _uniforms(n, seed, tag):
    return _random.uniform(n, seed=seed, stream=_random.fold_in(0, tag))


def _normals(shape, seed, tag):
    return _random.normal(shape, seed=seed, stream=_random.fold_in(0, tag))


def binary_1d(n=240, seed=0):
    """1-D binary classification with an ambiguous, two unambiguous and an empty region.

    - ``x in [-9, -5]``: ``y ~ Bernoulli(0.5)`` independent of x (the classes
      overlap completely: irreducible, aleatoric uncertainty);
    - ``x in [-5, -2]``: clean labels ``y = 0``;
    - ``x in (-2, 2)``: no data (the class boundary lies somewhere in here:
      epistemic uncertainty);
    - ``x in [2, 5]``: clean labels ``y = 1``.

    Points: ``confident`` x = 3.5, ``ambiguous`` x = -7, ``unseen`` x = 0.

    Parameters
    ----------
    n : int >= 3, number of training points (a third in each data region)
    seed : int, Philox seed
    """
    n, seed = _size_and_seed(n, seed, 3, 1)
    region = np.arange(n) % 3  # 0: overlapping, 1: clean y=0, 2: clean y=1
    u = _uniforms(n, seed, "dataset/binary_1d/x")
    lo = np.array([-9.0, -5.0, 2.0])[region]
    width = np.array([4.0, 3.0, 3.0])[region]
    x = lo + width * u
    coin = (_uniforms(n, seed, "dataset/binary_1d/y") < 0.5).astype(np.int64)
    y = np.where(region == 0, coin, region - 1).astype(np.int64)
    order = np.argsort(x, kind="stable")
    return Dataset(
        X=x[order, None], y=y[order],
        points={"confident": np.array([3.5]), "ambiguous": np.array([-7.0]), "unseen": np.array([0.0])},
        bounds=((-11.0, 8.0),), task="classification",
        description="overlapping classes on [-9,-5], class 0 on [-5,-2], no data on (-2,2), class 1 on [2,5]",
    )


def regression_1d_gap(n=160, noise=0.1, seed=0):
    """1-D regression with a gap: ``y = sin(x) + 0.1 x + noise``, inputs in
    ``[-5, -1.5]`` (60% of the points) and ``[1.5, 4]`` (40%), nothing in
    between. (The two sides differ so that the gap's centre is not the mean
    of the inputs, where a standardised network's weights would not act.)

    Points: ``on_data`` x = -3, ``in_gap`` x = 0, ``outside`` x = 6.

    Parameters
    ----------
    n : int >= 2, number of training points
    noise : float > 0, standard deviation of the Gaussian noise on y
    seed : int, Philox seed
    """
    n, seed = _size_and_seed(n, seed, 2, 1)
    noise = C.real(noise, "noise")
    if not np.isfinite(noise) or noise <= 0:
        raise ValueError(f"noise must be a positive finite float, got {noise}")
    u = _uniforms(n, seed, "dataset/regression_1d_gap/x")
    left = np.arange(n) % 5 < 3
    x = np.where(left, -5.0 + 3.5 * u, 1.5 + 2.5 * u)
    with np.errstate(over="ignore"):
        y = np.sin(x) + 0.1 * x + noise * _normals(n, seed, "dataset/regression_1d_gap/noise")
    if not np.all(np.isfinite(y)):  # noise near the float64 maximum: targets of inf
        raise ValueError(f"noise ({noise:g}) is too large: the targets overflow float64")
    order = np.argsort(x, kind="stable")
    return Dataset(
        X=x[order, None], y=y[order],
        points={"on_data": np.array([-3.0]), "in_gap": np.array([0.0]), "outside": np.array([6.0])},
        bounds=((-7.0, 7.0),), task="regression",
        description=f"y = sin(x) + 0.1 x + N(0, {noise:g}^2); data on [-5,-1.5] and [1.5,4], a gap between",
    )


#: Class centres and spreads of :func:`three_class_2d`.
_THREE_CLASS = ((np.array([-1.0, 0.0]), 0.8), (np.array([1.0, 0.0]), 0.8), (np.array([0.0, 4.0]), 0.5))


def three_class_2d(n=300, seed=0):
    """A 3-class problem in 2-D: isotropic Gaussian blobs.

    Classes 0 and 1 (centres (-1, 0) and (1, 0), std 0.8) overlap; class 2
    (centre (0, 4), std 0.5) is well separated.

    Points: ``confident`` (0, 4) (the centre of class 2), ``aleatoric`` (0, 0)
    (between the overlapping classes), ``epistemic`` (-4, 4) (far from all data).

    Parameters
    ----------
    n : int >= 3, number of training points (equal shares per class)
    seed : int, Philox seed
    """
    n, seed = _size_and_seed(n, seed, 3, 2)
    y = np.arange(n, dtype=np.int64) % 3
    z = _normals((n, 2), seed, "dataset/three_class_2d/x")
    centres = np.stack([c for c, _ in _THREE_CLASS])[y]
    scales = np.array([s for _, s in _THREE_CLASS])[y, None]
    X = centres + scales * z
    return Dataset(
        X=X, y=y,
        points={"confident": np.array([0.0, 4.0]), "aleatoric": np.array([0.0, 0.0]),
                "epistemic": np.array([-4.0, 4.0])},
        bounds=((-5.0, 5.0), (-3.0, 6.0)), task="classification",
        description="classes 0 and 1 overlap around the origin; class 2 sits apart at (0, 4)",
    )
