#include "pybind11.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "bayesgrad native core (C++17). Use the public bayesgrad API instead.";
  bayesgrad::register_runtime(m);
  bayesgrad::register_random(m);
  bayesgrad::register_distributions(m);
  bayesgrad::register_estimators(m);
  bayesgrad::register_mlp(m);
  bayesgrad::register_optim(m);
  bayesgrad::register_curvature(m);
  bayesgrad::register_metrics(m);
  bayesgrad::register_latent(m);
}
