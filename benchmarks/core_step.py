"""Speed of one training step of core/, against the machine's matmul limit and PyTorch CPU.

    python benchmarks/core_step.py [--rounds 7] [--threads 1] [--part all|steps|overhead|batchnorm]

Prints, for float32 and float64 and (D, H, C, batch) shapes, the examples/s of one training
step (forward + backward + momentum update, reg on), the fraction of the machine's matmul
limit it reaches (counting the real matrix work: 4*B*D*H for the first layer, which needs no
input gradient, 6*B*H*C for the second), and, when torch is importable, the ratio to the same
net in PyTorch with the same thread count, measured in the same rounds, interleaved. Then the
trainer's own overhead over the bare step on digits, and what batch normalization costs a
step: the same net without and with `normalization: batchnorm` (two hidden layers, so that
batchnorm runs twice), interleaved in the same rounds. Numbers are medians over rounds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

THREADS = "1"
for _i, _arg in enumerate(sys.argv):
    if _arg == "--threads" and _i + 1 < len(sys.argv):
        THREADS = sys.argv[_i + 1]
# BLAS reads these once, at import: set before numpy is imported.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = THREADS

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.blas import describe_blas  # noqa: E402
from core import trainer  # noqa: E402
from core.config import TrainConfig  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.model import FullyConnectedNet  # noqa: E402
from core.optim import momentum  # noqa: E402
from core.trainer import build_model, train  # noqa: E402

SHAPES = [(3072, 50, 10, 200), (3072, 500, 10, 200), (64, 100, 10, 50)]
REG = 1e-3
LR, MU = 1e-3, 0.9

torch: Any  # None when PyTorch is not installed: the comparison is then skipped
try:
    import torch as _torch_module
except ImportError:
    torch = None
else:
    _torch_module.set_num_threads(int(THREADS))
    torch = _torch_module


def matmul_limit(dtype: type, repeats: int = 5) -> float:
    """GFLOP/s of a 2048^3 matmul: the most this machine's BLAS does with these threads."""
    rng = np.random.default_rng(0)
    a: np.ndarray = rng.random((2048, 2048)).astype(dtype)
    b: np.ndarray = rng.random((2048, 2048)).astype(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * 2048**3 / best / 1e9


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


BATCHNORM_SHAPES = [(3072, 500, 10, 200), (64, 100, 10, 50)]


class OurStep:
    """The trainer's step: loss and flat gradient, then one momentum update of the arena."""

    def __init__(
        self,
        d: int,
        h: int,
        c: int,
        batch: int,
        dtype: str,
        hidden_layers: int = 1,
        normalization: str = "none",
    ) -> None:
        rng = np.random.default_rng(0)
        self.model = FullyConnectedNet(
            d, c, (h,) * hidden_layers, reg=REG, dtype=dtype, rng=rng, normalization=normalization
        )
        self.config = {"learning_rate": LR, "momentum": MU}
        self.X = rng.standard_normal((batch, d)).astype(dtype)
        self.y = rng.integers(0, c, batch)

    def __call__(self) -> None:
        _, grad = self.model.loss_flat(self.X, self.y)
        momentum(self.model.flat, grad, self.config)


class TorchStep:
    def __init__(self, d: int, h: int, c: int, batch: int, dtype: str) -> None:
        assert torch is not None
        torch_dtype = torch.float32 if dtype == "float32" else torch.float64
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, c)
        ).to(torch_dtype)
        weights = [p for n, p in self.net.named_parameters() if n.endswith("weight")]
        biases = [p for n, p in self.net.named_parameters() if n.endswith("bias")]
        # weight_decay 2*reg on weights only == the gradient of reg * sum(W**2).
        groups: list[dict[str, Any]] = [
            {"params": weights, "weight_decay": 2 * REG},
            {"params": biases},
        ]
        self.opt = torch.optim.SGD(groups, lr=LR, momentum=MU)
        self.X = torch.randn(batch, d, dtype=torch_dtype)
        self.y = torch.randint(0, c, (batch,))
        self.loss = torch.nn.CrossEntropyLoss()

    def __call__(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.loss(self.net(self.X), self.y).backward()
        self.opt.step()


def per_step(step: Callable[[], None], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def calibrated_steps(step: Callable[[], None], seconds: float) -> int:
    """How many steps take about `seconds` (after a warm-up)."""
    per_step(step, 3)
    return max(3, int(seconds / per_step(step, 5)))


def bench_shape(
    shape: tuple[int, int, int, int], dtype: str, rounds: int, seconds: float = 0.25
) -> dict[str, Any]:
    """Medians over rounds; each round times the limit, our step and torch's back to back,
    because this machine's speed drifts by 20-30% between minutes."""
    d, h, c, batch = shape
    np_dtype = np.float32 if dtype == "float32" else np.float64
    flops = 4 * batch * d * h + 6 * batch * h * c
    ours = OurStep(*shape, dtype=dtype)
    theirs = TorchStep(*shape, dtype=dtype) if torch is not None else None
    steps = calibrated_steps(ours, seconds)
    if theirs is not None:
        per_step(theirs, steps)
    limits, our_times, fractions, ratios = [], [], [], []
    for _ in range(rounds):
        limit = matmul_limit(np_dtype, repeats=2)
        t_ours = per_step(ours, steps)
        limits.append(limit)
        our_times.append(t_ours)
        fractions.append(flops / t_ours / 1e9 / limit)
        if theirs is not None:
            ratios.append(per_step(theirs, steps) / t_ours)
    t = float(np.median(our_times))
    return {
        "limit": float(np.median(limits)),
        "examples_per_s": batch / t,
        "ms_per_step": t * 1e3,
        "fraction": float(np.median(fractions)),
        "vs_torch": float(np.median(ratios)) if ratios else None,
    }


def batchnorm_cost(
    shape: tuple[int, int, int, int], dtype: str, rounds: int, seconds: float = 0.25
) -> dict[str, float]:
    """ms per step of a net with two hidden layers of H, without and with batchnorm."""
    plain = OurStep(*shape, dtype=dtype, hidden_layers=2)
    normed = OurStep(*shape, dtype=dtype, hidden_layers=2, normalization="batchnorm")
    steps = calibrated_steps(plain, seconds)
    per_step(normed, steps)
    plain_times, normed_times = [], []
    for _ in range(rounds):
        plain_times.append(per_step(plain, steps))
        normed_times.append(per_step(normed, steps))
    t_plain, t_normed = float(np.median(plain_times)), float(np.median(normed_times))
    return {
        "plain_ms": t_plain * 1e3,
        "batchnorm_ms": t_normed * 1e3,
        "cost": t_normed / t_plain - 1,
    }


def print_batchnorm_table(rounds: int) -> None:
    print("Batch normalization per step (two hidden layers of H, momentum, reg on):")
    print("| dtype | (D, H, C, batch) | ms/step without | ms/step with batchnorm | cost |")
    print("|" + "---|" * 5)
    for dtype in ("float32", "float64"):
        for shape in BATCHNORM_SHAPES:
            r = batchnorm_cost(shape, dtype, rounds)
            print(
                f"| {dtype} | {shape} | {r['plain_ms']:.3f} | {r['batchnorm_ms']:.3f} | "
                f"{100 * r['cost']:+.1f}% |",
                flush=True,
            )


def trainer_overhead(rounds: int) -> dict[str, float]:
    """Per epoch on digits (ms), and the trainer's overhead over the bare step.

    train() is timed as it is and with its epoch-end evaluation (record_epoch) replaced by a
    no-op; the bare step is timed on an epoch's fixed batches and on freshly shuffled ones (the
    batch sampling every trainer must do). Overheads are small differences of larger times,
    and noise on this machine only ever adds time, so each part is its fastest round.
    """
    data = load_dataset("digits")
    config = TrainConfig(num_epochs=20)
    epochs = int(config.num_epochs)
    model = build_model(config, data)
    batch = config.batch_size
    per_epoch = len(data.X_train) // batch
    batches = [
        (data.X_train[i * batch : (i + 1) * batch], data.y_train[i * batch : (i + 1) * batch])
        for i in range(per_epoch)
    ]
    optim_config = {"learning_rate": config.learning_rate, "momentum": MU}

    def bare_epochs() -> None:
        for _ in range(epochs):
            for X, y in batches:
                _, grad = model.loss_flat(X, y)
                momentum(model.flat, grad, optim_config)

    def shuffled_bare_epochs() -> None:
        rng = np.random.default_rng(0)
        for _ in range(epochs):
            order = rng.permutation(len(data.X_train))
            for i in range(per_epoch):
                rows = order[i * batch : (i + 1) * batch]
                _, grad = model.loss_flat(data.X_train[rows], data.y_train[rows])
                momentum(model.flat, grad, optim_config)

    def train_without(name: str, stand_in: Any) -> None:
        """train() with trainer.<name> replaced by stand_in."""
        original = getattr(trainer, name)
        setattr(trainer, name, stand_in)
        try:
            train(build_model(config, data), data, config)
        finally:
            setattr(trainer, name, original)

    times: dict[str, list[float]] = {
        "train": [], "no_stats": [], "no_eval": [], "bare": [], "shuffled": []
    }  # fmt: skip
    for _ in range(3 * rounds):
        times["train"].append(_timed(partial(train, build_model(config, data), data, config)))
        # The per-layer distributions (issue 15) alone: their statistics skipped.
        times["no_stats"].append(
            _timed(partial(train_without, "layer_statistics", lambda hidden: ({}, {})))
        )
        times["no_eval"].append(
            _timed(partial(train_without, "record_epoch", lambda *args, **kwargs: None))
        )
        times["bare"].append(_timed(bare_epochs))
        times["shuffled"].append(_timed(shuffled_bare_epochs))
    t = {name: min(values) for name, values in times.items()}
    return {
        **{f"{name}_ms": value / epochs * 1e3 for name, value in t.items()},
        "steps": float(per_epoch),
        "without_eval": t["no_eval"] / t["bare"] - 1,
        "sampling": t["shuffled"] / t["bare"] - 1,
        "evaluation": (t["train"] - t["no_eval"]) / t["bare"],
        "statistics": (t["train"] - t["no_stats"]) / t["bare"],
    }


def overhead_report(o: dict[str, float]) -> str:
    return (
        f"Trainer overhead on digits (default config, 20 epochs, {o['steps']:.0f} steps/epoch), "
        "ms/epoch:\n"
        f"  train() {o['train_ms']:.3f}; train() without epoch-end evaluation "
        f"{o['no_eval_ms']:.3f}; bare steps on {o['steps']:.0f} fixed batches {o['bare_ms']:.3f}; "
        f"on shuffled batches {o['shuffled_ms']:.3f}\n"
        f"  overhead over the bare step without evaluation: {100 * o['without_eval']:.1f}% "
        f"(batch sampling alone: {100 * o['sampling']:.1f}%); epoch-end evaluation "
        f"(3 accuracies and the layer statistics) adds {100 * o['evaluation']:.1f}%, of which "
        f"the per-layer statistics {100 * o['statistics']:.1f}% "
        f"({o['train_ms'] - o['no_stats_ms']:.3f} ms/epoch)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", default=THREADS, help="BLAS and torch threads (default 1)")
    parser.add_argument("--part", choices=("all", "steps", "overhead", "batchnorm"), default="all")
    args = parser.parse_args()
    print(describe_blas())
    torch_note = f"torch {torch.__version__}" if torch is not None else "torch not installed"
    print(f"numpy {np.__version__}, {torch_note}, {THREADS} thread(s), {args.rounds} rounds")
    if args.part in ("all", "steps"):
        print()
        print_step_table(args.rounds)
    if args.part in ("all", "overhead"):
        print()
        print(overhead_report(trainer_overhead(args.rounds)))
    if args.part in ("all", "batchnorm"):
        print()
        print_batchnorm_table(args.rounds)


def print_step_table(rounds: int) -> None:
    print(
        "| dtype | (D, H, C, batch) | limit GFLOP/s | examples/s | ms/step | % of limit "
        "| x PyTorch |"
    )
    print("|" + "---|" * 7)
    for dtype in ("float32", "float64"):
        for shape in SHAPES:
            r = bench_shape(shape, dtype, rounds)
            vs = f"{r['vs_torch']:.2f}" if r["vs_torch"] is not None else "n/a"
            print(
                f"| {dtype} | {shape} | {r['limit']:.1f} | {r['examples_per_s']:,.0f} | "
                f"{r['ms_per_step']:.3f} | {100 * r['fraction']:.1f}% | {vs} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
