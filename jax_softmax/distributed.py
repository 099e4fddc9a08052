"""Data parallelism over devices and processes with ``jax.sharding``.

:func:`jax_softmax.fit` trains on a 1-D :class:`jax.sharding.Mesh` of devices, whose
one axis, ``"batch"``, splits every mini-batch: with ``d`` devices each holds
``batch_size / d`` examples of each batch, the parameters and the training set are
replicated, and ``jit`` partitions the step, inserting the all-reduce that sums the
devices' partial gradients. The order of the examples comes from the same key as on
one device, so the steps are the same and the results agree to float rounding (the
sums over the batch are added in another order).

Several processes (hosts) form one mesh after :func:`initialize`, which calls
``jax.distributed.initialize``. Every process runs the same program: it loads the
data set itself and puts it on its own devices, and those devices gather only their
own rows of each batch, so no process reads another's share. On CPUs JAX's gloo
collectives (its default) carry the all-reduce between processes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """A 1-D mesh of devices that splits each mini-batch along :data:`BATCH_AXIS`.

    Attributes:
      mesh: the devices, in one axis named ``"batch"``.
    """

    mesh: Mesh

    @property
    def num_devices(self) -> int:
        """How many devices share each batch."""
        return self.mesh.size

    @property
    def batch_indices(self) -> NamedSharding:
        """Sharding of an epoch's ``[num_batches, batch_size]`` example indices: each batch split."""
        return NamedSharding(self.mesh, PartitionSpec(None, BATCH_AXIS))

    @property
    def replicated(self) -> NamedSharding:
        """Sharding of an array every device holds whole (parameters, optimizer state, data set)."""
        return NamedSharding(self.mesh, PartitionSpec())

    def check_batch_size(self, batch_size: int) -> None:
        """Raises ``ValueError`` unless ``batch_size`` divides evenly over the devices."""
        if batch_size % self.num_devices:
            raise ValueError(
                f"batch_size must be a multiple of the number of devices, {self.num_devices}, so that "
                f"each device gets the same share of every batch, got {batch_size}"
            )

    def replicate(self, tree: Any) -> Any:
        """Copies every array of ``tree`` whole onto every device of the mesh.

        Each process supplies its devices' copies from its own value
        (``jax.make_array_from_callback``), so nothing crosses between processes: they
        must all pass the same value, as processes that run the same program with the
        same seed do. PRNG keys are replicated through their raw key data.

        Args:
          tree: a pytree of arrays (NumPy or JAX) and PRNG keys.

        Returns:
          The same tree of global arrays with :attr:`replicated` sharding.
        """
        return jax.tree.map(self._replicate_leaf, tree)

    @property
    def rows(self) -> NamedSharding:
        """Sharding of a data set split by examples: each device holds a block of rows."""
        return NamedSharding(self.mesh, PartitionSpec(BATCH_AXIS))

    def shard_rows(self, array: Any) -> jax.Array:
        """Splits ``array``'s first axis (its examples) into equal blocks, one per device.

        This is how :func:`jax_softmax.solve` takes a data set too large for one device,
        or spread over hosts: each device holds its rows, and the solver's products sum
        over devices. Each process supplies its own devices' blocks from its value, as
        :meth:`replicate` does.

        Raises:
          ValueError: when the rows do not divide evenly over the devices.
        """
        value = np.asarray(array)
        if value.ndim < 1 or value.shape[0] % self.num_devices:
            raise ValueError(
                f"the number of rows must be a multiple of the number of devices, {self.num_devices}, "
                f"to split them evenly, got shape {value.shape}"
            )
        return jax.make_array_from_callback(value.shape, self.rows, lambda index: value[index])

    def _replicate_leaf(self, leaf: Any) -> jax.Array:
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = self._replicate_leaf(jax.random.key_data(leaf))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        value = np.asarray(leaf)
        return jax.make_array_from_callback(value.shape, self.replicated, lambda index: value[index])


def data_parallel(num_devices: int | None = None) -> DataParallel | None:
    """The mesh :func:`jax_softmax.fit` splits batches over, or ``None`` for one device.

    Args:
      num_devices: how many devices, the first ``num_devices`` of ``jax.devices()``;
        ``None`` for all of them (every process's, after :func:`initialize`). With
        several processes it must include every device.

    Returns:
      A :class:`DataParallel`, or ``None`` when there is one device (nothing to split).

    Raises:
      ValueError: ``num_devices`` below 1, above the devices present, or, with several
        processes, fewer than all of them.
    """
    available = jax.device_count()
    if num_devices is None:
        num_devices = available
    if not isinstance(num_devices, int) or isinstance(num_devices, bool) or num_devices < 1:
        raise ValueError(f"devices must be an integer >= 1, got {num_devices!r}")
    if num_devices > available:
        raise ValueError(
            f"devices must be at most the {available} device{'s' * (available != 1)} present "
            f"({jax.devices()[0].platform}), got {num_devices}"
        )
    if jax.process_count() > 1 and num_devices != available:
        raise ValueError(
            f"devices must be all {available} devices of the {jax.process_count()} processes "
            f"when training over several processes, got {num_devices}"
        )
    if num_devices == 1:
        return None
    return DataParallel(Mesh(np.array(jax.devices()[:num_devices]), (BATCH_AXIS,)))


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Joins this process to a multi-process JAX run (``jax.distributed.initialize``).

    Call it first, before anything else touches JAX. With no arguments JAX finds them
    itself on a Cloud TPU slice, under Slurm or Open MPI, or from the environment
    variable ``JAX_COORDINATOR_ADDRESS`` and the cluster's own variables.

    Args:
      coordinator: ``HOST:PORT`` of process 0, where the coordination service listens.
      num_processes: how many processes take part.
      process_id: this process's number, in ``[0, num_processes)``.

    Raises:
      ValueError: for a malformed coordinator address, a bad process count or id, or
        (from JAX) arguments it could not find.
      RuntimeError: when JAX is already initialised in this process.
    """
    if coordinator is not None:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"coordinator must be HOST:PORT, with a port in [1, 65535], got {coordinator!r}")
    if num_processes is not None and (not isinstance(num_processes, int) or num_processes < 1):
        raise ValueError(f"num_processes must be an integer >= 1, got {num_processes!r}")
    if process_id is not None:
        if not isinstance(process_id, int) or process_id < 0:
            raise ValueError(f"process_id must be an integer >= 0, got {process_id!r}")
        if num_processes is not None and process_id >= num_processes:
            raise ValueError(f"process_id must be below num_processes ({num_processes}), got {process_id}")
    jax.distributed.initialize(coordinator, num_processes, process_id)
