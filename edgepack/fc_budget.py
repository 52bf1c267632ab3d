"""Per-channel FULLY_CONNECTED weights against a tight TFLM arena: the choice made for accuracy
(calibration/fc_weights.py) is undone layer by layer, the least gain first, where its per-channel
multiplier/shift buffers (8 B per output channel) would push the arena past the target's RAM budget."""
from __future__ import annotations

from .calibration.fc_weights import FcChoice


def fc_choice_for_target(choice: FcChoice, qgraph, profile, forced: frozenset = frozenset()) -> FcChoice | None:
    """A reduced choice when the int8 model ``qgraph`` (quantized with ``choice``) overflows ``profile``'s
    arena budget and giving up per-channel FC layers (not those in ``forced``) brings it within; else None
    (it fits, or it does not fit even with every such layer per-tensor: then per-channel is not the cause)."""
    if profile is None or profile.runtime != "tflm" or not (choice.per_channel - forced):
        return None
    from .exporter.emit_tflite import to_tflite
    from .targets.memory import estimate_memory

    arena = estimate_memory(to_tflite(qgraph, int8=True)).arena_bytes
    over = arena - int(profile.ram_bytes)
    reducible = sum(r["channels"] for r in choice.layers if r["node"] in choice.per_channel - forced) * 8
    if over <= 0 or over > reducible:
        return None
    reduced = choice.without_layers(over, forced)
    reduced.decided_against.update(arena_estimate_bytes=int(arena), ram_budget_bytes=int(profile.ram_bytes),
                                   target=profile.name)
    return reduced


def note(reduced: FcChoice) -> str:
    d = reduced.decided_against
    layers = ", ".join(f"{x['node']} (-{x['layer_snr_given_up_db']} dB layer SNR, {x['bytes_saved']} B)"
                       for x in d["layers"])
    return (f"per-channel FULLY_CONNECTED weights would put the TFLM arena at {d['arena_estimate_bytes']:,} B, "
            f"{d['over_budget_bytes']:,} B over {d['target']}'s {d['ram_budget_bytes']:,} B: per-tensor weights "
            f"on {len(d['layers'])} layer(s), the least gain first, saving {d['bytes_saved']:,} B: {layers}")


def forced_per_channel(graph, cfg) -> frozenset:
    """Gemm nodes the user's per-layer settings put per-channel: the budget never overrides them."""
    if not cfg.layers:
        return frozenset()
    return frozenset(n.name for n in graph.nodes if n.op == "Gemm" and cfg.layer(n.name, n.op).per_channel)
