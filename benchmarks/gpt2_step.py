"""Issue 24: dropout's share of a real transformer training step, torch's against dropkit's.

A Hugging Face ``GPT2LMHeadModel`` built from a config (4 layers, 384 wide, 6 heads, vocab 8000,
256 positions; every rate 0.1: embedding, attention and both residual dropouts), batch 8 x 256
tokens, one step = forward with the language-model loss, backward, SGD step. For each attention
implementation (``eager``, ``sdpa``) three models with the same weights:

* ``torch``: the model as built (torch's ``nn.Dropout`` and the attention's own dropout);
* ``dropkit``: the same model after ``dropkit.nn.convert_dropout(model)``;
* ``none``: every rate set to 0 (``dropkit.nn.set_dropout_p(model, 0.0)``), the yardstick.

The steps of all models are timed in turn within each round, in a new random order every round
(a change in machine load hits them alike), and the table gives medians over rounds and dropout's
share of the step: (median - median of ``none``) / median of ``none``, both from the same run.

    PYTHONPATH=src .venv/bin/python benchmarks/gpt2_step.py [--rounds 15] [--threads 2]

The issue's goals are printed beside each share: dropkit's share <= 7 % and <= half of torch's.
"""

from __future__ import annotations

import argparse
import copy
import platform
import random
import statistics
import time
import warnings

import torch

import dropkit.nn as dnn

ATTNS = ("eager", "sdpa")
VARIANTS = ("none", "torch", "dropkit")


def gpt2_config(attn: str, p: float = 0.1, seq_len: int = 256):
    import transformers

    return transformers.GPT2Config(
        vocab_size=8000, n_positions=seq_len, n_embd=384, n_layer=4, n_head=6,
        resid_pdrop=p, embd_pdrop=p, attn_pdrop=p, bos_token_id=0, eos_token_id=0,
        attn_implementation=attn,
    )  # fmt: skip


def make_models(attn: str, seq_len: int = 256) -> dict[str, torch.nn.Module]:
    """The three variants of one attention implementation, with the same weights."""
    import transformers

    torch.manual_seed(0)
    base = transformers.GPT2LMHeadModel(gpt2_config(attn, seq_len=seq_len)).train()
    none = copy.deepcopy(base)
    dnn.set_dropout_p(none, 0.0)
    converted = copy.deepcopy(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dnn.ConversionWarning)  # the attention gates, reported
        converted = dnn.convert_dropout(converted)
    return {"none": none, "torch": base, "dropkit": converted}


def step_fn(model: torch.nn.Module, ids: torch.Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def interleaved(steps: dict[str, object], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per step of each entry, the entries in a new random order every round."""
    times: dict[str, list[float]] = {k: [] for k in steps}
    order = list(steps)
    rng = random.Random(0)
    for r in range(warmup + rounds):
        rng.shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            steps[name]()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--attn", nargs="+", choices=ATTNS, default=list(ATTNS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ids = torch.randint(
        8000, (args.batch, args.seq_len), generator=torch.Generator().manual_seed(1)
    )
    steps = {}
    for attn in args.attn:
        for variant, model in make_models(attn, args.seq_len).items():
            steps[(attn, variant)] = step_fn(model, ids)
    times = interleaved(steps, args.rounds, args.warmup)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"threads={args.threads}; GPT-2 4x384, 6 heads, batch {args.batch} x {args.seq_len}, "
        f"all pdrop 0.1, SGD step; medians of {args.rounds} interleaved rounds\n"
    )
    print("| attention | variant | median ms/step | p10-p90 ms | dropout's share | goal |")
    print("|---|---|---|---|---|---|")
    for attn in args.attn:
        med = {v: statistics.median(times[(attn, v)]) for v in VARIANTS}
        share = {v: med[v] / med["none"] - 1 for v in VARIANTS}
        for v in VARIANTS:
            q = statistics.quantiles(times[(attn, v)], n=10)
            goal = ""
            if v == "dropkit":
                ok = share[v] <= 0.07 and share[v] <= share["torch"] / 2
                goal = f"<= 7 % and <= {share['torch'] / 2:.1%} (half of torch's): {ok}"
            print(
                f"| {attn} | {v} | {med[v] * 1e3:.1f} | {q[0] * 1e3:.0f}-{q[8] * 1e3:.0f} | "
                f"{share[v]:+.1%} | {goal} |"
            )


if __name__ == "__main__":
    main()
