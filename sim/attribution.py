"""Cascade attribution: which liquidation put an account under.

The attribution keeps every trader account's liquidatable flag as of the last health
check. Checks happen at every scan and right after every liquidation (its fills, its
fallback transfers, and the mark update that follows). Account j's ``trigger`` is
liquidation L (the id of L's last record row) if j was not liquidatable in the check
right before L and is in the check right after it: L's price impact, or the position
it pushed onto j, put j under. j's records then carry L's ``cascade_id``. An account
that becomes liquidatable any other way (index moves, its own trading) starts a new
cascade with no trigger. A trigger or episode ends when a scan finds the account
healthy again; its later liquidations start afresh.

Across steps, through the index (`sim.impact`): each liquidation's book fills are a
flow term of the propagator, and a system account's selling of a takeover is a term
tagged with the takeover's row. Because the index is a sum of known terms, the index
without given liquidations is exact for their terms (at the realised liquidity and
book). At each step's first scan, an account that is liquidatable and was not at the
end of the previous step is checked at the prices without the impact of *all*
liquidations still decaying in the index: if it would be healthy there, liquidations
pushed it under, and its trigger is the one whose impact cost it most (position times
the price move that liquidation's terms still cause). Otherwise (the exogenous path,
ordinary trading, its own orders) it starts a new cascade.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sim.exchange import Exchange
from sim.impact import VenueIndex


@dataclass(slots=True, frozen=True)
class Episode:
    """An account's current stretch of being liquidatable: its cascade and the row id of
    the liquidation that triggered it (None for a cascade's root)."""

    cascade_id: int
    trigger: int | None


class CascadeAttribution:
    """Episodes and triggers of the trader accounts of one exchange.

    Args:
        exchange: The venue.
        is_trader: (A,) True for trader rows (system accounts are never liquidated).
    """

    def __init__(self, exchange: Exchange, is_trader: np.ndarray):
        self.exchange = exchange
        self.is_trader = is_trader
        self.liquidatable = np.zeros(exchange.ledger.n_accounts, dtype=bool)
        self._triggers: dict[int, Episode] = {}
        self._episodes: dict[int, Episode] = {}
        self._next_cascade = 0

    def scan(self, flags: np.ndarray) -> None:
        """A scan found (A,) ``flags`` trader accounts liquidatable: ends the episodes of
        the healthy ones."""
        self.liquidatable = flags
        for book in (self._triggers, self._episodes):
            for account in [a for a in book if not flags[a]]:
                del book[account]

    def episode(self, account: int) -> Episode:
        """The episode ``account`` is being liquidated in (started if new)."""
        episode = self._episodes.get(account)
        if episode is None:
            episode = self._triggers.pop(account, None)
            if episode is None:
                episode = Episode(self._next_cascade, None)
                self._next_cascade += 1
            self._episodes[account] = episode
        return episode

    def after_liquidation(self, row_id: int, episode: Episode, after: np.ndarray) -> None:
        """Tag accounts liquidation ``row_id`` (its last row) pushed under: (A,) ``after``
        are the trader accounts liquidatable right after it."""
        for j in np.flatnonzero(after & ~self.liquidatable):
            self._trigger(int(j), Episode(episode.cascade_id, row_id))
        self.liquidatable = after

    def through_impact(self, flags: np.ndarray, index: VenueIndex | None, cascade_of: Callable[[int], int]) -> None:
        """Link accounts that liquidations' index impact pushed under since the last check
        to the liquidation whose impact cost them most (module docstring).

        Args:
            flags: (A,) the trader accounts liquidatable now.
            index: The venue's index (None: no impact to attribute).
            cascade_of: The cascade id of a liquidation row, by row id.
        """
        if index is None:
            return
        fresh = np.flatnonzero(flags & ~self.liquidatable)
        fresh = np.array([j for j in fresh if j not in self._episodes and j not in self._triggers], dtype=np.int64)
        if fresh.size == 0:
            return
        sources, impact = index.propagator.by_source()  # (K,), (K, I) log impact
        if sources.size == 0:
            return
        ex = self.exchange
        without_index = index.without_sources(impact)
        without = ex.health_at(ex.marks_at(without_index), ex.asset_prices_at(without_index), fresh)
        caused = fresh[~without.account_liquidatable]
        if caused.size == 0:
            return
        held = ex.ledger.positions[caused] * ex.ledger.lot_sizes  # (J, I) base units
        moved = ex.index * (1.0 - np.exp(-impact))  # (K, I) USD each source moved the index by
        cost = -(held @ moved.T)  # (J, K) USD: > 0 where that source's move lost j money
        for i, k in enumerate(np.argmax(cost, axis=1)):
            if cost[i, k] > 0:
                source = int(sources[k])
                self._trigger(int(caused[i]), Episode(cascade_of(source), source))

    def _trigger(self, account: int, episode: Episode) -> None:
        if account not in self._episodes and account not in self._triggers:
            self._triggers[account] = episode
