"""The account ledger: accounts x instruments as numpy arrays (struct of arrays).

Rows are accounts. The first `N_SYSTEM` rows are the exchange's own accounts
(insurance fund, fee pool, backstop vault, and *genesis*, the counterparty of the
positions a config gives accounts at the start); they are ordinary rows, so every
position has a counterparty row and every dollar an owner. System rows are never
liquidated. Asset 0 is the settlement asset
(USD), in which PnL, fees and funding are paid.

Only the exchange and the liquidation engine call the mutating methods here; the
margin module reads the arrays through `Ledger.portfolio`.

Accounting: average-entry. A trade that grows a position moves its entry price to the
size-weighted average; one that shrinks it realizes ``closed * (price - entry) * side``
into the position's *pocket*, which is the USD balance of an account in cross mode and
the position's isolated margin of one in isolated mode (each account has its mode).
Funding accrued since the position was last touched is settled into the pocket before
every change of size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from sim.instruments import Instrument
from sim.margin import Portfolio

INSURANCE_FUND = 0
FEE_POOL = 1
BACKSTOP = 2
GENESIS = 3
N_SYSTEM = 4
SYSTEM_NAMES = ("insurance_fund", "fee_pool", "backstop", "genesis")
USD = 0
#: Rows per block of `Ledger.block_version` (a power of two: a row's block is ``row >>
#: VERSION_BLOCK_BITS``).
VERSION_BLOCK_BITS = 6


class Ledger:
    """Balances, positions and entry prices of every account.

    Attributes:
        balances: (A, S) collateral per asset, asset units.
        positions: (A, I) signed position in lots: whole numbers stored as float64 (exact
            up to 2^53 lots), so the margin math never converts integers to floats.
        entry: (A, I) average entry price, USD; 0 where flat.
        funding_index: (A, I) instrument's cumulative funding at the last settlement.
        isolated_margin: (A, I) USD set aside per position (isolated mode only).
        open_bids / open_asks: (A, I) lots in resting orders per side (whole numbers, float64).
        deposits: (S,) everything ever deposited, per asset.
        deposited: (A, S) what each account deposited, per asset.
        lot_sizes: (I,) base units per lot.
    """

    def __init__(
        self, n_traders: int, instruments: Sequence[Instrument], assets: Sequence[str], isolated: bool = False
    ):
        if not assets or assets[0] != "USD":
            raise ValueError(f"asset 0 must be the settlement asset USD, got {list(assets)}")
        n, n_inst, n_assets = N_SYSTEM + n_traders, len(instruments), len(assets)
        self.assets = tuple(assets)
        #: (A,) accounts in isolated margin mode (the rest are cross).
        self.isolated = np.full(n, isolated)
        self.isolated[:N_SYSTEM] = False  # one equity, its capital, backs all a system account holds
        self.lot_sizes = np.array([inst.lot_size for inst in instruments])
        # Fortran order: each asset's / instrument's column is contiguous (see sim.margin).
        # Lot counts are float64 holding whole numbers: adding and subtracting them stays
        # exact, and an int64 array would cost a conversion in every margin computation.
        self.balances = np.zeros((n, n_assets), order="F")
        self.positions = np.zeros((n, n_inst), order="F")
        self.entry = np.zeros((n, n_inst), order="F")
        self.funding_index = np.zeros((n, n_inst), order="F")
        self.isolated_margin = np.zeros((n, n_inst), order="F")
        self.open_bids = np.zeros((n, n_inst), order="F")
        self.open_asks = np.zeros((n, n_inst), order="F")
        self.deposits = np.zeros(n_assets)
        self.deposited = np.zeros((n, n_assets))
        #: Counts the changes to margin-relevant state (everything but open orders).
        self.clock = 0
        #: (A,) the `clock` of each row's last such change (`sim.health_watch` reads it).
        self.row_version = np.zeros(n, np.int64)
        #: (ceil(A / 2**VERSION_BLOCK_BITS),) the latest `row_version` of each block of
        #: rows, so a reader finds the few changed rows without reading every version.
        self.block_version = np.zeros(((n - 1) >> VERSION_BLOCK_BITS) + 1, np.int64)

    @property
    def n_accounts(self) -> int:
        return self.balances.shape[0]

    def portfolio(self, rows: slice | np.ndarray | None = None) -> Portfolio:
        """The margin module's view of some rows (all by default): no copies for slices;
        rows picked by an integer index array (not a boolean mask) are copied in Fortran
        order, as the ledger stores them, so the margin sums (BLAS products over columns)
        give each row the bits a pass over every account gives it (`sim.health_watch`
        relies on that)."""
        sel = slice(None) if rows is None else rows
        # a gather along the contiguous columns: 5x faster than a[sel] on Fortran arrays
        pick = (lambda a: a[sel]) if isinstance(sel, slice) else (lambda a: a.T.take(sel, axis=1).T)
        return Portfolio(
            balances=pick(self.balances),
            positions=pick(self.positions),
            entry=pick(self.entry),
            funding_index=pick(self.funding_index),
            isolated_margin=pick(self.isolated_margin),
            open_bids=pick(self.open_bids),
            open_asks=pick(self.open_asks),
            lot_sizes=self.lot_sizes,
        )

    # ---------------------------------------------------------------- mutations
    def _touch(self, rows) -> None:
        """Rows (an int or an array) whose balances, positions or margins change now."""
        self.clock += 1
        self.row_version[rows] = self.clock
        self.block_version[np.right_shift(rows, VERSION_BLOCK_BITS)] = self.clock

    def rows_changed_since(self, version: int) -> np.ndarray:
        """(R,) the rows whose `row_version` is past ``version``, ascending."""
        return _rows_changed_since(self.row_version, self.block_version, version)

    def deposit(self, account: int, asset: int, amount: float) -> None:
        """External money in: the only way value enters the system."""
        self._touch(account)
        self.balances[account, asset] += amount
        self.deposits[asset] += amount
        self.deposited[account, asset] += amount

    def pay(self, account: int, instrument: int, to: int, amount: float) -> None:
        """Move USD (negative: receive) from the margin backing a position to ``to``'s balance."""
        self.credit_pocket(account, instrument, -amount)
        self._touch(to)
        self.balances[to, USD] += amount

    def transfer(self, src: int, dst: int, amount: float) -> None:
        """Move USD between two accounts' balances."""
        self._touch([src, dst])
        self.balances[src, USD] -= amount
        self.balances[dst, USD] += amount

    def credit_pocket(self, account: int, instrument: int, amount: float) -> None:
        """Add USD (negative: charge) to the margin that backs a position.

        Isolated mode: a flat position has no margin of its own (it was released when the
        position closed), so what is charged or paid after the close, such as the fee or
        the insurance fund's payment on the closing fill, lands in the USD balance.
        """
        self._touch(account)
        _credit_pocket(self.balances, self.positions, self.isolated_margin, self.isolated, account, instrument, amount)

    def settle_funding(self, account: int, instrument: int, cum_funding: float) -> float:
        """Pay the funding accrued on a position since it was last settled; return it."""
        self._touch(account)
        return _settle_funding(*self._settlement_arrays(), account, instrument, cum_funding)

    def settle_trade(self, account: int, instrument: int, lots: int, price: float, cum_funding: float) -> float:
        """Apply a trade of ``lots`` (signed, buy > 0) at ``price`` to one account.

        Returns:
            The realized PnL, USD (already credited to the position's pocket).
        """
        self._touch(account)
        return _settle_trade(*self._settlement_arrays(), account, instrument, lots, price, cum_funding)

    def settle_fills(
        self,
        takers: np.ndarray,
        makers: np.ndarray,
        instruments: np.ndarray,
        taker_lots: np.ndarray,
        prices: np.ndarray,
        cum_funding: np.ndarray,
        taker_fees: np.ndarray,
        maker_fees: np.ndarray,
        start: int = 0,
    ) -> int:
        """Settle book fills ``start..F-1`` in order, in one compiled pass (arrays of shape (F,)).

        Each fill is, exactly as in sequence: `settle_trade` for the taker (``taker_lots``,
        signed) and the maker (the opposite), the maker's filled lots off its open orders,
        then each side's fee (USD, negative: a rebate) from its pocket to the fee pool.

        Returns:
            The index after the first fill with an isolated-mode party (whose margin the
            caller may have to top up before the next fill), or F when all are settled.
        """
        done = _settle_fills(
            *self._settlement_arrays(),
            self.open_bids,
            self.open_asks,
            takers,
            makers,
            instruments,
            taker_lots,
            prices,
            cum_funding,
            taker_fees,
            maker_fees,
            start,
        )
        self._touch(np.concatenate([takers[start:done], makers[start:done], [FEE_POOL]]))
        return done

    def _settlement_arrays(self) -> tuple[np.ndarray, ...]:
        return (
            self.balances,
            self.positions,
            self.entry,
            self.funding_index,
            self.isolated_margin,
            self.isolated,
            self.lot_sizes,
        )

    def trade_between(
        self, account: int, other: int, instrument: int, lots: int, price: float, cum_funding: float
    ) -> None:
        """A trade off the book: ``account`` trades ``lots`` (signed) with ``other`` at ``price``.

        Used for transfers the book does not see: backstop take-overs, ADL, and positions
        a config gives accounts at the start.
        """
        self.settle_trade(account, instrument, lots, price, cum_funding)
        self.settle_trade(other, instrument, -lots, price, cum_funding)

    def convert(self, account: int, asset: int, units: float, price: float, haircut: float, fee_to: int) -> float:
        """Sell ``units`` of a collateral asset to the outside world at ``price`` (USD); the
        account gets the proceeds less ``haircut`` of them, which go to ``fee_to``'s
        balance. Value crosses the venue's edge: deposits move (asset out, USD in).

        Returns:
            The USD the account received.
        """
        proceeds = units * price
        self._touch(account)
        for row, asset_, amount in ((account, asset, -units), (account, USD, proceeds)):
            self.balances[row, asset_] += amount
            self.deposits[asset_] += amount
            self.deposited[row, asset_] += amount
        self.transfer(account, fee_to, proceeds * haircut)
        return proceeds * (1.0 - haircut)

    def count_open(self, account: int, instrument: int, side: int, lots: int) -> None:
        """Add ``lots`` (negative: remove) to the account's resting orders on ``side``."""
        (self.open_bids if side > 0 else self.open_asks)[account, instrument] += lots

    def count_open_many(
        self, accounts: np.ndarray, instruments: np.ndarray, sides: np.ndarray, lots: np.ndarray
    ) -> None:
        """`count_open` for (n,) int64 arrays of orders, in one compiled pass."""
        _count_open(self.open_bids, self.open_asks, accounts, instruments, sides, lots)

    def set_isolated(self, account: int, isolated: bool) -> None:
        """Put an account in isolated (True) or cross margin mode."""
        self._touch(account)
        self.isolated[account] = isolated

    def allocate_isolated(self, account: int, instrument: int, amount: float) -> None:
        """Move USD from the balance into a position's isolated margin."""
        self._touch(account)
        self.balances[account, USD] -= amount
        self.isolated_margin[account, instrument] += amount

    def release_isolated(self, account: int, instrument: int) -> None:
        """Return a closed position's isolated margin (possibly negative) to the balance."""
        self._touch(account)
        self.balances[account, USD] += self.isolated_margin[account, instrument]
        self.isolated_margin[account, instrument] = 0.0

    # ------------------------------------------------------------------ checks
    def settlement_value(self, marks: np.ndarray, cum_funding: np.ndarray) -> np.ndarray:
        """(A,) USD each account would hold if it closed everything at the marks.

        Unweighted (no haircuts) and only the USD part of collateral: this is the
        quantity trading, fees, funding and liquidation move but never create.
        """
        q = self.positions * self.lot_sizes
        unrealized = q * (marks - self.entry) - q * (cum_funding - self.funding_index)
        return self.balances[:, USD] + self.isolated_margin.sum(axis=1) + unrealized.sum(axis=1)

    def conservation_error(self, marks: np.ndarray, cum_funding: np.ndarray) -> float:
        """Sum of settlement values minus USD deposits; zero up to float rounding."""
        return float(self.settlement_value(marks, cum_funding).sum() - self.deposits[USD])

    def net_positions(self) -> np.ndarray:
        """(I,) positions summed over all accounts, lots; must be all zeros."""
        return self.positions.sum(axis=0)


