"""Renaming between camlab's module names and the wsolevaluation reference's state-dict keys."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor


def _rename(key: str, table: Mapping[str, str]) -> str | None:
    """Replaces the longest dotted prefix of ``key`` found in ``table`` (``""`` matches every
    key, last); None when nothing matches."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, -1, -1):
        prefix = ".".join(parts[:cut])
        if prefix in table:
            rest = ".".join(parts[cut:])
            return f"{table[prefix]}.{rest}" if table[prefix] else rest
    return None


@dataclass(frozen=True)
class KeyMap:
    """A prefix renaming from camlab module names to the reference's, and back.

    Attributes:
        modules: camlab module name -> reference module name; a key is renamed by its longest
            listed prefix (``""`` stands for the root, e.g. ResNet's layers at the top level).
        conv_heads: camlab ``nn.Linear`` layers that the reference holds as 1x1 convolutions
            (GAP then Linear equals 1x1 conv then GAP with the same weights): their weight is
            ``[K, C]`` here and ``[K, C, 1, 1]`` there.
    """

    modules: Mapping[str, str]
    conv_heads: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if len(set(self.modules.values())) != len(self.modules):  # it must invert
            raise ValueError(f"two camlab modules share a reference name: {dict(self.modules)}")

    def to_reference(self, key: str) -> str:
        """camlab state-dict key -> the reference's."""
        renamed = _rename(key, self.modules)
        if renamed is None:
            known = ", ".join(sorted(self.modules))
            raise KeyError(f"{key!r} has no reference name (known prefixes: {known})")
        return renamed

    def from_reference(self, key: str) -> str:
        """Reference state-dict key -> camlab's."""
        renamed = _rename(key, {ref: ours for ours, ref in self.modules.items()})
        if renamed is None:
            raise KeyError(f"{key!r} is not a key of this reference network")
        return renamed

    def prefixed(self, prefix: str) -> "KeyMap":
        """The same map for the module as a child ``prefix`` of another (``"net"``)."""
        return KeyMap(
            {f"{prefix}.{k}" if k else prefix: v for k, v in self.modules.items()},
            frozenset(f"{prefix}.{k}" for k in self.conv_heads),
        )

    def __or__(self, other: "KeyMap") -> "KeyMap":
        clash = set(self.modules) & set(other.modules)
        if clash:
            raise ValueError(f"both key maps name {sorted(clash)}")
        return KeyMap({**self.modules, **other.modules}, self.conv_heads | other.conv_heads)

    def to_reference_tensor(self, key: str, value: Tensor) -> Tensor:
        """A camlab tensor in the reference's shape (1x1-conv weights get their 1x1)."""
        module, _, leaf = key.rpartition(".")
        if module in self.conv_heads and leaf == "weight":
            return value[:, :, None, None]
        return value

    def to_reference_dict(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """A camlab state dict in the reference's key names and shapes."""
        return {self.to_reference(k): self.to_reference_tensor(k, v) for k, v in state.items()}

    def from_reference_dict(
        self, state: Mapping[str, Tensor], shapes: Mapping[str, tuple[int, ...]]
    ) -> dict[str, Tensor]:
        """A reference state dict in camlab's key names, reshaped to ``shapes`` (camlab key ->
        shape, e.g. from the target module's own state dict)."""
        out = {}
        for key, value in state.items():
            ours = self.from_reference(key)
            out[ours] = value.reshape(shapes[ours]) if ours in shapes else value
        return out
