"""The Mesa model that steps the whole market.

One step: the index moves to the step's exogenous price times the decayed impact of the
venue's past flow -> marks -> traders act (every population decides for all its
members, then their orders reach the books in one shuffled arrival order) -> their
taker flow of the step moves the index (one propagator term per instrument) -> the
backstop vault sells a slice of what it took over -> funding -> liquidation rounds
(each liquidation's fills move the index and the marks before the next health check)
-> the mark rule observes the book -> record.

Mesa: the model is a `mesa.Model` and each configured population is *one*
`mesa.Agent` (`agents.base.Population`) holding its members as arrays; the model steps
the populations that act (an `AgentSet`, in config order) with ``map("decide")``.
Not one Mesa agent per trader: a Python call per trader and step is the cost that
grows with the number of accounts (~6 us per holder per step), while a population
decides for all its members with a few numpy operations and spends Python only on the
members that send something. Not Mesa's shuffle either: what must be fair is the
order in which *orders* arrive, so every population's orders of the step are
shuffled together (no population always goes first) and sent through
`agents.orders.send`.

Randomness: one `numpy.random.SeedSequence` from the config's seed is spawned into
three children: price paths, the model's shuffle stream (Mesa's ``rng``: one
permutation of the step's acting members per step) and the populations. The latter is
spawned into one child per population (so adding a population never shifts another's
draws), and each population's child into two streams: *setup* (in this order: each
collateral asset's (n,) deposits, the (n,) leverages, the strategy's (n,) parameters in
its ``__init__``, then its opening draws) and *step* (the strategy's per-step draws,
one array over the members concerned; see each population's docstring). A member's
draws are elements of its population's arrays, so changing a population's ``count``
changes its own members' draws, not anyone else's.

Starting positions (an agent's `opening_positions`, ``[[accounts]]`` positions) are
trades at the given or initial price against the *genesis* system account. An account
in isolated mode (``margin.mode``, or its population's or its own ``margin_mode``) has
its USD set aside as isolated margin in proportion to each position's notional.
"""

from __future__ import annotations

import math
from pathlib import Path

import mesa
import numpy as np
from mesa.agent import AgentSet

from agents import AGENT_TYPES, MarketView, Population
from agents.orders import send
from sim.config import Config
from sim.distributions import sample
from sim.exchange import Exchange, FeeSchedule
from sim.funding import Funding, FundingRules
from sim.impact import ImpactParams, Propagator, VenueIndex
from sim.instruments import CollateralAsset, Instrument, MarginTiers
from sim.ledger import BACKSTOP, GENESIS, INSURANCE_FUND, SYSTEM_NAMES, USD
from sim.liquidation import LiquidationEngine, LiquidationRules
from sim.marks import MARK_RULES, MarkSettings
from sim.prices import ProcessSpec, Shock, apply_shocks, daily_volatility, simulate_paths
from sim.recorder import Recorder
from sim.unwind import TakeoverUnwinder


def build_exchange(config: Config, n_traders: int, mark_rule) -> Exchange:
    """The venue described by a config (instruments, collateral, fees, margin mode)."""
    instruments = [
        Instrument(
            name,
            c.tick,
            c.lot,
            MarginTiers(
                tuple(t.floor for t in c.tiers), tuple(t.mmr for t in c.tiers), tuple(t.max_leverage for t in c.tiers)
            ),
            c.base_asset,
        )
        for name, c in config.instruments.items()
    ]
    collateral = [
        CollateralAsset(name, 1.0 - c.haircut, c.liability_weight, c.liability_mmr)
        for name, c in config.collateral.items()
    ]
    fees = FeeSchedule(config.market.taker_fee, config.market.maker_fee)
    prices = [c.initial_price for c in config.instruments.values()]
    return Exchange(
        instruments, collateral, n_traders, prices, fees, config.margin.mode, mark_rule, config.market.price_band
    )


def process_specs(config: Config) -> list[ProcessSpec]:
    """The price process of every instrument, in config order."""
    return [
        ProcessSpec(
            process=c.price.process,
            initial_price=c.initial_price,
            drift=c.price.drift,
            volatility=c.price.volatility,
            jump_intensity=c.price.jump_intensity,
            jump_mean=c.price.jump_mean,
            jump_std=c.price.jump_std,
            garch_omega=c.price.garch_omega,
            garch_alpha=c.price.garch_alpha,
            garch_beta=c.price.garch_beta,
            file=Path(c.price.file) if c.price.file else None,
            column=c.price.column or name,
        )
        for name, c in config.instruments.items()
    ]