# ------------------------------------------------------------ compiled settlement
# The ledger arithmetic of a trade, compiled so that a batch of fills settles in one
# pass; each function mirrors the method of the same name, operation for operation, so
# a batch and one-by-one settlement agree to the last bit.


@njit(cache=True)
def _rows_changed_since(row_version, block_version, version):
    """`Ledger.rows_changed_since`, reading only the blocks changed since ``version``."""
    size = 1 << VERSION_BLOCK_BITS
    changed = np.empty(row_version.size, np.int64)
    n = 0
    for b in range(block_version.size):
        if block_version[b] > version:
            for r in range(b * size, min((b + 1) * size, row_version.size)):
                if row_version[r] > version:
                    changed[n] = r
                    n += 1
    return changed[:n]


@njit(cache=True)
def _count_open(open_bids, open_asks, accounts, instruments, sides, lots):
    for k in range(accounts.shape[0]):
        if sides[k] > 0:
            open_bids[accounts[k], instruments[k]] += lots[k]
        else:
            open_asks[accounts[k], instruments[k]] += lots[k]


@njit(cache=True)
def _credit_pocket(balances, positions, isolated_margin, isolated, account, instrument, amount):
    """`Ledger.credit_pocket`."""
    if isolated[account] and positions[account, instrument] != 0:
        isolated_margin[account, instrument] += amount
    else:
        balances[account, USD] += amount


