"""cascadelab's engine: order books, the cross-margin ledger, margin math and the exchange."""

__version__ = "0.1.0"
