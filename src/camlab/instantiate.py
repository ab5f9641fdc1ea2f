"""Building objects from config nodes, with errors that name the config group to fix."""

from typing import Any

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from camlab.errors import CamlabError


def build(node: DictConfig, group: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate(node, **kwargs)``; a failure names ``group`` and the cause."""
    try:
        # _convert_=all: plain lists/dicts, so hyper-parameters pickle without omegaconf.
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)
    except InstantiationException as err:
        cause = err.__cause__ if err.__cause__ is not None else err
        if isinstance(cause, CamlabError):
            raise cause from None
        raise CamlabError(
            f"Could not build `{group}` ({node.get('_target_')}): {cause}. Check the `{group}` "
            f"overrides; `python train.py --cfg job` prints the composed config."
        ) from err


def build_all(nodes: DictConfig | None, group: str) -> list[Any]:
    """Instantiates every named entry of a group such as ``callbacks`` or ``logger``."""
    if not nodes:
        return []
    return [
        build(node, f"{group}.{name}")
        for name, node in nodes.items()
        if isinstance(node, DictConfig) and "_target_" in node
    ]
