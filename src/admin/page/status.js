"use strict";
(function () {
  var POLL_MS = 1500;
  var HISTORY = 60;
  var TOKEN_KEY = "fulcrum.adminToken";
  var SVG_NS = "http://www.w3.org/2000/svg";
  // Per backend ("upstream\n addr"): the last counters and the request-rate history.
  var seen = {};
  var timer = null;

  function $(id) { return document.getElementById(id); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function cell(row, label, cls, content) {
    var td = el("td", cls);
    td.setAttribute("data-label", label);
    if (content instanceof Node) td.appendChild(content);
    else if (content !== undefined && content !== null) td.textContent = String(content);
    row.appendChild(td);
    return td;
  }

  // The token: from a "#token=..." fragment (then removed from the address bar), else
  // this tab's sessionStorage.
  function takeFragmentToken() {
    var m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (!m) return;
    try { sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1])); } catch (e) { /* none */ }
    history.replaceState(null, "", location.pathname + location.search);
  }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }

  function setToken(t) {
    try {
      if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* none */ }
  }

  function duration(seconds) {
    var s = Math.floor(seconds);
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + (s % 60) + "s";
    return s + "s";
  }

  function ms(v) {
    if (v === undefined || v === null) return "\u2013";
    if (v >= 1000) return (v / 1000).toFixed(2) + " s";
    if (v >= 100) return v.toFixed(0) + " ms";
    if (v >= 10) return v.toFixed(1) + " ms";
    return v.toFixed(2) + " ms";
  }

  function rate(v) {
    if (v === null || v === undefined) return "\u2013";
    if (v >= 100) return v.toFixed(0);
    if (v >= 10) return v.toFixed(1);
    return v.toFixed(2);
  }

  function percent(part, total) {
    if (!total) return "\u2013";
    var p = part * 100 / total;
    return (p >= 10 ? p.toFixed(0) : p.toFixed(1)) + "%";
  }

  // What a backend's row says: the runtime API's state first, then health, breaker, ramp.
  function stateOf(b) {
    if (b.state === "disabled") return "disabled";
    if (b.state === "drain") return "draining";
    if (!b.healthy) return "unhealthy";
    if (b.ejected) return "ejected";
    if (b.slow_start !== undefined && b.slow_start !== null) return "slow_start";
    return "healthy";
  }

  function stateLabel(state, b) {
    if (state === "slow_start") return "slow start " + Math.round(b.slow_start * 100) + "%";
    return state;
  }

  // Request and failure rates since the last poll, and the rate history, per backend.
  function measure(key, b, now) {
    var s = seen[key];
    var out = { rps: null, errors: null, window: 0, history: s ? s.history : [] };
    if (s && now > s.at && b.requests >= s.requests && b.failures >= s.failures) {
      var dt = (now - s.at) / 1000;
      out.window = b.requests - s.requests;
      out.rps = out.window / dt;
      out.errors = b.failures - s.failures;
      out.history = s.history.concat([out.rps]).slice(-HISTORY);
    }
    seen[key] = { at: now, requests: b.requests, failures: b.failures, history: out.history, live: true };
    return out;
  }

  function sparkline(values) {
    var w = 100, h = 24;
    var svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "request rate, last " + values.length + " updates");
    if (values.length < 2) return svg;
    var max = Math.max.apply(null, values.concat([1]));
    var step = w / (HISTORY - 1);
    var x0 = w - step * (values.length - 1);
    var pts = values.map(function (v, i) {
      return (x0 + i * step).toFixed(1) + "," + (h - 1 - (v / max) * (h - 3)).toFixed(1);
    });
    var area = document.createElementNS(SVG_NS, "polygon");
    area.setAttribute("points", x0.toFixed(1) + "," + h + " " + pts.join(" ") + " " + w + "," + h);
    var line = document.createElementNS(SVG_NS, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.appendChild(area);
    svg.appendChild(line);
    return svg;
  }

  function checkCell(b, nowUnix) {
    var box = el("div");
    if (!("health_check" in b)) { box.appendChild(el("span", "sub", "no checks")); return box; }
    var c = b.health_check;
    if (!c) { box.appendChild(el("span", "sub", "pending")); return box; }
    var ago = Math.max(0, nowUnix - c.last_at_unix);
    box.appendChild(el("div", "sub", duration(ago) + " ago \u00b7 " + ms(c.last_duration_ms)));
    if (c.last_error) {
      var err = el("div", "check-error", c.last_error);
      err.title = c.last_error;
      box.appendChild(err);
    }
    return box;
  }

  function backendRow(name, b, totals, now, nowUnix) {
    var state = stateOf(b);
    var m = measure(name + "\n" + b.addr, b, now);
    var tr = el("tr");
    tr.setAttribute("data-upstream", name);
    tr.setAttribute("data-backend", b.addr);
    tr.setAttribute("data-state", state);
    var addr = cell(tr, "Backend", "addr", b.addr);
    if (b.source && b.source !== "static") addr.appendChild(el("span", "sub", " " + b.source));
    cell(tr, "State", "", el("span", "pill " + state, stateLabel(state, b)));
    cell(tr, "Weight", "num", b.weight);
    cell(tr, "In flight", "num", b.in_flight);
    cell(tr, "Req/s", "num", rate(m.rps));
    cell(tr, "Errors", "num", m.rps === null ? "\u2013" : percent(m.errors, m.window));
    cell(tr, "p50", "num", b.latency_ms.samples ? ms(b.latency_ms.p50) : "\u2013");
    cell(tr, "p99", "num", b.latency_ms.samples ? ms(b.latency_ms.p99) : "\u2013");
    cell(tr, "Trend", "", sparkline(m.history));
    cell(tr, "Last check", "", checkCell(b, nowUnix));
    totals.backends += 1;
    if (b.available) totals.up += 1;
    totals.inFlight += b.in_flight;
    if (m.rps !== null) { totals.rps += m.rps; totals.window += m.window; totals.errors += m.errors; }
    return tr;
  }

  function upstreamPanel(name, u, totals, now, nowUnix) {
    var panel = el("div", "panel");
    panel.setAttribute("data-upstream-panel", name);
    var head = el("div", "upstream-head");
    head.appendChild(el("span", "title", name));
    head.appendChild(el("span", "tag", u.algorithm));
    head.appendChild(el("span", "spacer"));
    var up = u.backends.filter(function (b) { return b.available; }).length;
    head.appendChild(el("span", "sub", up + " of " + u.backends.length + " available"));
    var bar = el("span", "bar");
    var fill = el("span", "fill");
    fill.style.width = (u.backends.length ? up * 100 / u.backends.length : 0) + "%";
    bar.appendChild(fill);
    head.appendChild(bar);
    panel.appendChild(head);
    var table = el("table", "grid backends");
    var hr = el("tr");
    ["Backend", "State", "Weight", "In flight", "Req/s", "Errors", "p50", "p99", "Trend", "Last check"]
      .forEach(function (h, i) { hr.appendChild(el("th", i >= 2 && i <= 7 ? "num" : "", h)); });
    var thead = el("thead");
    thead.appendChild(hr);
    table.appendChild(thead);
    var tbody = el("tbody");
    u.backends.forEach(function (b) { tbody.appendChild(backendRow(name, b, totals, now, nowUnix)); });
    if (!u.backends.length) {
      var tr = el("tr");
      cell(tr, "Backend", "sub", "no backends");
      tbody.appendChild(tr);
    }
    table.appendChild(tbody);
    panel.appendChild(table);
    return panel;
  }

  function seconds(msv) {
    return msv % 1000 === 0 ? msv / 1000 + "s" : msv + "ms";
  }

  function routeRow(r) {
    var tr = el("tr");
    tr.setAttribute("data-route", r.id);
    var id = cell(tr, "#", "", r.name === null ? "#" + r.index : r.name);
    if (r.name !== null) id.appendChild(el("div", "sub", "#" + r.index));
    var match = el("div");
    match.appendChild(el("code", "", r.match.hosts.join(", ") + " " + r.match.path));
    var conds = [];
    if (r.match.methods.length) conds.push(r.match.methods.join(" "));
    Object.keys(r.match.headers).forEach(function (k) { conds.push(k + ": " + r.match.headers[k]); });
    Object.keys(r.match.query).forEach(function (k) { conds.push("?" + k + "=" + r.match.query[k]); });
    if (conds.length) match.appendChild(el("div", "sub", conds.join(" \u00b7 ")));
    if (r.policies.path_changes) match.appendChild(el("div", "sub", r.policies.path_changes));
    cell(tr, "Match", "match", match);
    var dest = el("div");
    var total = r.upstreams.reduce(function (a, t) { return a + (t.weight || 0); }, 0);
    r.upstreams.forEach(function (t) {
      var line = el("div");
      line.appendChild(el("span", "", t.upstream));
      if (t.weight !== undefined) line.appendChild(el("span", "sub", " " + percent(t.weight, total)));
      var p = "connect " + seconds(t.timeouts_ms.connect) + " \u00b7 read " + seconds(t.timeouts_ms.read) +
        " \u00b7 " + (t.max_tries > 1 ? "up to " + t.max_tries + " tries" : "no retries");
      line.appendChild(el("div", "sub", p));
      dest.appendChild(line);
    });
    if (r.policies.mirror) dest.appendChild(el("div", "sub", "mirror " + r.policies.mirror));
    cell(tr, "Destination", "dest", dest);
    var pol = el("div");
    function tag(text, on, title) {
      var t = el("span", on ? "tag on" : "tag", text);
      if (title) t.title = title;
      pol.appendChild(t);
    }
    tag(r.policies.cache ? "cache" : "no cache", r.policies.cache);
    tag(r.policies.compression ? "compress" : "no compression", r.policies.compression);
    var limited = r.policies.rate_limit.indexOf("off") !== 0;
    tag(limited ? r.policies.rate_limit.split(" (")[0] : "no rate limit", limited, r.policies.rate_limit);
    if (r.policies.body_limit !== "none") tag("body \u2264 " + r.policies.body_limit.split(" (")[0], true);
    if (r.policies.redirect_to_https) tag("\u2192 https", true);
    cell(tr, "Policies", "", pol);
    return tr;
  }

  function listenerRow(l) {
    var tr = el("tr");
    cell(tr, "Address", "addr", l.addr);
    var proto = el("div");
    proto.appendChild(el("span", l.tls ? "tag on" : "tag", l.tls ? "HTTPS" : "HTTP"));
    if (l.h2) proto.appendChild(el("span", "tag on", l.tls ? "h2" : "h2c"));
    cell(tr, "Protocol", "", proto);
    cell(tr, "Notes", "sub", l.redirect_to_https ? "redirects to HTTPS" : "");
    return tr;
  }

  function replace(id, nodes) {
    var box = $(id);
    while (box.firstChild) box.removeChild(box.firstChild);
    nodes.forEach(function (n) { box.appendChild(n); });
  }

  function render(doc) {
    var now = performance.now();
    var nowUnix = Date.now() / 1000;
    var totals = { backends: 0, up: 0, rps: 0, window: 0, errors: 0, inFlight: 0 };
    Object.keys(seen).forEach(function (k) { seen[k].live = false; });
    $("version").textContent = "v" + doc.version;
    $("uptime").textContent = duration(doc.uptime_seconds);
    $("config-file").textContent = doc.config ? (doc.config.file || "quick mode (flags)") : "\u2013";
    $("config-hash").textContent = doc.config ? doc.config.hash : "\u2013";
    var names = Object.keys(doc.upstreams);
    replace("upstreams", names.map(function (n) {
      return upstreamPanel(n, doc.upstreams[n], totals, now, nowUnix);
    }));
    // Forget backends that are gone.
    Object.keys(seen).forEach(function (k) { if (!seen[k].live) delete seen[k]; });
    replace("routes", (doc.routes || []).map(routeRow));
    replace("listeners", (doc.listeners || []).map(listenerRow));
    $("sum-up").textContent = totals.up + " / " + totals.backends;
    $("sum-rps").textContent = totals.window || totals.rps ? rate(totals.rps) : (Object.keys(seen).length ? "0.00" : "\u2013");
    $("sum-err").textContent = percent(totals.errors, totals.window);
    $("sum-inflight").textContent = totals.inFlight;
    ["summary", "upstreams-section", "routes-section", "listeners-section"].forEach(function (id) {
      $(id).hidden = false;
    });
    $("auth").hidden = true;
    $("banner").hidden = true;
    live("ok", "live");
    document.body.setAttribute("data-auth", "ok");
    document.body.setAttribute("data-loaded", "1");
  }

  function live(state, text) {
    $("live").setAttribute("data-live", state);
    $("live-text").textContent = text;
  }

  function askToken(message) {
    document.body.setAttribute("data-auth", "required");
    ["summary", "upstreams-section", "routes-section", "listeners-section"].forEach(function (id) {
      $(id).hidden = true;
    });
    $("auth").hidden = false;
    $("auth-error").hidden = !message;
    $("auth-error").textContent = message || "";
    live("error", "token required");
    $("token").focus();
  }

  function poll() {
    timer = null;
    var t = token();
    var headers = { "Accept": "application/json" };
    if (t) headers["Authorization"] = "Bearer " + t;
    fetch("/status", { headers: headers, cache: "no-store", credentials: "omit" })
      .then(function (resp) {
        if (resp.status === 401) {
          if (t) setToken(null);
          askToken(t ? "That token was refused." : "");
          return null;
        }
        if (!resp.ok) throw new Error("/status answered " + resp.status);
        return resp.json().then(function (doc) { render(doc); schedule(); });
      })
      .catch(function (e) {
        var b = $("banner");
        b.textContent = "Cannot read /status (" + e.message + "); retrying. Figures shown are from the last update.";
        b.hidden = false;
        live("error", "offline");
        schedule();
      });
  }

  function schedule() {
    if (timer === null) timer = setTimeout(poll, POLL_MS);
  }

  $("auth-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    setToken($("token").value.trim());
    $("token").value = "";
    live("wait", "connecting");
    if (timer !== null) { clearTimeout(timer); timer = null; }
    poll();
  });

  takeFragmentToken();
  poll();
})();
