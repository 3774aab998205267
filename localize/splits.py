"""Training splits: which generators a model trains on.

Names come from the indexed data, never from code:
- `<g>`: train on generator g alone (the in-domain column of the table);
- `no-<g>`: train on every other generator (g is held out: the generalization column);
- `all`: every generator pooled.
`train.source` is one split name, or `table` for every single and leave-one-out split.
Where the data has Dolos' fully generated faces (`fake/p2`), `p2` is a split too: real vs
fully generated, for weak training only (setup A); it is never part of `table`.
"""

from __future__ import annotations

from localize.layout import FULLY_GENERATED

TABLE = "table"


def training_splits(generators: list[str]) -> dict[str, list[str]]:
    gens = sorted(generators)
    splits = {g: [g] for g in gens}
    if len(gens) > 1:
        splits.update({f"no-{g}": [h for h in gens if h != g] for g in gens})
    splits["all"] = gens
    return splits


def resolve_source(source: str, generators: list[str], fully_generated: bool = False) -> dict[str, list[str]]:
    """The splits that `train.source` asks for, in a stable order; a clear error otherwise.

    `fully_generated`: the data has fully generated training faces, so `p2` is a valid source.
    """
    splits = training_splits(generators)
    if fully_generated:
        splits[FULLY_GENERATED] = [FULLY_GENERATED]
    if source == TABLE:
        return {name: gens for name, gens in splits.items() if name not in ("all", FULLY_GENERATED)}
    if source == FULLY_GENERATED and not fully_generated:
        raise ValueError(f"train.source={FULLY_GENERATED} (setup A: real vs fully generated faces) needs Dolos' "
                         f"fully generated faces, fake/{FULLY_GENERATED}/train under data.root; this data has none "
                         f"(the demo never has any); valid values: {', '.join([TABLE, *splits])}")
    if source not in splits:
        valid = [TABLE, *splits]
        raise ValueError(
            f"unknown train.source {source!r} for this data (generators: {', '.join(sorted(generators))}); "
            f"valid values: {', '.join(valid)}"
        )
    return {source: splits[source]}


def held_out(split: str, generators: list[str]) -> str | None:
    """The generator a leave-one-out split never saw, else None."""
    if split.startswith("no-") and split[3:] in generators:
        return split[3:]
    return None
