"""Every integer code that crosses into a kernel, and every random-stream tag,
defined once (docs/design.md, "Kernel conventions").

The Python layer, the NumPy twin and the C++ core all read these values: the
C++ header ``cpp/include/bayesgrad/codes.hpp`` is generated from this file
(``python python/bayesgrad/_codes.py > cpp/include/bayesgrad/codes.hpp``), a
test checks that the committed header is what the generator writes, and the
compiled core reports the values it was built with (``_core.runtime.codes()``),
which another test compares with these.

An option a user spells as a string (``activation="relu"``) is converted to
its code by ``Enum[name]`` at the public boundary; kernels receive the code
(an ``IntEnum`` is an ``int``) and validate its range again, so a bad code from
any caller is a ``ValueError``, never undefined behaviour.

This module imports nothing from the package, so that the generator runs
without the package being built.
"""
from __future__ import annotations

from enum import IntEnum

__all__ = [
    "Activation", "Likelihood", "ViEstimator", "ViPrior", "CurvatureKind", "CurvatureStructure",
    "LocScaleFamily", "PointScore", "ENUMS", "STREAM_TAGS", "fnv1a64", "from_int", "cpp_header",
]


class Activation(IntEnum):
    """Hidden-layer activation of the MLP engine (the output layer is linear)."""
    identity = 0
    relu = 1
    tanh = 2
    sigmoid = 3
    gelu = 4  # exact: z * Phi(z)


class Likelihood(IntEnum):
    """Observation model of a network's outputs (docs/design.md, "Likelihood names")."""
    gaussian = 0
    heteroscedastic_gaussian = 1  # outputs: D means, then D log-variances
    categorical = 2
    bernoulli = 3


class ViEstimator(IntEnum):
    """Gradient estimator of the mean-field VI objective."""
    weight_space = 0  # one weight draw per sample (Bayes by Backprop)
    local_reparam = 1  # pre-activations sampled (Kingma et al. 2015)
    flipout = 2  # shared draw decorrelated by random signs (Wen et al. 2018)


class ViPrior(IntEnum):
    """Prior over the weights of mean-field VI."""
    gaussian = 0  # N(0, sigma^2): closed-form KL
    scale_mixture = 1  # pi N(0, s1^2) + (1 - pi) N(0, s2^2): Monte Carlo KL


class CurvatureKind(IntEnum):
    """Which curvature the square-root factors of the loss Hessian give."""
    ggn = 0  # generalised Gauss-Newton (exact loss Hessian at the output)
    ef = 1  # empirical Fisher (outer product of per-point gradients)
    fisher_mc = 2  # Fisher with targets sampled from the model


class CurvatureStructure(IntEnum):
    """What the whole-network curvature kernel accumulates per layer."""
    diag = 0
    kron = 1


class LocScaleFamily(IntEnum):
    """Base distributions of the location-scale sampler and log-density kernel."""
    normal = 0
    lognormal = 1
    uniform = 2
    exponential = 3
    laplace = 4
    gumbel = 5
    logistic = 6


class PointScore(IntEnum):
    """Single-point acquisition scores computed by one native pass."""
    variation_ratios = 0
    mean_std = 1
    margin = 2


#: The enums generated into the C++ header, in order.
ENUMS = (Activation, Likelihood, ViEstimator, ViPrior, CurvatureKind, CurvatureStructure, LocScaleFamily,
         PointScore)


def from_int(enum, value, what: str):
    """``enum(value)``, or the ValueError the C++ core raises for a bad code
    (``codes::from_int`` in codes.hpp), naming the argument ``what``."""
    try:
        return enum(int(value))
    except (ValueError, TypeError):
        members = ", ".join(f"{int(m)} ({m.name})" for m in enum)
        raise ValueError(f"{what}: {_snake(enum.__name__)} code {value} is not one of {members}") from None


def fnv1a64(text: str) -> int:
    """FNV-1a 64 of the UTF-8 bytes: the tag id of a string that is not registered."""
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * 0x100000001B3) & ((1 << 64) - 1)
    return h


