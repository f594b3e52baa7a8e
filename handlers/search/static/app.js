// The letgo search page: plain JS over the search API (GET search, GET autocomplete), no build step.
//
// The page state lives in the URL query string (same names as the API), so a search can be shared or
// reloaded and the page opened at ?q=bicicleta&lat=40.4168&lon=-3.7038&language=es shows those results.
// Data from the API is only ever written with textContent (never innerHTML): listings are user content.
// Prices and dates are written in each ad's own locale (its language and country: 1.220 € and 2/12/2026 for an
// ad in es-ES), whatever the browser's language. A search that finds nothing offers what the API found instead:
// the corrected spelling, the same search in another language of that place, a wider radius.
// body[data-state] is idle | loading | ready | error and body[data-renders] counts finished renders, so a
// person (or a browser test) can tell when the page has settled.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SUGGEST_DELAY_MS = 120;
  const PAGE_SIZE = 20;
  const CENT = 0.01; // price facets are [low, high); the API's price_max is inclusive and prices carry cents

  const state = {
    q: "", language: "", sort: "relevance", lat: null, lon: null, country: "", radius_km: null,
    categories: [], price_min: null, price_max: null, fuzzy: true,
  };
  let nextCursor = null;
  let searchSeq = 0; // answers to superseded searches are dropped
  let suggestSeq = 0;
  let suggestTimer = null;
  let activeSuggestion = -1;

  // -- state <-> URL ---------------------------------------------------------------------------------------
  function number(value) {
    if (value === null || value === undefined || String(value).trim() === "") return null;
    const n = Number(value);
    return Number.isFinite(n) ? n : NaN; // NaN is sent as is: the API names the field in its 400
  }

  function readUrl() {
    const p = new URLSearchParams(window.location.search);
    state.q = p.get("q") || "";
    state.language = p.get("language") || "";
    state.sort = p.get("sort") || "relevance";
    state.lat = number(p.get("lat"));
    state.lon = number(p.get("lon"));
    state.country = p.get("country") || "";
    state.radius_km = number(p.get("radius_km"));
    state.categories = p.getAll("category").flatMap((c) => c.split(",")).filter(Boolean);
    state.price_min = number(p.get("price_min"));
    state.price_max = number(p.get("price_max"));
    state.fuzzy = p.get("fuzzy") !== "false";
  }

  function params(overrides = {}) {
    const s = { ...state, ...overrides };
    const p = new URLSearchParams();
    const put = (name, value) => {
      if (value !== null && value !== undefined && value !== "") p.set(name, String(value));
    };
    put("q", s.q.trim());
    put("lat", s.lat);
    put("lon", s.lon);
    if (s.lat !== null) put("radius_km", s.radius_km);
    for (const c of s.categories) p.append("category", c);
    put("price_min", s.price_min);
    put("price_max", s.price_max);
    if (s.sort !== "relevance") put("sort", s.sort);
    put("language", s.language);
    put("country", s.country);
    if (!s.fuzzy) p.set("fuzzy", "false");
    return p;
  }

  function writeUrl() {
    const query = params().toString();
    window.history.replaceState(null, "", query ? `?${query}` : window.location.pathname);
  }

  function fillForm() {
    $("q").value = state.q;
    $("language").value = state.language;
    $("sort").value = state.sort;
    $("lat").value = state.lat === null || Number.isNaN(state.lat) ? "" : String(state.lat);
    $("lon").value = state.lon === null || Number.isNaN(state.lon) ? "" : String(state.lon);
    const preset = [...$("place").options].find((o) => o.dataset.lat !== undefined
      && Number(o.dataset.lat) === state.lat && Number(o.dataset.lon) === state.lon);
    $("place").value = preset ? preset.value : (state.lat === null ? "" : "custom");
    $("sort").querySelector('option[value="distance"]').disabled = state.lat === null;
  }

  // -- the API ---------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body) {
      const error = (body && body.error) || {};
      super(error.message || `the search service answered ${status}`);
      this.status = status;
      this.field = error.field || null;
      this.requestId = error.request_id || null;
    }
  }

  async function api(path, query, signal) {
    const response = await fetch(`${path}?${query.toString()}`, { headers: { Accept: "application/json" }, signal });
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  // -- rendering -------------------------------------------------------------------------------------------
  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "dataset") Object.assign(node.dataset, value);
      else if (name === "className") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    return node;
  }

  function locale(hit) {
    const tag = `${hit.language}-${hit.country}`;
    try { return Intl.getCanonicalLocales(tag)[0]; } catch (_) { return undefined; }
  }

  function money(amount, currency, where) {
    const whole = Number.isInteger(amount);
    const options = { style: "currency", currency, useGrouping: "always",
      minimumFractionDigits: whole ? 0 : 2, maximumFractionDigits: 2 };
    try {
      return new Intl.NumberFormat(where, options).format(amount);
    } catch (_) {
      try { return new Intl.NumberFormat(where, { ...options, useGrouping: true }).format(amount); } catch (__) {
        return `${amount} ${currency}`;
      }
    }
  }

  function day(seconds, where) {
    try { return new Date(seconds * 1000).toLocaleDateString(where); } catch (_) {
      return new Date(seconds * 1000).toLocaleDateString();
    }
  }

  function km(distance) {
    return distance < 10 ? `${distance.toFixed(1)} km` : `${Math.round(distance)} km`;
  }

  const LANGUAGE_NAMES = { es: "Spanish", nl: "Dutch", en: "English", tr: "Turkish", pt: "Portuguese" };
  const COUNTRY_NAMES = { ES: "Spain", NL: "the Netherlands", GB: "the United Kingdom", TR: "Turkey", PT: "Portugal" };

  function why(choice) {
    const place = COUNTRY_NAMES[choice.country] || choice.country;
    switch (choice.source === "default_country" ? "default_country" : choice.reason) {
      case "explicit": return "the language you chose";
      case "point": return `the language of listings around here${place ? ` (${place})` : ""}`;
      case "country": return `the language of listings in ${place}`;
      case "default_country": return "this site's default country";
      case "user": return "your app's language";
      case "accept_language": return "your browser's language";
      default: return choice.requested ? `${choice.requested} has no listings of its own here` : "no language given";
    }
  }

  function renderHit(hit) {
    const where = locale(hit);
    const meta = [money(hit.price, hit.currency, where), hit.city || hit.country];
    if (hit.distance_km !== null) meta.push(km(hit.distance_km));
    meta.push(hit.category.replace(/_/g, " "));
    meta.push(day(hit.listed_at, where));
    return el("li", { className: hit.approximate ? "hit approximate" : "hit",
      dataset: { itemId: hit.item_id, category: hit.category, approximate: String(Boolean(hit.approximate)) } },
      el("h3", { className: "title" }, hit.title),
      hit.approximate ? el("p", { className: "similar" }, "similar spelling") : "",
      el("p", { className: "meta" }, meta.join(" · ")),
      hit.description ? el("p", { className: "description" }, hit.description) : "");
  }

  function renderStatus(body, shown) {
    const choice = body.language;
    let text = `${body.total} result${body.total === 1 ? "" : "s"}`;
    if (shown < body.total) text += ` (showing ${shown})`;
    if (body.approximate) text += `, ${body.approximate} of them with a similar spelling`;
    const language = LANGUAGE_NAMES[choice.language] || choice.language;
    text += ` · ${language} listings: ${why(choice)}`;
    const status = $("status");
    status.textContent = text;
    status.dataset.total = String(body.total);
    status.dataset.language = choice.language;
    status.dataset.reason = choice.reason;
  }

  function renderHelp(body) {
    // Only for a search that found nothing: what the API found instead (another language here, a wider radius).
    const list = $("help-list");
    list.replaceChildren();
    const offers = [];
    for (const alternative of body.alternatives || []) {
      const name = LANGUAGE_NAMES[alternative.language] || alternative.language;
      offers.push([`${alternative.total} in ${name} listings here`, { kind: "language", language: alternative.language },
        () => { state.language = alternative.language; fillForm(); search(); }]);
    }
    if (body.wider) {
      const radius = body.wider.radius_km;
      offers.push([`${body.wider.total} within ${radius} km`, { kind: "radius", radius: String(radius) },
        () => { state.radius_km = radius; search(); }]);
    }
    if (body.total === 0 && state.q.trim() && (state.categories.length || state.price_min !== null
        || state.price_max !== null)) {
      offers.push(["search without the filters", { kind: "filters" },
        () => { state.categories = []; state.price_min = null; state.price_max = null; search(); }]);
    }
    for (const [label, dataset, onClick] of offers) {
      const button = el("button", { type: "button" }, label);
      button.addEventListener("click", onClick);
      list.append(el("li", { dataset }, button));
    }
    $("help").hidden = body.total !== 0 || (offers.length === 0 && !body.did_you_mean);
  }

  function renderDidYouMean(suggestion) {
    const box = $("did-you-mean");
    const link = $("did-you-mean-link");
    box.hidden = !suggestion;
    link.textContent = suggestion || "";
    link.href = suggestion ? `?${params({ q: suggestion }).toString()}` : "#";
  }

  function renderCategories(buckets) {
    const list = $("facet-categories");
    list.replaceChildren();
    const counts = new Map(buckets.map((b) => [b.key, b.count]));
    for (const selected of state.categories) if (!counts.has(selected)) counts.set(selected, 0);
    for (const [key, count] of counts) {
      const box = el("input", { type: "checkbox", value: key, checked: state.categories.includes(key) });
      box.addEventListener("change", () => {
        state.categories = box.checked ? [...state.categories, key] : state.categories.filter((c) => c !== key);
        search();
      });
      list.append(el("li", { dataset: { key, count: String(count) } },
        el("label", {}, box, el("span", { className: "name" }, key.replace(/_/g, " ")),
          el("span", { className: "count" }, String(count)))));
    }
  }

  function facetButton(label, count, dataset, pressed, onClick) {
    const button = el("button",
      { type: "button", "aria-pressed": pressed ? "true" : "false", disabled: count === 0 && !pressed },
      el("span", { className: "name" }, label), el("span", { className: "count" }, String(count)));
    button.addEventListener("click", onClick);
    return el("li", { dataset: { ...dataset, count: String(count) } }, button);
  }

  function clearButton(label, onClick) {
    const button = el("button", { type: "button", className: "clear" }, label);
    button.addEventListener("click", onClick);
    return el("li", { className: "clear" }, button);
  }

  function renderPrices(buckets) {
    const list = $("facet-prices");
    list.replaceChildren();
    for (const b of buckets) {
      const label = b.high === null ? `${b.low}+` : `${b.low}–${b.high}`;
      const max = b.high === null ? null : Math.round((b.high - CENT) * 100) / 100;
      const pressed = state.price_min === b.low && state.price_max === max;
      list.append(facetButton(label, b.count, { key: b.key }, pressed, () => {
        state.price_min = b.low;
        state.price_max = max;
        search();
      }));
    }
    if (state.price_min !== null || state.price_max !== null) {
      list.append(clearButton("any price", () => { state.price_min = null; state.price_max = null; search(); }));
    }
  }

  function renderRings(buckets) {
    $("rings-section").hidden = buckets.length === 0;
    const list = $("facet-rings");
    list.replaceChildren();
    let within = 0;
    for (const b of buckets) {
      within += b.count;
      if (b.high === null) { // "50 km or more" is not a radius: shown, not clickable
        const dataset = { key: b.key, ring: String(b.count), count: String(b.count) };
        list.append(el("li", { className: "beyond", dataset },
          el("span", { className: "name" }, `more than ${b.low} km`),
          el("span", { className: "count" }, String(b.count))));
        continue;
      }
      list.append(facetButton(`within ${b.high} km`, within, { key: b.key, ring: String(b.count) },
        state.radius_km === b.high, () => { state.radius_km = b.high; search(); }));
    }
    if (state.radius_km !== null) list.append(clearButton("any distance", () => { state.radius_km = null; search(); }));
  }

  function showError(error) {
    const box = $("error");
    box.hidden = false;
    box.textContent = error.requestId && error.status >= 500
      ? `${error.message} (request ${error.requestId})` : error.message;
    box.dataset.field = error.field || "";
    for (const input of document.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    const fieldInput = error.field && document.getElementById(error.field === "radius_km" ? "place" : error.field);
    if (fieldInput) fieldInput.setAttribute("aria-invalid", "true");
  }

  function settle(stateName) {
    document.body.dataset.state = stateName;
    document.body.dataset.renders = String(Number(document.body.dataset.renders || "0") + 1);
  }

  // -- searching -------------------------------------------------------------------------------------------
  async function search({ append = false } = {}) {
    const seq = ++searchSeq;
    hideSuggestions();
    if (!append) {
      state.q = $("q").value; // whatever is typed applies to any new search (sort, filters, place…)
      writeUrl();
    }
    document.body.dataset.state = "loading";
    $("more").disabled = true;
    try {
      const query = params();
      query.set("page_size", String(PAGE_SIZE));
      if (append && nextCursor) query.set("cursor", nextCursor);
      const main = api("search", query);
      // Category counts come from the same search without the category filter, so the other categories
      // stay visible (and selectable) while some are selected.
      const unfiltered = state.categories.length && !append
        ? api("search", (() => { const q = params({ categories: [] }); q.set("page_size", "1"); return q; })())
        : null;
      const [body, facetsBody] = await Promise.all([main, unfiltered]);
      if (seq !== searchSeq) return;
      $("error").hidden = true;
      for (const input of document.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
      const results = $("results");
      if (!append) results.replaceChildren();
      const seen = new Set([...results.children].map((li) => li.dataset.itemId));
      for (const hit of body.hits) if (!seen.has(hit.item_id)) results.append(renderHit(hit));
      nextCursor = body.next_cursor;
      $("more").hidden = !nextCursor;
      $("more").disabled = false;
      renderStatus(body, results.children.length);
      if (!append) {
        renderDidYouMean(body.did_you_mean);
        renderHelp(body);
        renderCategories((facetsBody || body).facets.categories);
        renderPrices(body.facets.price_ranges);
        renderRings(body.facets.distance_rings);
      }
      settle("ready");
    } catch (error) {
      if (seq !== searchSeq) return;
      $("more").disabled = false;
      showError(error instanceof ApiError ? error : new ApiError(0, { error: { message: String(error) } }));
      settle("error");
    }
  }

  // -- suggestions while typing ----------------------------------------------------------------------------
  function hideSuggestions() {
    suggestSeq++;
    clearTimeout(suggestTimer);
    $("suggestions").hidden = true;
    $("suggestions").replaceChildren();
    $("q").setAttribute("aria-expanded", "false");
    $("q").removeAttribute("aria-activedescendant");
    activeSuggestion = -1;
  }

  function pickSuggestion(text) {
    state.q = text;
    $("q").value = text;
    search();
  }

  async function suggest() {
    const typed = $("q").value;
    if (typed.trim().length < 2) { hideSuggestions(); return; }
    const seq = ++suggestSeq;
    const query = params({ q: typed });
    for (const name of ["radius_km", "category", "price_min", "price_max", "sort", "fuzzy"]) query.delete(name);
    query.set("q", typed);
    query.set("limit", "8");
    let body;
    try {
      body = await api("autocomplete", query);
    } catch (_) {
      return; // suggestions are a nicety: a failed one must not disturb the page
    }
    if (seq !== suggestSeq) return;
    const list = $("suggestions");
    list.replaceChildren();
    body.suggestions.forEach((s, i) => {
      const item = el("li",
        { role: "option", id: `suggestion-${i}`, "aria-selected": "false", dataset: { itemId: s.item_id } },
        el("span", { className: "text" }, s.text),
        s.distance_km === null ? "" : el("span", { className: "distance" }, km(s.distance_km)));
      item.addEventListener("mousedown", (event) => { event.preventDefault(); pickSuggestion(s.text); });
      list.append(item);
    });
    list.hidden = body.suggestions.length === 0;
    list.dataset.prefix = typed;
    $("q").setAttribute("aria-expanded", String(!list.hidden));
    activeSuggestion = -1;
  }

  function moveSuggestion(step) {
    const items = [...$("suggestions").children];
    if (!items.length) return;
    activeSuggestion = (activeSuggestion + step + items.length) % items.length;
    items.forEach((item, i) => item.setAttribute("aria-selected", String(i === activeSuggestion)));
    $("q").setAttribute("aria-activedescendant", items[activeSuggestion].id);
  }

  // -- wiring ----------------------------------------------------------------------------------------------
  function readPlace() {
    const option = $("place").selectedOptions[0];
    if (option && option.dataset.lat !== undefined) {
      state.lat = Number(option.dataset.lat);
      state.lon = Number(option.dataset.lon);
      state.country = option.dataset.country;
    } else if (option && option.value === "custom") {
      state.lat = number($("lat").value);
      state.lon = number($("lon").value);
      state.country = "";
    } else {
      state.lat = null;
      state.lon = null;
      state.country = "";
    }
    if (state.lat === null) {
      state.radius_km = null;
      if (state.sort === "distance") state.sort = "relevance";
    }
    fillForm();
  }

  function wire() {
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const items = [...$("suggestions").children];
      if (activeSuggestion >= 0 && items[activeSuggestion]) {
        pickSuggestion(items[activeSuggestion].querySelector(".text").textContent);
        return;
      }
      state.q = $("q").value;
      search();
    });
    $("q").addEventListener("input", () => {
      clearTimeout(suggestTimer);
      suggestTimer = setTimeout(suggest, SUGGEST_DELAY_MS);
    });
    $("q").addEventListener("keydown", (event) => {
      if (event.key === "ArrowDown") { event.preventDefault(); moveSuggestion(1); }
      else if (event.key === "ArrowUp") { event.preventDefault(); moveSuggestion(-1); }
      else if (event.key === "Escape") hideSuggestions();
    });
    $("q").addEventListener("blur", () => setTimeout(hideSuggestions, 150));
    $("did-you-mean-link").addEventListener("click", (event) => {
      event.preventDefault();
      pickSuggestion($("did-you-mean-link").textContent);
    });
    $("language").addEventListener("change", () => { state.language = $("language").value; search(); });
    $("sort").addEventListener("change", () => { state.sort = $("sort").value; search(); });
    $("place").addEventListener("change", () => {
      if ($("place").value === "custom" && $("lat").value === "") return; // wait for coordinates
      readPlace();
      search();
    });
    for (const id of ["lat", "lon"]) {
      $(id).addEventListener("change", () => {
        $("place").value = "custom";
        if ($("lat").value !== "" && $("lon").value !== "") { readPlace(); search(); }
      });
    }
    $("locate").addEventListener("click", () => {
      if (!navigator.geolocation) {
        showError(new ApiError(0, { error: { message: "this browser cannot tell its location" } }));
        return;
      }
      navigator.geolocation.getCurrentPosition((position) => {
        $("lat").value = position.coords.latitude.toFixed(5);
        $("lon").value = position.coords.longitude.toFixed(5);
        $("place").value = "custom";
        readPlace();
        search();
      }, (problem) => showError(new ApiError(0, { error: { message: `location unavailable: ${problem.message}` } })),
      { timeout: 10000, maximumAge: 600000 });
    });
    $("more").addEventListener("click", () => { if (nextCursor) search({ append: true }); });
  }

  function start() {
    readUrl();
    fillForm();
    wire();
    search();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
