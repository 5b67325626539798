"""Trader populations for cascadelab: strategies only, accounts live in the ledger."""

from agents.arbitrageur import Arbitrageur
from agents.base import MarketView, Population, StrictParams
from agents.fcn import FCNTrader
from agents.holder import LeveragedHolder
from agents.market_maker import MarketMaker
from agents.momentum import Momentum
from agents.noise import Noise

#: Population ``type`` in configs -> population class.
AGENT_TYPES: dict[str, type[Population]] = {
    cls.kind: cls for cls in (MarketMaker, FCNTrader, Arbitrageur, Momentum, Noise, LeveragedHolder)
}

__all__ = ["AGENT_TYPES", "MarketView", "Population", "StrictParams"]
