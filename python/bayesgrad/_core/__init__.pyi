# Stubs of the native core bayesgrad._core: one submodule per concept
# (docs/design.md, "Kernel namespaces"), each mirrored by bayesgrad._numpy.<concept>.
from . import acquisition as acquisition
from . import curvature as curvature
from . import distributions as distributions
from . import estimators as estimators
from . import latent as latent
from . import metrics as metrics
from . import mlp as mlp
from . import optim as optim
from . import random as random
from . import runtime as runtime
from . import vi as vi
