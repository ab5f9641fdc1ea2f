"""The search space of the WSOL protocol: distributions written in the config, drawn per trial.

A space nests override keys down to one distribution each (configs/hparams_search/wsol*.yaml)::

    model:
      optimizer:
        lr: {log_uniform: [1.0e-4, 10.0]}
      large_feature_map: {choice: [false, true], if: {model.arch: reference}}
    method:
      threshold_1l: {uniform: [0.0, 1.0]}
      threshold_1h: {uniform: [method.threshold_1l, 1.0]}  # a bound may name a drawn key
      beta: {reciprocal_uniform: [0.0, 2.0], shift: -0.5}  # 1 / U(0, 2] - 1/2

so one entry can be changed or dropped on the command line
(``hydra.sweeper.space.model.optimizer.lr.log_uniform=[1e-3,1e-1]``,
``~hydra.sweeper.space.method.beta``). Keys are drawn in the order written; ``if`` keeps a key
only where the composed config has those values (the feature-map size exists on the reference's
networks only).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from typing import Any

from camlab.errors import CamlabError

KINDS = ("uniform", "log_uniform", "reciprocal_uniform", "choice")
OPTIONS = (*KINDS, "shift", "if")


def flatten(space: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested keys down to the distributions -> {"model.optimizer.lr": {...}, ...}, in order."""
    flat: dict[str, Any] = {}
    for key, node in space.items():
        path = f"{prefix}{key}"
        if isinstance(node, Mapping) and node and not any(k in KINDS for k in node):
            flat.update(flatten(node, f"{path}."))
        else:
            flat[path] = node
    return flat


def parse_space(space: Mapping[str, Any] | None) -> dict[str, dict]:
    """Checks a space (as written in the config) and returns key -> spec, in drawing order."""
    space = flatten(space) if isinstance(space, Mapping) else space
    if not isinstance(space, Mapping) or not space:
        raise CamlabError(
            "The search space (search.space) is empty; choose a method's space with "
            "hparams_search=wsol_<method> (cam, has, acol, spg, adl, cutmix)."
        )
    parsed: dict[str, dict] = {}
    for key, spec in space.items():
        spec = dict(spec) if isinstance(spec, Mapping) else None
        kinds = [k for k in (spec or {}) if k in KINDS]
        unknown = sorted(set(spec or {}) - set(OPTIONS))
        if spec is None or len(kinds) != 1 or unknown:
            raise CamlabError(
                f"search.space.{key} must hold exactly one of {', '.join(KINDS)} (and optionally "
                f"shift, if); got {spec!r}. Example: {key}: {{uniform: [0.0, 1.0]}}."
            )
        kind = kinds[0]
        args = list(spec[kind])
        if kind != "choice":
            if len(args) != 2:
                raise CamlabError(f"search.space.{key}.{kind} needs [low, high]; got {args!r}.")
            for bound in args:
                if isinstance(bound, str) and bound not in parsed:
                    raise CamlabError(
                        f"search.space.{key}: the bound {bound!r} must name a key drawn before "
                        f"it ({', '.join(parsed) or 'none yet'})."
                    )
        elif not args:
            raise CamlabError(f"search.space.{key}.choice is empty.")
        parsed[key] = {"kind": kind, "args": args, "shift": float(spec.get("shift", 0.0)),
                       "if": dict(spec.get("if") or {})}  # fmt: skip
    return parsed


def active(spec: dict, config_value) -> bool:
    """Whether the key's ``if`` holds; ``config_value(key)`` reads the composed config."""
    return all(config_value(k) == v for k, v in spec["if"].items())


def draw(space: dict[str, dict], trial, config_value) -> dict[str, Any]:
    """Draws one trial's values (``trial``: an optuna Trial); returns key -> override value.

    The optuna parameters are the raw draws (``method.beta`` stores ``u`` of ``1 / u - 1/2``),
    so a study can be resumed and re-queued exactly.
    """
    values: dict[str, Any] = {}
    for key, spec in space.items():
        if not active(spec, config_value):
            continue
        kind, args = spec["kind"], spec["args"]
        if kind == "choice":
            values[key] = trial.suggest_categorical(key, args)
            continue
        low, high = (float(values[a]) if isinstance(a, str) else float(a) for a in args)
        raw = trial.suggest_float(key, low, high, log=kind == "log_uniform")
        if kind == "reciprocal_uniform":
            # U(low, high]: optuna draws from [low, high); the reflection keeps 1 / 0 out.
            raw = 1.0 / (low + high - raw)
        values[key] = raw + spec["shift"]
    return values


def override_value(value: Any) -> str:
    """A drawn value as a Hydra override value (floats in full precision)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def trial_seed(seed: int, index: int, key: str) -> int:
    """The RNG seed of one draw: the same for the same (search seed, draw index, key)."""
    return zlib.crc32(f"{seed}:{index}:{key}".encode()) & 0x7FFFFFFF


def draw_index(study, trial) -> int:
    """The trial's place among the draws: its number less the interrupted trials before it, so
    the trial after an interruption draws the interrupted trial's values again."""
    before = study.get_trials(deepcopy=False)
    return trial.number - sum(
        t.number < trial.number and bool(t.user_attrs.get("interrupted")) for t in before
    )


def trial_seeded_sampler(seed: int):
    """Optuna's random sampler, reseeded for every draw by ``trial_seed``, so a search that was
    killed and resumed draws exactly what an uninterrupted one draws.

    Optuna's own ``RandomSampler(seed)`` restarts its generator when a study is loaded again, so
    a resumed search would repeat its first trials.
    """
    import numpy as np
    import optuna

    class TrialSeededSampler(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, param_name, param_distribution):
            index = draw_index(study, trial)
            self._rng = np.random.RandomState(trial_seed(seed, index, param_name))
            return super().sample_independent(study, trial, param_name, param_distribution)

    return TrialSeededSampler(seed=seed)
