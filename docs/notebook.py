"""cascadelab in a notebook (marimo): how much of a flash crash is the venue's own selling?

Open it with ``.venv/bin/marimo edit docs/notebook.py`` (or run it top to bottom with
``.venv/bin/python docs/notebook.py``; the test suite does). Every cell is plain Python:
copy them into Jupyter as they are.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo
    import plotly.graph_objects as go
    import polars as pl

    from sim import load, simulate

    return go, load, mo, pl, simulate


@app.cell
def _(mo):
    mo.md(
        """
        # A flash crash, with and without the venue's price impact

        `simulate(config, seed=..., **overrides)` runs a config and returns a `Run`: its
        tables as polars frames (`market`, `liquidations`, `accounts`, `cascades`, ...),
        its headline `metrics` and `.report()`. Overrides use `__` for the dots of a key
        path. A short crash keeps the notebook quick: the shock comes at step 200 (5 s
        steps), 150 leveraged holders.
        """
    )
    return


@app.cell
def _(mo, simulate):
    config = mo.notebook_dir().parent / "configs" / "flash_crash.toml"
    short = {"steps": 240, "populations__5__count": 150, "populations__3__count": 30}
    crash = simulate(config, seed=7, **short)
    muted = simulate(config, seed=7, impact__venue_share=0.01, **short)  # the venue barely moves the index
    return crash, muted


@app.cell
def _(crash, muted, pl):
    metrics = pl.DataFrame([crash.metrics, muted.metrics]).insert_column(
        0, pl.Series("venue_share", [crash.config.impact.venue_share, muted.config.impact.venue_share])
    )
    metrics
    return (metrics,)


@app.cell
def _(crash, go, muted, pl):
    fig = go.Figure()
    for run, name in ((crash, "venue share 0.2"), (muted, "venue share 0.01")):
        btc = run.market.filter(pl.col("instrument") == "BTC")
        fig.add_scatter(x=btc["time_seconds"] / 60, y=btc["mark_price"], name=name)
    fig.update_layout(xaxis_title="time (min)", yaxis_title="BTC mark price (USD)", height=380)
    fig
    return


@app.cell
def _(crash):
    # the largest cascades: accounts, notional (USD), generations, steps
    crash.cascades.sort("accounts", "notional", descending=True).head(5)
    return


@app.cell
def _(crash, load, metrics):
    # a Run lives in a temporary folder until saved; load() reads any run or sweep folder
    report = crash.report()  # the interactive report with the cascade and account explorer
    again = load(crash.folder)
    share = 1 - metrics["liquidated_notional"][1] / metrics["liquidated_notional"][0]
    print(f"report: {report}")
    print(f"liquidated notional without the venue's impact: {share:.0%} less ({again.liquidations.height} rows)")
    return


if __name__ == "__main__":
    app.run()
