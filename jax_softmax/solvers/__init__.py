"""The exact optimum: full-batch solvers for L2-regularised softmax regression.

* :func:`solve`, :class:`SolveResult`, :class:`NotConvergedWarning`: minimise the loss
  over a whole data set, by Newton-CG (the hand-derived Hessian-vector product) or
  optax's L-BFGS, in one compiled program (``_solve``, ``_newton_cg``, ``_lbfgs``).
* :func:`l2_from_c`: scikit-learn's ``C`` in this project's terms.
"""

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
