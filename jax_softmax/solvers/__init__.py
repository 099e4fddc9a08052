"""The exact optimum: full-batch solvers for L2-regularised softmax regression.

* :func:`solve`, :class:`SolveResult`, :class:`NotConvergedWarning`: minimise the loss
  over a whole data set, by Newton-CG (the hand-derived Hessian-vector product) or
  optax's L-BFGS, in one compiled program (``_solve``, ``_newton_cg``, ``_lbfgs``).
* :func:`l2_from_c`: scikit-learn's ``C`` in this project's terms.
* :func:`solve_path`, :class:`PathResult`, :class:`PathPoint`: the optimum at each of
  several strengths, strongest first, each warm-started from the last, and the one
  chosen on a validation split (``_path``).
* :class:`LogisticRegression` (``jax_softmax.solvers.estimator``, also
  ``jax_softmax.LogisticRegression``): a scikit-learn classifier whose ``fit`` is
  :func:`solve`. Not imported here: it needs scikit-learn (``pip install
  jax-softmax[sklearn]``), which the rest of the package does not.
"""

from jax_softmax.solvers._path import (
    PathPoint as PathPoint,
)
from jax_softmax.solvers._path import (
    PathResult as PathResult,
)
from jax_softmax.solvers._path import (
    solve_path as solve_path,
)
from jax_softmax.solvers._solve import (
    DEFAULT_MAX_ITER as DEFAULT_MAX_ITER,
)
from jax_softmax.solvers._solve import (
    METHODS as METHODS,
)
from jax_softmax.solvers._solve import (
    NotConvergedWarning as NotConvergedWarning,
)
from jax_softmax.solvers._solve import (
    SolveResult as SolveResult,
)
from jax_softmax.solvers._solve import (
    l2_from_c as l2_from_c,
)
from jax_softmax.solvers._solve import (
    solve as solve,
)