#: Random-stream tags (``bayesgrad.random.fold_in(stream, tag)``): every
#: independent use of random words inside the package, by name. Internal code
#: passes these names; a test checks that every string tag in the package is
#: listed here. Values never change once released (they address the streams,
#: so changing one changes results); retired tags are not reused.
STREAM_TAGS = {
    "weights": 1,  # MC weight draws of a sampled predictive
    "dropout": 2,  # dropout masks (per training step: fold_in(fold_in(s, "dropout"), step))
    "shuffle": 3,  # minibatch order
    "step": 4,  # per-step draws of a stochastic optimiser
    "predict": 5,  # MC samples of a prediction
    "init": 6,  # parameter initialisation
    "split": 7,  # train / validation split
    "acquisition": 8,  # BatchBALD configurations
    # 9 (antithetic) and 12 (local_reparam), 14 (mc_fisher), 16 (coupling): retired, never used
    "control_variate": 10,  # independent draws of a control variate's mean
    "latent": 11,  # noise of the hidden-variable model
    "flipout": 13,  # Flipout's random signs, from the words of stream fold_in(stream_t, 13)
    "posterior": 15,  # draws from a variational posterior
    "conformal": 17,  # the uniforms of randomized conformal classification scores
    "sgmcmc": 18,  # the injected noise of SG-MCMC (per step: fold_in(fold_in(s, "sgmcmc"), t))
    "swag": 19,  # SWAG's SGD minibatch orders and its posterior draws
    # Laplace's draws (values from before the registry, kept so results do not change)
    "laplace/fisher_mc": 0x4C41_0001,  # sampled targets of the MC Fisher
    "laplace/sample": 0x4C41_0002,  # posterior weight samples
    "laplace/predict": 0x4C41_0003,  # MC predictive draws
    # Tags first used as unregistered strings: their values are the strings'
    # FNV-1a hashes, which fold_in gave them then, so results do not change.
    "baseline": fnv1a64("baseline"),  # independent draws of a score-function baseline
    "elbo": fnv1a64("elbo"),  # MC ELBO estimate of black-box VI
    "mvd_maxwell": fnv1a64("mvd_maxwell"),  # measure-valued: Maxwell draws
    "mvd_normal": fnv1a64("mvd_normal"),  # measure-valued: coupled normal draws
    "dataset/binary_1d/x": fnv1a64("dataset/binary_1d/x"),
    "dataset/binary_1d/y": fnv1a64("dataset/binary_1d/y"),
    "dataset/regression_1d_gap/x": fnv1a64("dataset/regression_1d_gap/x"),
    "dataset/regression_1d_gap/noise": fnv1a64("dataset/regression_1d_gap/noise"),
    "dataset/three_class_2d/x": fnv1a64("dataset/three_class_2d/x"),
    "relax/conditional": fnv1a64("relax/conditional"),  # REBAR/RELAX: the draws of z~ given b
    # measure-valued gradients beyond the Normal (estimators/mvd.py)
    "mvd_erlang": fnv1a64("mvd_erlang"),  # the extra Exp(rate) of Erlang(2) / Gamma(a + 1) parts
    "mvd_erlang_2": fnv1a64("mvd_erlang_2"),  # uncoupled: an independent Exp(rate) draw
    "mvd_poisson": fnv1a64("mvd_poisson"),  # uncoupled: an independent Poisson draw
    "mvd_gamma": fnv1a64("mvd_gamma"),  # uncoupled: an independent Gamma draw
    "mvd_gamma_shape_plus": fnv1a64("mvd_gamma_shape_plus"),  # rejection rounds of the shape's p+
    "mvd_gamma_shape_minus": fnv1a64("mvd_gamma_shape_minus"),  # rejection rounds of the shape's p-
    "mvd_accept": fnv1a64("mvd_accept"),  # the acceptance uniforms of a rejection round
}


# --------------------------------------------------------------------------- C++ header
def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("/", "_").split("_") if part)


def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def cpp_header() -> str:
    """The text of cpp/include/bayesgrad/codes.hpp."""
    lines = [
        "// GENERATED by python/bayesgrad/_codes.py -- do not edit; regenerate with",
        "//   python python/bayesgrad/_codes.py > cpp/include/bayesgrad/codes.hpp",
        "// Every integer code a kernel takes, and the random-stream tags the core uses,",
        "// defined once in that Python file (docs/design.md, \"Kernel conventions\").",
        "#pragma once",
        "#include <cstdint>",
        "#include <stdexcept>",
        "#include <string>",
        "",
        "namespace bayesgrad {",
        "namespace codes {",
        "",
        "// Throws std::invalid_argument (ValueError in Python) unless v is a code of E;",
        "// `what` names the argument in the message.",
        "template <typename E>",
        "E from_int(int64_t v, const char* what);",
        "template <typename E>",
        "const char* name_of(E e);",
        "// name: the Python enum's name; lo, hi: its smallest and largest code.",
        "template <typename E>",
        "struct traits;",
        "",
    ]
    for enum in ENUMS:
        cname = enum.__name__
        members = list(enum)
        # from_int checks a range, so the codes must be contiguous
        assert sorted(int(m) for m in members) == list(range(min(members), max(members) + 1)), cname
        lines.append(f"enum class {cname} : int {{")
        for m in members:
            lines.append(f"  k{_camel(m.name)} = {int(m)},")
        lines.append("};")
        lines.append("template <>")
        lines.append(f"inline {cname} from_int<{cname}>(int64_t v, const char* what) {{")
        lines.append(f"  if (v < {min(members)} || v > {max(members)})")
        lines.append(f"    throw std::invalid_argument(std::string(what) + \": {_snake(cname)} code \" + "
                     f"std::to_string(v) + \" is not one of {', '.join(f'{int(m)} ({m.name})' for m in members)}\");")
        lines.append(f"  return static_cast<{cname}>(v);")
        lines.append("}")
        lines.append("template <>")
        lines.append(f"inline const char* name_of<{cname}>({cname} e) {{")
        lines.append("  switch (e) {")
        for m in members:
            lines.append(f"    case {cname}::k{_camel(m.name)}: return \"{m.name}\";")
        lines.append("  }")
        lines.append("  return \"?\";")
        lines.append("}")
        lines.append("template <>")
        lines.append(f"struct traits<{cname}> {{")
        lines.append(f"  static constexpr const char* name = \"{cname}\";")
        lines.append(f"  static constexpr int lo = {min(members)}, hi = {max(members)};")
        lines.append("};")
        lines.append("")
    lines.append("// X(Enum) for every enum above (the runtime exports them for the consistency test).")
    lines.append("#define BAYESGRAD_FOR_EACH_CODE_ENUM(X) " + " ".join(f"X({e.__name__})" for e in ENUMS))
    lines.append("")
    lines.append("// Random-stream tags (bayesgrad.random.fold_in).")
    for name, value in STREAM_TAGS.items():
        lines.append(f"constexpr uint64_t kTag{_camel(name)} = {value:#x}ull;")
    lines += ["", "}  // namespace codes", "}  // namespace bayesgrad", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    sys.stdout.write(cpp_header())
