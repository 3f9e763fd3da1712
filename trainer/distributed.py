"""One training loop, three ways to run it: a single process, ``horovodrun`` or ``torchrun``.

:func:`detect` reads the launcher's environment and returns a :class:`Backend`:

* ``horovodrun`` (sets ``HOROVOD_RANK``): Horovod over gloo — ``DistributedOptimizer`` averages
  gradients, parameters and optimizer state are broadcast from rank 0;
* ``torchrun`` (sets ``TORCHELASTIC_RUN_ID``/``RANK``/``WORLD_SIZE``): ``torch.distributed`` with the
  gloo backend and ``DistributedDataParallel``;
* otherwise a single process.

Every backend offers the same few collectives the loop needs (sum, broadcast of a Python object,
gather of a Python object), so the loop itself does not know how it was launched.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Literal

import torch
from torch import nn

Launcher = Literal["local", "torchrun", "horovod"]


class Backend:
    """A single process; the base of the distributed backends."""

    name: Launcher = "local"

    def __init__(self) -> None:
        self.rank = 0
        self.world = 1
        self.local_rank = 0
        self.local_world = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """The module to call in training (DDP wraps it); parameters stay those of ``model``."""
        return model

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
        return optimizer

    def sync_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Make every rank start from rank 0's parameters and optimizer state."""

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        return values

    def broadcast_object(self, obj: Any) -> Any:
        return obj

    def gather_object(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


class TorchDistributed(Backend):
    """``torchrun``: gloo process group and DistributedDataParallel."""

    name: Launcher = "torchrun"

    def __init__(self, timeout_s: float = 1800) -> None:
        import torch.distributed as dist

        super().__init__()
        self._dist = dist
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
        self.rank = dist.get_rank()
        self.world = dist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world)))

    def wrap_model(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        # DDP broadcasts rank 0's parameters and buffers when it wraps the model.
        return DistributedDataParallel(model)

    def sync_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        for tensor in list(model.state_dict().values()):
            self._dist.broadcast(tensor, src=0)
        state = self.broadcast_object(optimizer.state_dict() if self.is_main else None)
        optimizer.load_state_dict(state)

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        out = values.detach().clone()
        self._dist.all_reduce(out, op=self._dist.ReduceOp.SUM)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        box = [obj]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_object(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world
        self._dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        self._dist.barrier()

    def shutdown(self) -> None:
        if self._dist.is_initialized():
            self._dist.destroy_process_group()


class HorovodBackend(Backend):
    """``horovodrun --gloo``: Horovod's DistributedOptimizer and broadcasts."""

    name: Launcher = "horovod"

    def __init__(self) -> None:
        try:
            import horovod.torch as hvd
        except ImportError as exc:
            raise RuntimeError(
                "this process was started by horovodrun but horovod.torch does not import "
                f"({exc}); build it with script/build-horovod (docs/horovod.md)"
            ) from None
        super().__init__()
        self._hvd = hvd
        hvd.init()
        self.rank = hvd.rank()
        self.world = hvd.size()
        self.local_rank = hvd.local_rank()
        self.local_world = hvd.local_size()

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.optim.Optimizer:
        wrapped: torch.optim.Optimizer = self._hvd.DistributedOptimizer(
            optimizer, named_parameters=model.named_parameters()
        )
        return wrapped

    def sync_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self._hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        self._hvd.broadcast_optimizer_state(optimizer, root_rank=0)

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self._hvd.allreduce(values.detach().clone(), op=self._hvd.Sum)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        return self._hvd.broadcast_object(obj, root_rank=0)

    def gather_object(self, obj: Any) -> list[Any]:
        out: list[Any] = self._hvd.allgather_object(obj)
        return out

    def barrier(self) -> None:
        self._hvd.barrier()

    def shutdown(self) -> None:
        self._hvd.shutdown()


def launched_by() -> Launcher:
    """Which launcher started this process, from its environment."""
    if "HOROVOD_RANK" in os.environ or "HOROVOD_GLOO_RENDEZVOUS_ADDR" in os.environ:
        return "horovod"
    if "TORCHELASTIC_RUN_ID" in os.environ or ("RANK" in os.environ and "WORLD_SIZE" in os.environ):
        return "torchrun"
    return "local"


def detect() -> Backend:
    """The backend for this process (see the module docstring)."""
    kind = launched_by()
    if kind == "horovod":
        return HorovodBackend()
    if kind == "torchrun":
        return TorchDistributed()
    return Backend()
