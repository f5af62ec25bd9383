"""Stream tags (``bg.random.fold_in``) of the independent random draws made in
``bayesgrad.laplace``, in one place.

They predate the project's registry ``bg.random.TAGS`` and keep their values:
a tag fixes every number drawn under it, so changing one would change the
sampled Fisher, the posterior samples and the Monte Carlo predictives of
existing seeds. Collected here so that they can move into that registry in
one step.
"""
TAG_FISHER = 0x4C41_0001   # labels sampled for hessian="fisher_mc" (curvature.py)
TAG_SAMPLE = 0x4C41_0002   # parameter draws of Laplace.sample (also under predict(pred_type="nn"))
TAG_PRED = 0x4C41_0003     # Monte Carlo draws of Laplace.predict
