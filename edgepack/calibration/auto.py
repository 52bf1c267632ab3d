"""``--calibration auto``: each activation tensor gets the candidate range whose int8 error is lowest
where it matters, at the int8 output of the op(s) that read it, against float.

One streaming pass fills a histogram per tensor (``collect_ranges`` with a histogram observer); every
method reads the same histogram (``HistogramObserver.view``), so each candidate is exactly the range that
method would give alone: minmax, percentile at ``PERCENTILES``, mse, entropy. A candidate that cuts
away more than ``COLLAPSE_ENERGY`` of a tensor's energy is *collapsed* and never chosen.

The choice, measured where it matters: (1) start from the single method with the best model-output
SQNR, or of those it does not beat beyond noise, the one clipping least (``least_clipping_of_the_best``); (2) per group of tensors sharing parameters (``quantize.shared_groups``), in topological order, a
cheap local score ranks the candidates: the group is fake-quantized, each op reading it runs once with
int8 weights (``GraphModule.node_value``, other inputs float), its output is fake-quantized with
provisional (minmax) parameters and compared with float (``GroupScorer.error``: groups are independent,
so the budget ladder or a process pool can score any subset); (3) the best-ranked candidates are run
through the whole graph (``GroupScorer.output_noise``) and replace the current choice only when the model
output gains >= MIN_GAIN_DB and the per-sample gain is significant (``better``). Model outputs keep the
starting method: their clipping hits rare samples at full weight and scoring cannot see it.

Scoring runs on up to ``MAX_SAMPLES`` calibration samples, the same ones the ranges saw: minmax never clips
there, so a clipping range must earn its gain on samples that show its clipping (conservative). Measured
on 8 issue-like models: 64 samples held out of the statistics let clipping ranges win by chance and lose
up to 5 dB on new data (3 of 8); 256 in-sample samples never went below minmax. Benchmark:
benchmarks/bench_autoquant.py (held-out samples).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from edgepack.input_batch import as_float32, as_torch
from ..ir import Graph, QuantParams
from ..ir.quant import params_from_range
from .auto_rules import MIN_GAIN_DB, better, least_clipping_of_the_best, output_db
from .observers import HistogramObserver, Observer
from .output_error import db_or_none, ratio_to_db
from . import scatter
from .quantize import QuantRules, quantize_graph, shared_groups

log = logging.getLogger(__name__)

PERCENTILES = (99.9, 99.99, 99.999)
# (label, method, options); minmax first: it wins ties, so auto departs from it only for a measured gain.
CANDIDATES = (("minmax", "minmax", {}),) + tuple(
    (f"percentile:{p:g}", "percentile", {"percentile": p}) for p in PERCENTILES) + (
    ("mse", "mse", {}), ("entropy", "entropy", {}))
COLLAPSE_ENERGY = 0.5  # a range clipping most of a tensor's energy has collapsed: never chosen
# A forced method's range clipping more than this is flagged: the tensor's own SQNR is capped near 10 dB.
# Auto may still pick such a range when the model output measures better (rare huge outliers whose
# consumers barely use them: clipping them is the point).
CLIP_WARN_ENERGY = 0.1
MAX_SAMPLES = 256
TRIES_PER_GROUP = 2  # candidates (best local score first) measured at the model output per group
MAX_SCORING_BYTES = 256 << 20  # float activations kept for scoring; fewer samples on big models
# the local score only ranks candidates (every kept one is measured at the output on all samples): it runs
# on every RANKING_STRIDE-th scoring sample (bench_export_time: ~2x faster auto; bench_auto_ranking: SQNR)
RANKING_STRIDE = 4
REF64_KEPT = 8  # float64 copies of references kept while a group's candidates are scored (speed only)
STREAM_METHOD = "mse"  # any histogram method: its observers hold the shared statistics


def candidate_ranges(obs: Observer, labels=None) -> dict[str, tuple[float, float]]:
    """Every candidate's range (or those ``labels`` name) from one tensor's observer (a histogram
    observer gives all of them)."""
    if not isinstance(obs, HistogramObserver):
        return {"minmax": tuple(float(v) for v in obs.range())}
    return {label: tuple(float(v) for v in obs.view(method, **opts).range()) for label, method, opts in CANDIDATES
            if labels is None or label in labels}


def clipped_energy(obs: Observer, rng: tuple[float, float]) -> float:
    """Share of the tensor's energy that the range clips (0 without a histogram: minmax clips nothing)."""
    return obs.clipped_energy(*rng) if isinstance(obs, HistogramObserver) else 0.0


