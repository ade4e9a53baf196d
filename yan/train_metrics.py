"""The training loop's metrics, kept on the device between log steps.

Reading a GPU value on the host (``.item()``, ``.tolist()``, ``float(t)``, ``int(t)``) waits
for every kernel queued before it, so doing it on every step stops the host from running ahead
of the GPU. :class:`StepMetrics` therefore keeps each step's loss parts and gradient norm as
device tensors, counts a non-finite loss on the device, counts tokens on the host (from the
batch masks before they move to the device), and all-reduces and reads them only when they are
needed: at a log step (:meth:`StepMetrics.reduce`) and before a checkpoint records its token
count (:meth:`StepMetrics.flush`). The values logged are those of the log step itself, averaged
over micro-batches and ranks, as they were when they were read on every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from yan.distributed import DistEnv, all_reduce_sum


@dataclass
class StepMetrics:
    """Loss parts of the last step (device), non-finite steps and tokens since the last
    read-out; ``interval_tokens`` are the tokens of all ranks read out since the last log."""

    env: DistEnv
    names: list[str] = field(default_factory=list)
    last: torch.Tensor | None = None  # this rank's loss parts of the last step (device)
    grad_norm: torch.Tensor | None = None  # the same on every rank (gradients are all-reduced)
    bad: torch.Tensor | None = None  # steps with a non-finite loss since the last read-out
    tokens: int = 0  # this rank's tokens since the last read-out
    first_step: int = 1  # the first step since the last read-out
    interval_tokens: int = 0

    def add(
        self, names: list[str], local: torch.Tensor, grad_norm: torch.Tensor, tokens: int
    ) -> None:
        """Record one optimiser step (no host sync)."""
        self.names, self.last, self.grad_norm = names, local, grad_norm
        bad = (~torch.isfinite(local[0])).to(torch.float32)
        self.bad = bad if self.bad is None else self.bad + bad
        self.tokens += tokens

    def _read_out(self, step: int, with_parts: bool) -> list[float]:
        """All-reduce (sum over ranks) ``[loss parts..., non-finite steps, tokens]`` and read
        it; raises ``FloatingPointError`` when any rank saw a non-finite loss."""
        device = self.env.device
        parts = self.last if with_parts and self.last is not None else torch.zeros(0, device=device)
        bad = self.bad if self.bad is not None else torch.zeros((), device=device)
        tokens = torch.tensor([float(self.tokens)], device=device)
        reduced = torch.cat([parts.float(), bad.reshape(1).float(), tokens])
        all_reduce_sum(reduced, self.env)
        values = reduced.tolist()
        if values[-2] > 0:
            where = f"step {step}" if self.first_step == step else f"steps {self.first_step}-{step}"
            loss = values[0] / self.env.world_size if with_parts else float("nan")
            raise FloatingPointError(
                f"non-finite loss at {where} (last loss {loss}); lower --lr or check the data"
            )
        self.interval_tokens += int(values[-1])
        self.bad, self.tokens, self.first_step = None, 0, step + 1
        return values

    def reduce(self, step: int) -> tuple[dict[str, float], int]:
        """The last step's loss parts averaged over ranks (plus ``grad_norm``) and the tokens of
        all ranks since the previous read-out: what a log step records."""
        values = self._read_out(step, with_parts=True)
        n = len(self.names)
        means = {k: v / self.env.world_size for k, v in zip(self.names, values[:n])}
        assert self.grad_norm is not None
        means["grad_norm"] = float(self.grad_norm)
        return means, int(values[-1])

    def flush(self, step: int) -> int:
        """Tokens of all ranks since the previous read-out (for a checkpoint's count)."""
        return int(self._read_out(step, with_parts=False)[-1])


__all__ = ["StepMetrics"]
