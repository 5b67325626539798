// cascadelab report: the cascade and account explorer (see sim/explorer.py).
// Draws from the JSON in #explorer-data with the page's plotly.js; no network.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("explorer-data").textContent);
  const config = { displaylogo: false, showSendToCloud: false, responsive: true };
  const base = { template: data.template, margin: { l: 70, r: 20, t: 30, b: 45 } };
  const usd = (v) => (v == null ? "n/a" : Math.round(v).toLocaleString("en-US"));
  const num = (v) => (v == null ? "n/a" : Number(v).toPrecision(4));
  const price = (v) => (v == null ? "n/a" : v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }));
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  const liq = data.liquidations;
  const DEPTH_COLORS = ["#fcbba1", "#fc9272", "#fb6a4a", "#de2d26", "#a50f15"]; // depth 1, 2, ... 5+
  const cascadeById = new Map(data.cascades.map((c) => [c.id, c]));
  const cascadePick = document.getElementById("cascade-pick");
  const accountPick = document.getElementById("account-pick");

  function draw(id, traces, layout) {
    Plotly.react(id, traces, Object.assign({}, base, layout), config);
  }

  function rowsWhere(test) {
    const out = [];
    for (let i = 0; i < liq.row_id.length; i++) if (test(i)) out.push(i);
    return out;
  }

  // Stacked panels sharing one time axis drawn under the bottom one: y-axis refs and layout.
  function stacked(titles, heights) {
    const total = heights.reduce((a, b) => a + b, 0);
    const gap = titles.length > 1 ? 0.06 : 0;
    const refs = titles.map((_, i) => (i === 0 ? "y" : "y" + (i + 1)));
    const layout = { xaxis: { title: { text: "time (min)" }, anchor: refs[refs.length - 1] } };
    let top = 1;
    titles.forEach((title, i) => {
      const h = heights[i] / total;
      layout["yaxis" + (i === 0 ? "" : i + 1)] = { domain: [Math.max(top - h + gap, 0), top], anchor: "x", title: { text: title } };
      top -= h;
    });
    return { refs, layout };
  }

  function drawOverview() {
    const top = data.cascades.slice(0, 30).reverse();
    if (!top.length) {
      draw("cascade-overview", [], { height: 200, annotations: [{ text: "no liquidations in this run", showarrow: false }],
        xaxis: { title: { text: "accounts" } }, yaxis: { title: { text: "cascade" } } });
      return;
    }
    const trace = {
      type: "bar", orientation: "h", x: top.map((c) => c.accounts), y: top.map((c) => "#" + c.id),
      customdata: top.map((c) => [c.id, usd(c.notional), c.depth, c.t0.toFixed(2)]),
      text: top.map((c) => usd(c.notional) + " USD, depth " + c.depth + ", " + c.t0.toFixed(2) + " min"),
      textposition: "outside", cliponaxis: false, textfont: { color: "#333", size: 10 }, marker: { color: top.map((c) => DEPTH_COLORS[Math.min(c.depth, DEPTH_COLORS.length) - 1]) },
      hovertemplate: "cascade %{customdata[0]}<br>%{x} accounts<br>%{customdata[1]} USD<br>depth %{customdata[2]}" +
        "<br>starts %{customdata[3]} min<extra></extra>",
    };
    draw("cascade-overview", [trace], {
      height: Math.max(220, 60 + 18 * top.length),
      xaxis: { title: { text: "accounts liquidated in the cascade" }, range: [0, 1.8 * Math.max(...top.map((c) => c.accounts))] },
      yaxis: { title: { text: "cascade id" }, type: "category", automargin: true },
    });
    document.getElementById("cascade-overview").on("plotly_click", (ev) => pickCascade(ev.points[0].customdata[0]));
  }

  function pickCascade(id) {
    const c = cascadeById.get(Number(id));
    if (!c) return;
    cascadePick.value = String(c.id);
    remember("cascade", c.id);
    const n = c.nodes;
    const index = new Map(n.account.map((a, i) => [a, i]));
    const ex = [], ey = [];
    n.parent.forEach((p, i) => {
      if (p == null) return;
      const j = index.get(p);
      ex.push(n.generation[j], n.generation[i], null);
      ey.push(n.y[j], n.y[i], null);
    });
    const maxNotional = Math.max(...n.notional, 1);
    const leaves = Math.max(...n.y) + 1;
    const nodes = {
      type: "scatter", mode: "markers" + (n.account.length <= 60 ? "+text" : ""), x: n.generation, y: n.y,
      text: n.account.map(String), textposition: "middle right", textfont: { size: 9 },
      customdata: n.account.map((a, i) => [a, n.agent_type[i], usd(n.notional[i]), n.t[i].toFixed(2), n.step[i],
        n.round[i], n.parent[i] == null ? "the market's move" : "account " + n.parent[i], n.rows[i]]),
      hovertemplate: "account %{customdata[0]} (%{customdata[1]})<br>%{customdata[2]} USD in %{customdata[7]} row(s)" +
        "<br>%{customdata[3]} min (step %{customdata[4]}, round %{customdata[5]})<br>pushed under by %{customdata[6]}" +
        "<extra></extra>",
      marker: { size: n.notional.map((v) => 7 + 22 * Math.sqrt(v / maxNotional)), color: n.t, colorscale: "Viridis",
        colorbar: { title: { text: "time (min)" } }, line: { width: 0.5, color: "#333" } },
      name: "account",
    };
    const edges = { type: "scatter", mode: "lines", x: ex, y: ey, line: { color: "#999", width: 1 }, hoverinfo: "skip", name: "pushed under" };
    draw("cascade-tree", [edges, nodes], {
      height: Math.min(Math.max(260, 80 + 16 * leaves), 2400), showlegend: false,
      title: { text: "cascade " + c.id + ": " + c.accounts + " accounts, " + usd(c.notional) + " USD, depth " + c.depth +
        ", " + c.t0.toFixed(2) + "–" + c.t1.toFixed(2) + " min", font: { size: 13 } },
      xaxis: { title: { text: "generation (1 = put under by the market's move)" }, dtick: 1, range: [0.5, Math.max(...n.generation) + 0.8] },
      yaxis: { title: { text: "accounts (one row per leaf of the tree)" }, showticklabels: false, zeroline: false,
        autorange: "reversed" },
    });
    drawCascadePrices(c);
    const rows = n.account.map((a, i) => i).sort((i, j) => n.generation[i] - n.generation[j] || n.t[i] - n.t[j]);
    document.getElementById("cascade-accounts").innerHTML = table(
      ["account", "type", "generation", "pushed under by", "first liquidation (min)", "step", "round", "notional (USD)", "rows"],
      rows.map((i) => [accountLink(n.account[i]), esc(n.agent_type[i]), n.generation[i],
        n.parent[i] == null ? "market" : accountLink(n.parent[i]), n.t[i].toFixed(2), n.step[i], n.round[i],
        usd(n.notional[i]), n.rows[i]]));
  }

  function drawCascadePrices(c) {
    const lo = c.t0 - WINDOW, hi = c.t1 + WINDOW;
    const { refs, layout } = stacked(c.instruments.map((s) => s + " price (USD)"), c.instruments.map(() => 1));
    const traces = [];
    c.instruments.forEach((name, k) => {
      const p = data.prices[name];
      const keep = p.t.map((t, i) => i).filter((i) => p.t[i] >= lo && p.t[i] <= hi);
      for (const [key, color, dash] of [["exogenous", "#9467bd", "dot"], ["index", "#1f77b4", "solid"], ["mark", "#2ca02c", "solid"]]) {
        if (!p[key]) continue;
        traces.push({ type: "scatter", mode: "lines", x: keep.map((i) => p.t[i]), y: keep.map((i) => p[key][i]), yaxis: refs[k],
          name: key, legendgroup: key, showlegend: k === 0, line: { color, dash } });
      }
      const hits = rowsWhere((i) => liq.cascade[i] === c.id && liq.instrument[i] === name);
      traces.push({ type: "scatter", mode: "markers", x: hits.map((i) => liq.t[i]), y: hits.map((i) => liq.price[i]), yaxis: refs[k],
        name: "its liquidations", legendgroup: "liq", showlegend: k === 0, marker: { color: "#d62728", size: 8, opacity: 0.7 },
        customdata: hits.map((i) => [liq.account[i], usd(liq.notional[i]), liq.kind[i]]),
        hovertemplate: "%{x:.2f} min, %{y:,.2f} USD<br>account %{customdata[0]}: %{customdata[2]}, %{customdata[1]} USD<extra></extra>" });
    });
    layout.xaxis.range = [lo, hi];
    draw("cascade-prices", traces, Object.assign(layout, { height: 220 + 120 * c.instruments.length,
      title: { text: "prices " + WINDOW + " min around the cascade", font: { size: 13 } } }));
  }

  function pickAccount(id) {
    const a = data.accounts[String(id)];
    if (!a) return;
    accountPick.value = String(id);
    remember("account", id);
    const instruments = Object.keys(a.positions);
    const { refs, layout } = stacked(["equity (USD)", "margin ratio", ...instruments.map((s) => "position (" + s + ")")],
      [1.3, 1, ...instruments.map(() => 1)]);
    const line = (y, ref, name, color) => ({ type: "scatter", mode: "lines+markers", marker: { size: 3 }, x: a.t, y, yaxis: ref, name, line: { color } });
    const traces = [line(a.equity, refs[0], "equity", "#1f77b4"), line(a.margin_ratio, refs[1], "margin ratio", "#ff7f0e"),
      ...instruments.map((s, k) => line(a.positions[s], refs[2 + k], s + " position", "#2ca02c"))];
    const hits = rowsWhere((i) => liq.account[i] === Number(id));
    const shapes = hits.map((i) => ({ type: "line", xref: "x", yref: "paper", x0: liq.t[i], x1: liq.t[i], y0: 0, y1: 1,
      line: { color: "rgba(214,39,40,0.35)", width: 1 } }));
    shapes.push({ type: "line", xref: "paper", x0: 0, x1: 1, yref: refs[1], y0: 1, y1: 1, line: { color: "#d62728", dash: "dash", width: 1 } });
    draw("account-series", traces, Object.assign(layout, { height: 260 + 150 * (1 + instruments.length), showlegend: false, shapes,
      title: { text: "account " + id + " (" + a.agent_type + "): " + hits.length + " liquidation row(s)", font: { size: 13 } } }));
    document.getElementById("account-liquidations").innerHTML = hits.length ? table(
      ["row", "time (min)", "step", "round", "instrument", "side", "qty (base)", "price (USD)", "notional (USD)", "kind", "cascade", "pushed under by"],
      hits.map((i) => [liq.row_id[i], liq.t[i].toFixed(2), liq.step[i], liq.round[i], esc(liq.instrument[i]), esc(liq.side[i]),
        num(liq.qty[i]), price(liq.price[i]), usd(liq.notional[i]), esc(liq.kind[i]), cascadeLink(liq.cascade[i]),
        liq.trigger_account[i] == null ? "market" : accountLink(liq.trigger_account[i])])) : "<p class='note'>never liquidated</p>";
  }

  function remember(key, value) {
    const params = new URLSearchParams(location.hash.slice(1));
    params.set(key, value);
    history.replaceState(null, "", "#" + params.toString());
  }

  function accountLink(a) {
    return data.accounts[String(a)] ? '<a href="#account-explorer" data-account="' + a + '">' + a + "</a>" : String(a);
  }
  function cascadeLink(c) {
    return '<a href="#cascade-explorer" data-cascade="' + c + '">#' + c + "</a>";
  }
  function table(head, rows) {
    return "<table class='summary'><tr>" + head.map((h) => "<th>" + esc(h) + "</th>").join("") + "</tr>" +
      rows.map((r) => "<tr>" + r.map((v) => "<td>" + v + "</td>").join("") + "</tr>").join("") + "</table>";
  }

  const WINDOW = data.window_minutes;
  const liquidated = new Map();
  liq.account.forEach((a, i) => liquidated.set(a, (liquidated.get(a) || 0) + liq.notional[i]));
  for (const c of data.cascades) {
    cascadePick.add(new Option("#" + c.id + ": " + c.accounts + " accounts, " + usd(c.notional) + " USD, depth " + c.depth +
      ", " + c.t0.toFixed(2) + " min", String(c.id)));
  }
  const ids = Object.keys(data.accounts).map(Number);
  ids.sort((x, y) => (liquidated.get(y) || -1) - (liquidated.get(x) || -1) || x - y);
  for (const id of ids) {
    const note = liquidated.has(id) ? ", liquidated " + usd(liquidated.get(id)) + " USD" : "";
    accountPick.add(new Option("account " + id + " (" + data.accounts[String(id)].agent_type + note + ")", String(id)));
  }
  cascadePick.addEventListener("change", () => pickCascade(cascadePick.value));
  accountPick.addEventListener("change", () => pickAccount(accountPick.value));
  document.addEventListener("click", (ev) => {
    const link = ev.target.closest("a[data-account], a[data-cascade]");
    if (!link) return;
    ev.preventDefault(); // the address keeps the selection, not the heading
    if (link.dataset.account) pickAccount(link.dataset.account);
    if (link.dataset.cascade) pickCascade(link.dataset.cascade);
    document.getElementById(link.dataset.account ? "account-explorer" : "cascade-explorer").scrollIntoView();
  });
  drawOverview();
  // The page's address names the selection (#cascade=ID&account=ID): bookmark or share it.
  const wanted = new URLSearchParams(location.hash.slice(1));
  if (data.cascades.length) {
    pickCascade(wanted.get("cascade") && cascadeById.has(Number(wanted.get("cascade"))) ? wanted.get("cascade") : data.cascades[0].id);
    document.getElementById("cascade-tree").on("plotly_click", (ev) => {
      const d = ev.points[0].customdata;
      if (d) pickAccount(d[0]);
    });
    // the named account, else the cascade's root, else (a large run embeds only some accounts) the first one
    const root = cascadeById.get(Number(cascadePick.value)).root;
    const first = data.accounts[String(wanted.get("account"))] ? wanted.get("account") : data.accounts[String(root)] ? root : ids[0];
    if (first !== undefined) pickAccount(first);
  } else {
    document.getElementById("cascade-tree").innerHTML = "<p class='note'>no liquidations: nothing to explore</p>";
    if (ids.length) pickAccount(ids[0]);
  }
})();
