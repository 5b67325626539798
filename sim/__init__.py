"""cascadelab's engine: order books, the cross-margin ledger, margin math and the exchange."""

__version__ = "0.1.0"

__all__ = ["load", "simulate"]


def __getattr__(name: str) -> object:
    """``from sim import simulate, load`` (`sim.api`), imported on first use so the command
    line starts without the simulation's imports."""
    if name in __all__:
        from sim import api

        return getattr(api, name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
