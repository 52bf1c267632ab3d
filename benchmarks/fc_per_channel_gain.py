"""Per-channel minus per-tensor FULLY_CONNECTED output SQNR of the 10-Dense digits autoencoder of
tests/test_fc_per_channel.py, over training seeds: the model as trained, and the same float function with
widely differing weight rows (the test's ``spread_rows``, at several caps), so that the test's >= 4 dB bound
sits below the measured worst seed with a margin. Each seed trains once (~3 s idle, ~60 s on a busy core).

    nice .venv/bin/python benchmarks/fc_per_channel_gain.py             # seeds 0-4, caps 4, 16, 100
    .venv/bin/python benchmarks/fc_per_channel_gain.py --seeds 0 1 --caps 16

Writes results/fc_per_channel_gain.json and .md (output SQNR on LiteRT's reference kernels, 200 test
digits, calibration on 256 training digits, as the test computes it).
"""
from __future__ import annotations

import argparse
import time

from common import machine, md_table, write_results


def measure(seeds: list[int], caps: list[float]) -> dict:
    import torch

    from edgepack.demo import digits_split
    from test_fc_per_channel import SPREAD_CAP, per_tensor_and_per_channel_sqnr, spread_rows, train_autoencoder

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)  # as in tests/conftest.py
    digits = digits_split(size=8)
    out = {"machine": machine(), "test_cap": SPREAD_CAP, "caps": caps, "seeds": {}}
    for seed in seeds:
        t0 = time.perf_counter()
        model, x_train, x_test = train_autoencoder(digits, seed)
        variants = {"as trained": model, **{f"rows spread x{c:g}": spread_rows(model, x_train[:256], c) for c in caps}}
        row = {}
        for name, m in variants.items():
            sqnr = per_tensor_and_per_channel_sqnr(m, x_train, x_test)
            row[name] = {"per_tensor_db": sqnr[False], "per_channel_db": sqnr[True],
                         "gain_db": sqnr[True] - sqnr[False]}
        row["seconds"] = round(time.perf_counter() - t0, 1)
        out["seeds"][str(seed)] = row
        print(f"seed {seed}: " + ", ".join(f"{k} {v['gain_db']:+.2f} dB" for k, v in row.items() if k != "seconds"),
              flush=True)
    return out


def render(res: dict) -> str:
    names = [k for k in next(iter(res["seeds"].values())) if k != "seconds"]
    rows = [[seed] + [f"{r[n]['per_tensor_db']:.2f} / {r[n]['per_channel_db']:.2f} / {r[n]['gain_db']:+.2f}"
                      for n in names] for seed, r in res["seeds"].items()]
    gains = {n: [r[n]["gain_db"] for r in res["seeds"].values()] for n in names}
    spread = [[n, f"{min(g):+.2f}", f"{sum(g) / len(g):+.2f}", f"{max(g):+.2f}"] for n, g in gains.items()]
    mc = res["machine"]
    return f"""# Per-channel FC weights: gain over per-tensor on the 10-Dense autoencoder, per seed

Measured {mc['date']} on {mc['cpu']} ({mc['cores']} cores), torch {mc['torch']}. Regenerate with
`.venv/bin/python benchmarks/fc_per_channel_gain.py`. Output SQNR of the int8 .tflite on LiteRT's reference
kernels against float, 200 held-out digits; "rows spread xC": the trained model with the same float function,
each hidden channel scaled up to its tensor's largest range (at most C times) and the next layer's column
down (`tests/test_fc_per_channel.spread_rows`; the test uses C = {res['test_cap']:g}).

Per-tensor / per-channel / gain (dB):

{md_table(["seed"] + names, rows)}

Gain over the seeds:

{md_table(["model", "min", "mean", "max"], spread)}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    ap.add_argument("--caps", type=float, nargs="*", default=[4.0, 16.0, 100.0])
    args = ap.parse_args()
    res = measure(args.seeds, args.caps)
    print("wrote", *write_results("fc_per_channel_gain", res, render(res)))


if __name__ == "__main__":
    main()
