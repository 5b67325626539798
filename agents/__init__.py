"""Mesa trader agents for cascadelab: strategies only, accounts live in the ledger."""