@njit(cache=True)
def _settle_funding(
    balances, positions, entry, funding_index, isolated_margin, isolated, lot_sizes, account, instrument, cum_funding
):
    """`Ledger.settle_funding`."""
    lots = int(positions[account, instrument])
    paid = lots * lot_sizes[instrument] * (cum_funding - funding_index[account, instrument])
    funding_index[account, instrument] = cum_funding
    if paid != 0:
        _credit_pocket(balances, positions, isolated_margin, isolated, account, instrument, -paid)
    return paid


@njit(cache=True)
def _settle_trade(
    balances,
    positions,
    entry,
    funding_index,
    isolated_margin,
    isolated,
    lot_sizes,
    account,
    instrument,
    lots,
    price,
    cum_funding,
):
    """`Ledger.settle_trade`: average entry, realized PnL into the pocket."""
    arrays = (balances, positions, entry, funding_index, isolated_margin, isolated, lot_sizes)
    _settle_funding(*arrays, account, instrument, cum_funding)
    old = int(positions[account, instrument])
    new = old + lots
    avg = entry[account, instrument]
    realized = 0.0
    if old == 0 or (old > 0) == (lots > 0):
        entry[account, instrument] = (abs(old) * avg + abs(lots) * price) / abs(new)
    else:
        closed = min(abs(lots), abs(old))
        realized = closed * lot_sizes[instrument] * (price - avg) * (1 if old > 0 else -1)
        _credit_pocket(balances, positions, isolated_margin, isolated, account, instrument, realized)
        if new == 0:
            entry[account, instrument] = 0.0
        elif (new > 0) != (old > 0):
            entry[account, instrument] = price
    positions[account, instrument] = new
    if new == 0 and isolated[account]:
        balances[account, USD] += isolated_margin[account, instrument]
        isolated_margin[account, instrument] = 0.0
    return realized


@njit(cache=True)
def _settle_fills(
    balances,
    positions,
    entry,
    funding_index,
    isolated_margin,
    isolated,
    lot_sizes,
    open_bids,
    open_asks,
    takers,
    makers,
    instruments,
    taker_lots,
    prices,
    cum_funding,
    taker_fees,
    maker_fees,
    start,
):
    """`Ledger.settle_fills`."""
    n = takers.shape[0]
    for i in range(start, n):
        m = instruments[i]
        taker, maker, lots, price = takers[i], makers[i], taker_lots[i], prices[i]
        for account, signed in ((taker, lots), (maker, -lots)):
            _settle_trade(
                balances,
                positions,
                entry,
                funding_index,
                isolated_margin,
                isolated,
                lot_sizes,
                account,
                m,
                signed,
                price,
                cum_funding[i],
            )
        if lots > 0:
            open_asks[maker, m] -= lots
        else:
            open_bids[maker, m] += lots
        for account, fee in ((taker, taker_fees[i]), (maker, maker_fees[i])):
            if fee != 0:
                _credit_pocket(balances, positions, isolated_margin, isolated, account, m, -fee)
                balances[FEE_POOL, USD] += fee
        if isolated[taker] or isolated[maker]:
            return i + 1
    return n
