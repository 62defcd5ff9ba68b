"""The paper reproductions built on sciml, the demo and the ``sciml`` command line.

This package sits beside the library and is installed with it. Each folder reproduces one
paper with the library's public API only: its settings, data, training pipeline,
evaluation, figures and result rows.

* :mod:`sciml_recipes.sfno`: spatiotemporal FNO with Spectral-Refiner fine-tuning
  (2D Navier-Stokes);
* :mod:`sciml_recipes.mppde`: message-passing neural PDE solvers (Burgers/KdV family);
* :mod:`sciml_recipes.dcdm`: the learned search direction for Poisson solves;
* :mod:`sciml_recipes.gpme`: ProbConserv on the generalised porous medium equation;
* :mod:`sciml_recipes.hardc`: hard constraints with a mixture of experts;
* :mod:`sciml_recipes.ns_inverse`: Navier-Stokes inverse problems;
* :mod:`sciml_recipes.cycle_skipping`: the L2 against the W2 misfit;
* :mod:`sciml_recipes.demo`: the tour behind ``sciml demo``;
* :mod:`sciml_recipes.cli`: the ``sciml`` command;
* :mod:`sciml_recipes.benchtools`: timing and result files shared by ``benchmarks/``.

The library (:mod:`sciml`) never imports this package.
"""