class MarketModel(mesa.Model):
    """A simulated derivatives venue with its traders.

    Attributes:
        exchange, funding, liquidation, market: The engine's parts.
        paths: (N + 1, I) exogenous paths X (the index without this venue's impact).
        index: The venue's index (exogenous path moved by the venue's flow).
        health: Margin state of all accounts at the start of the current step's trading.
        recorder: Collects the run's tables.
    """

    def __init__(self, config: Config):
        root = np.random.SeedSequence(config.seed)
        price_seq, shuffle_seq, agents_seq = root.spawn(3)
        super().__init__(rng=np.random.default_rng(shuffle_seq))
        self.config = config
        self.t = 0
        n_traders = sum(p.count for p in config.populations) + len(config.accounts)
        names = list(config.instruments)
        mark = config.mark
        settings = MarkSettings(config.step_seconds, mark.basis_window_seconds, mark.stale_seconds)
        mark_rule = MARK_RULES[mark.method](len(names), settings)
        self.exchange = build_exchange(config, n_traders, mark_rule)
        f = config.funding
        interval = max(1, round(f.interval_seconds / config.step_seconds)) if f.interval_seconds else 0
        self.funding = Funding(self.exchange, FundingRules(interval, f.interest, f.clamp, f.impact_notional, f.cap))
        corr = None if config.correlation is None else np.array(config.correlation)
        calm = simulate_paths(process_specs(config), config.steps, np.random.default_rng(price_seq), corr)
        shocks = [Shock(s.step, names.index(s.instrument), s.size, s.duration) for s in config.shocks]
        self.paths = apply_shocks(calm, shocks)
        self.index = VenueIndex(self.exchange, self.paths, Propagator(impact_params(config, calm)), config.step_seconds)
        liq = config.liquidation
        self.unwinder = TakeoverUnwinder(self.exchange, self.index, liq.unwind_half_life_seconds, config.step_seconds)
        self.liquidation = LiquidationEngine(
            self.exchange,
            LiquidationRules(
                full=liq.mode == "full",
                buffer=liq.buffer,
                penalty=liq.penalty,
                fund_fee=liq.fee,
                step_cap=liq.step_cap,
                rounds=liq.rounds,
                fallback=tuple(liq.fallback),
                clearance=liq.clearance,
                auto_convert_debt=math.inf if liq.auto_convert_debt is None else liq.auto_convert_debt,
            ),
            self.index,
            self.unwinder,
        )
        self.index.advance(0)
        ledger = self.exchange.ledger
        ledger.deposit(INSURANCE_FUND, USD, liq.insurance_fund)
        ledger.deposit(BACKSTOP, USD, liq.backstop_capital)
        self.market = MarketView(self.exchange, config.steps, config.step_seconds)
        self.market.advance(0)
        self.account_types: list[str] = [f"system:{name}" for name in SYSTEM_NAMES]
        self._create_populations(agents_seq)
        self._create_accounts()
        #: The populations that act, in config order.
        self.actors = AgentSet([a for a in self.agents if a.acts], random=self.random)
        self.health = self.exchange.health()
        self.recorder = Recorder(
            self.exchange,
            self.liquidation,
            self.funding,
            self.index,
            self.account_types,
            config.record_every,
            config.steps,
        )
        self.recorder.record(0, self.health)

    # ------------------------------------------------------------------ setup
    def _create_populations(self, agents_seq: np.random.SeedSequence) -> None:
        config = self.config
        names = list(config.instruments)
        ledger = self.exchange.ledger
        for pop, pop_seq in zip(config.populations, agents_seq.spawn(len(config.populations)), strict=True):
            cls = AGENT_TYPES[pop.type]
            params = cls.Params.model_validate(pop.params)
            instruments = [names.index(n) for n in (pop.instruments or names)]
            setup_seq, step_seq = pop_seq.spawn(2)
            setup = np.random.default_rng(setup_seq)
            first, n = len(self.account_types), pop.count
            accounts = range(first, first + n)
            self.account_types += [pop.type] * n
            for account in accounts:
                self._set_mode(account, pop.margin_mode)
            for asset, dist in pop.collateral.items():
                amounts = np.maximum(sample(dist, setup, n), 0.0)
                for account, amount in zip(accounts, amounts.tolist(), strict=True):
                    ledger.deposit(account, self._asset(asset), amount)
            leverage = sample(pop.leverage, setup, n)
            population = cls(self, first, instruments, leverage, params, setup, np.random.default_rng(step_seq))
            self._open(population)

    def _open(self, population: Population) -> None:
        """Give a population's members their opening positions (at the index)."""
        lots = population.opening_positions()
        if lots is None:
            return
        held = [(m, float(self.exchange.index[m])) for m in population.instruments]
        for account, row in zip(population.accounts.tolist(), lots.tolist(), strict=True):
            opened = [self._give(account, m, n, price) for (m, price), n in zip(held, row, strict=True)]
            self._isolate(account, opened)

    def _create_accounts(self) -> None:
        names = list(self.config.instruments)
        for acc in self.config.accounts:
            account = len(self.account_types)
            self.account_types.append(f"account:{acc.name}")
            self._set_mode(account, acc.margin_mode)
            for asset, amount in acc.collateral.items():
                self.exchange.ledger.deposit(account, self._asset(asset), amount)
            opened = []
            for name, pos in acc.positions.items():
                m = names.index(name)
                lots = round(pos.qty / self.exchange.instruments[m].lot_size)
                opened.append(self._give(account, m, lots, pos.entry))
            self._isolate(account, opened)

    def _set_mode(self, account: int, mode: str | None) -> None:
        """A new (flat) account's margin mode: its own, else the config's."""
        self.exchange.set_margin_mode(account, mode or self.config.margin.mode)

    def _give(self, account: int, m: int, lots: int, price: float) -> tuple[int, float]:
        """Open ``lots`` (signed) at ``price`` against genesis; return (m, notional)."""
        ex = self.exchange
        if lots:
            ex.ledger.trade_between(account, GENESIS, m, lots, price, float(ex.cum_funding[m]))
        return m, abs(lots) * ex.instruments[m].lot_size * price

    def _isolate(self, account: int, opened: list[tuple[int, float]]) -> None:
        """Isolated mode: move the account's USD into its positions' margin by notional."""
        ledger = self.exchange.ledger
        total = sum(n for _, n in opened)
        if not ledger.isolated[account] or total <= 0:
            return
        cash = float(ledger.balances[account, USD])
        for m, notional in opened:
            ledger.allocate_isolated(account, m, cash * notional / total)

    def _asset(self, name: str) -> int:
        return list(self.config.collateral).index(name)

    # ------------------------------------------------------------------- step
    def step(self) -> None:
        self.t += 1
        t = self.t
        ex = self.exchange
        ex.time = t * self.config.step_seconds
        self.index.advance(t)
        self.market.advance(t)
        self.health = ex.health()
        self._traders_act()
        self._traders_flow()
        self.unwinder.step()
        self.funding.step(t)
        self.liquidation.run_step(t)
        self.market.close(t)
        self._observe(t)
        self.recorder.record(t, ex.health())

    def _traders_act(self) -> None:
        """Every acting population decides from the start-of-step state; the members'
        orders reach the books in one arrival order drawn from the shuffle stream, and
        each population learns what became of its members' orders."""
        sheets = self.actors.map("decide")
        arrival = self.rng.permutation(sum(len(sheet.members) for sheet in sheets))
        for sheet, outcome in zip(sheets, send(self.exchange, sheets, arrival), strict=True):
            sheet.population.receive(sheet, outcome)

    def _traders_flow(self) -> None:
        """The step's taker flow (USD, buys > 0) per instrument moves the index."""
        ex = self.exchange
        self.index.record_fills(ex.fill_columns())  # this step's fills so far: all traders'
        ex.update_marks()

    def _observe(self, t: int) -> None:
        """End of step: the mark rule samples the book's basis and the funding basis."""
        ex = self.exchange
        mids = np.array([np.nan if (mid := self.market.mid(m)) is None else mid for m in range(len(ex.instruments))])
        interval = self.funding.rules.interval
        left = (interval - t % interval) / interval if interval else 0.0
        ex.mark_rule.observe(ex.index, mids, self.funding.estimate() * left)

    def run(self, progress=None) -> None:
        """Run all steps; ``progress(step)`` is called after each."""
        for _ in range(self.config.steps):
            self.step()
            if progress is not None:
                progress(self.t)


def impact_params(config: Config, calm_paths: np.ndarray) -> list[ImpactParams]:
    """Each instrument's impact parameters; sigma_D from the config or from the (N + 1, I)
    exogenous paths before scheduled shocks."""
    imp = config.impact
    realized = daily_volatility(calm_paths, config.step_seconds)
    return [
        ImpactParams(
            daily_volatility=imp.daily_volatility.get(name, float(realized[m])),
            venue_share=imp.venue_share,
            y=imp.y,
            beta=imp.beta,
            decay_seconds=imp.decay_seconds,
        )
        for m, name in enumerate(config.instruments)
    ]