def clipping_tensors(graph: Graph, observers: dict[str, Observer], ranges: dict) -> list[dict]:
    """Tensors whose range clips more than CLIP_WARN_ENERGY of their energy (for a forced method);
    ``collapsed``: more than COLLAPSE_ENERGY."""
    found = []
    for name in graph.activations():
        if name in observers and name in ranges:
            share = clipped_energy(observers[name], ranges[name])
            if share > CLIP_WARN_ENERGY:
                found.append({"tensor": name, "range": [float(v) for v in ranges[name]],
                              "clipped_energy": round(share, 3), "collapsed": bool(share > COLLAPSE_ENERGY)})
    return found


@dataclass
class AutoChoice:
    """Per tensor: the range chosen, the candidate it came from and what scoring measured."""

    ranges: dict[str, tuple[float, float]]
    methods: dict[str, str]  # tensor -> candidate label (or "fixed" for softmax/sigmoid/tanh groups)
    tensors: dict[str, dict] = field(default_factory=dict)  # tensor -> record for the report
    output_sqnr_db: dict[str, float] = field(default_factory=dict)  # output check: option -> dB
    scope: str = "per-tensor"  # or the single method the output check preferred
    samples: int = 0
    held_out: bool = False  # scored on samples the range statistics had not seen

    def counts(self) -> dict[str, int]:
        return {m: list(self.methods.values()).count(m) for m in sorted(set(self.methods.values()))}

    def to_json(self) -> dict:
        return {"rule": "start from the single method with the best model-output SQNR (of those within noise of "
                        "it, the one clipping least); then per tensor group, "
                        "the candidates with the lowest int8 error at the output of the ops reading it are "
                        "tried (model outputs keep the starting method) and kept when the model output gains "
                        f">= {MIN_GAIN_DB} dB; candidates clipping "
                        f"> {COLLAPSE_ENERGY:.0%} of a tensor's energy are collapsed and never chosen",
                "scope": self.scope, "scored_on_samples": self.samples, "scored_held_out": self.held_out,
                "methods_used": self.counts(), "output_sqnr_db": {k: db_or_none(v) for k, v in self.output_sqnr_db.items()},
                "tensors": self.tensors}


def _scoring_inputs(graph: Graph, x: np.ndarray) -> np.ndarray:
    per_sample = sum(int(np.prod(graph.tensors[t].shape[1:] or (1,))) for t in graph.activations()) * 4
    n = max(1, min(MAX_SAMPLES, len(x), MAX_SCORING_BYTES // max(per_sample, 1)))
    return as_float32(x[:n])


class GroupScorer:
    """Scores candidate parameters of one group of tensors on fixed float activations (see module doc)."""

    def __init__(self, graph: Graph, provisional: Graph, x: np.ndarray):
        import torch

        from ..ir.torch_exec import run, to_module

        self.graph, self.torch, self.x = graph, torch, as_torch(x)
        self.module = to_module(provisional, fake_quant=True).eval()  # int8 weights, provisional output params
        self.provisional = provisional
        self.ref = {k: torch.from_numpy(v) for k, v in run(graph, [x], keep="all").items()}
        batch = set(graph.activations()) | set(graph.inputs)  # error()'s samples (contiguous: faster ops)
        self.rank_ref = {k: v[::RANKING_STRIDE].contiguous() if k in batch and v.dim() and len(v) == len(x)
                         else v for k, v in self.ref.items()}
        self.signal: dict[str, float] = {}  # tensor -> float energy (the denominator of every relative error)
        self._ref64: dict = {}  # the last REF64_KEPT float references in float64 (_relative)
        self.consumers: dict[str, list] = {}
        for n in graph.nodes:
            for i in n.inputs:
                if i in self.ref:
                    self.consumers.setdefault(i, []).append(n)

    def set_params(self, params: dict[str, QuantParams]) -> None:
        """Activation parameters the output measurement uses (the weights stay as provisional)."""
        self.module.quant.update(params)

    def output_noise(self, params: dict[str, QuantParams] | None = None) -> np.ndarray:
        """Model-output noise of the fake-quantized graph (``params`` set first): per sample and output,
        squared error over the output's total float signal, so sums over samples give 1/SQNR."""
        if params:
            self.set_params(params)
        with self.torch.no_grad():
            got = self.module.run_dict([self.x])
        return self._noise(got)

    def settle(self) -> None:
        """Run the graph once with the current parameters and keep every fake-quantized activation, so
        ``trial`` recomputes only the nodes a change reaches."""
        with self.torch.no_grad():
            self.cache = self.module.run_dict([self.x], keep="all")
        self.born = {t: i for i, n in enumerate(self.module.nodes) for t in n.outputs}

    def trial(self, params: dict[str, QuantParams]):
        """(output noise, activations) with ``params`` changed from the settled ones, which stay set: the
        nodes before the first one producing a changed tensor are not run again (their values are the same
        bits). ``accept`` makes the trial the settled state."""
        start, saved = min(self.born.get(t, -1) for t in params), {k: self.module.quant.get(k) for k in params}
        self.module.quant.update(params)
        env = None  # a graph input changes: everything does
        if start >= 0:
            env = {k: v for k, v in self.cache.items() if self.born.get(k, -1) < start}
        changed = set(params)
        with self.torch.no_grad():
            for n in self.module.nodes[start:] if env is not None else ():
                if changed.isdisjoint(n.inputs) and changed.isdisjoint(n.outputs):  # same inputs, same bits
                    env.update({o: self.cache[o] for o in n.outputs if o in self.cache})
                    continue
                self.module._run_node(n, env, None)
                changed.update(n.outputs)
        noise = self._noise(env) if env is not None else self.output_noise()
        self.module.quant.update(saved)
        return noise, env

    def accept(self, params: dict[str, QuantParams], env) -> None:
        self.set_params(params)
        if env is None:
            self.settle()
        else:
            self.cache = env

    def _noise(self, got: dict) -> np.ndarray:
        cols = []
        for o in self.graph.outputs:
            r, t = self.ref[o].double(), got[o].double()
            err = ((t - r) ** 2).reshape(len(r), -1).sum(1)
            cols.append((err / max(float((r * r).sum()), 1e-30)).numpy())
        noise = np.stack(cols, 1)
        return np.where(np.isfinite(noise), noise, np.inf)

    def error(self, members: list[str], qp: QuantParams) -> float:
        """Mean relative squared error (noise / signal) at the int8 outputs of the ops reading ``members``
        (and at members that are model outputs) with the members quantized by ``qp``."""
        from ..ir.torch_exec import fake_quant_activation

        torch, inside, ref = self.torch, set(members), self.rank_ref
        values = {m: fake_quant_activation(ref[m], qp) for m in members}
        errs, seen = [], set()
        with torch.no_grad():
            for m in members:
                if m in self.graph.outputs:
                    errs.append(self._relative(values[m], m))
                for n in self.consumers.get(m, []):
                    out = n.outputs[0]
                    if n.name in seen or out in inside or out not in ref:
                        continue
                    seen.add(n.name)
                    y = self.module.node_value(n, {i: values.get(i, ref[i]) for i in n.inputs if i in ref})
                    out_qp = self.provisional.tensors[out].quant
                    if out_qp is not None and y.is_floating_point():
                        y = fake_quant_activation(y, out_qp)
                    errs.append(self._relative(y, out))
        return float(np.mean(errs)) if errs else 0.0

    def _relative(self, got, name: str) -> float:
        ref = self._ref64.get(name)
        if ref is None:  # each candidate of a group compares with the same few tensors: kept for the next
            ref = self.rank_ref[name].double()
            self._ref64 = {**dict(list(self._ref64.items())[-(REF64_KEPT - 1):]), name: ref}
        if name not in self.signal:
            self.signal[name] = float((ref ** 2).sum())
        d = got.double() - ref
        return float((d * d).sum()) / max(self.signal[name], 1e-30)


def choose_ranges(graph: Graph, observers: dict[str, Observer], x: np.ndarray,
                  rules: QuantRules | None = None, held_out: bool = False, workers: int | None = 1) -> AutoChoice:
    """The auto choice for every activation tensor of ``graph``, scored on samples ``x``. ``observers``
    (one streaming pass) hold the statistics the candidates are read from; ``held_out``: ``x`` was not
    streamed through them, so scoring meets the clipping of unseen data, and ``x`` is added to them
    before the chosen ranges are read (the ranges then come from every sample)."""

    from .quantize import activation_params

    rules = rules or QuantRules()
    x = _scoring_inputs(graph, x)
    acts = graph.activations()
    minmax = {t: candidate_ranges(observers[t], ("minmax",))["minmax"] for t in acts}
    scorer = GroupScorer(graph, quantize_graph(graph, minmax, rules), x)
    groups = shared_groups(graph)
    fixed = {groups.find(n.outputs[0]) for n in graph.nodes if _is_fixed(n.op)}
    members: dict[str, list[str]] = {}
    for t in acts:
        members.setdefault(groups.find(t), []).append(t)
    free = {root: group for root, group in members.items() if root not in fixed}

    # candidates, the single methods at the output and the local scores are independent tasks: a backend
    # (scatter.py: this process or a pool of ``workers``) maps them, the choice below stays sequential
    work = scatter.backend(_ScoringState(scorer, observers), workers, len(free) + len(CANDIDATES))
    try:
        cands = dict(zip(acts, work.map(_task_candidates, acts)))
        # 1. start from the single method best at the model output (methods that collapse a tensor excluded)
        choice = AutoChoice(ranges={}, methods={}, samples=len(x), held_out=held_out)
        start, start_noise = _best_uniform_start(graph, work, observers, cands, choice)
        scored = work.map(_task_score_group, [(group, {t: cands[t] for t in group}) for group in free.values()])
    finally:
        work.close()
    scored = dict(zip(free, scored))
    scorer.set_params(activation_params(graph, {t: cands[t].get(start, minmax[t]) for t in acts}))
    scorer.settle()
    current = {root: start for root in free}
    # 2. per group, in topological order: local scores rank the candidates; the best-ranked ones replace
    #    the current choice when the model output measures better with the other groups fixed
    best_noise = start_noise
    for root, group in free.items():
        ranked, record = scored[root]
        if set(group) & set(graph.outputs):
            # a model output's own clipping hits every rarer sample at full weight and a few dozen scoring
            # samples cannot show it (measured: entropy on logits +0.5 dB here, -4.6 dB on held-out data)
            ranked = []
        # only candidates the local score ranks above the current choice are worth a model run
        above = ranked[:ranked.index(current[root])] if current[root] in ranked else ranked
        for label in above[:TRIES_PER_GROUP]:
            noise, env = scorer.trial(_params(group, cands, label))
            if better(noise, best_noise):
                record["output_gain_db"] = db_or_none(output_db(noise) - output_db(best_noise))
                best_noise, current[root] = noise, label
                scorer.accept(_params(group, cands, label), env)
        record["method"] = current[root]
        for t in group:
            choice.tensors[t] = record
    if held_out:  # the chosen methods read the statistics of every sample
        cands = _reread_with_scoring_samples(acts, observers, scorer, free, current)
    for root, group in members.items():
        for t in group:
            label = "fixed" if root in fixed else current[root]
            choice.ranges[t] = cands[t]["minmax"] if root in fixed else cands[t][label]
            choice.methods[t] = label
    choice.scope = f"per-tensor (from {start})"
    choice.output_sqnr_db["auto"] = output_db(best_noise)
    log.info("auto calibration on %d samples: %s; output SQNR %s", len(x), choice.counts(),
             {k: db_or_none(v) for k, v in choice.output_sqnr_db.items()})
    return choice


def _best_uniform_start(graph: Graph, work, observers, cands, choice: AutoChoice):
    """(method, output noise) of the single method best at the model output, methods that collapse a
    tensor excluded; every method's output SQNR is recorded in ``choice``. ``work`` maps the runs."""
    from .quantize import activation_params

    acts = list(cands)
    labels, params, clipped = [], [], {}
    for label, _, _ in CANDIDATES:
        uniform = {t: cands[t].get(label, cands[t]["minmax"]) for t in acts}
        shares = [clipped_energy(observers[t], uniform[t]) for t in acts]
        if any(share > COLLAPSE_ENERGY for share in shares):
            continue
        labels.append(label)
        params.append(activation_params(graph, uniform))
        clipped[label] = float(np.sum(shares))
    noises = dict(zip(labels, work.map(_task_output_noise, params)))
    for label, noise in noises.items():
        choice.output_sqnr_db[label] = output_db(noise)
    start = least_clipping_of_the_best(noises, clipped)
    return start, noises[start]


@dataclass
class _ScoringState:
    """What a scoring task reads (given to the backend once)."""

    scorer: GroupScorer
    observers: dict


def _task_candidates(state: _ScoringState, tensor: str) -> dict:
    return candidate_ranges(state.observers[tensor])


def _task_output_noise(state: _ScoringState, params: dict) -> np.ndarray:
    return state.scorer.output_noise(params)


def _task_score_group(state: _ScoringState, item) -> tuple[list[str], dict]:
    group, cands = item
    return score_group(state.scorer, group, state.observers, cands)


def _reread_with_scoring_samples(acts, observers, scorer, free: dict, current: dict) -> dict:
    """Candidates read again after the scoring samples joined the statistics (held-out scoring)."""
    import copy

    observers = copy.deepcopy(observers)
    for t in acts:
        observers[t].update(scorer.ref[t].numpy())
    labels = {t: current[root] for root, group in free.items() for t in group}
    return {t: candidate_ranges(observers[t], ("minmax", labels.get(t, "minmax"))) for t in acts}


def _params(group: list[str], cands: dict, label: str) -> dict[str, QuantParams]:
    lo = min(cands[t][label][0] for t in group)
    hi = max(cands[t][label][1] for t in group)
    qp = params_from_range(lo, hi)
    return {t: qp for t in group}


def score_group(scorer: GroupScorer, group: list[str], observers: dict[str, Observer],
                cands: dict[str, dict]) -> tuple[list[str], dict]:
    """(candidate labels ranked by local error, best first; record) for one group of tensors sharing
    parameters: each distinct candidate's parameters scored once; collapsed candidates are listed, not scored."""
    by_params: dict[tuple, list[str]] = {}
    collapsed = []
    for label, _, _ in CANDIDATES:
        if label not in cands[group[0]]:
            continue
        qp = _params(group, cands, label)[group[0]]
        lo, hi = min(cands[t][label][0] for t in group), max(cands[t][label][1] for t in group)
        if any(clipped_energy(observers[t], (lo, hi)) > COLLAPSE_ENERGY for t in group):
            collapsed.append(label)
            continue
        by_params.setdefault((qp.scale, qp.zero_point), []).append(label)
    errors = {labels[0]: scorer.error(group, QuantParams(key[0], key[1])) for key, labels in by_params.items()}
    ranked = sorted(errors, key=lambda k: errors[k])  # stable: minmax first among equals
    record = {"local_error_db": {k: db_or_none(ratio_to_db(v)) for k, v in errors.items()},
              "same_range": {labels[0]: labels[1:] for labels in by_params.values() if len(labels) > 1},
              "collapsed": collapsed}
    if len(group) > 1:
        record["shared_with"] = sorted(group)
    return ranked, record


def _is_fixed(op: str) -> bool:
    from ..ir import OPS

    return OPS[op].quant == "fixed"
