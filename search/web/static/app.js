// vitrina's upload-a-photo page: plain JavaScript, no build step. Talks to the JSON API of the same server.
"use strict";

const PAGE_SIZE = 12;
const BASE_FACETS = ["category", "brand", "price"];
const EXTRA_FACETS = ["color", "colour", "pattern", "material", "size"];
const LABELS = { category: "Category", brand: "Brand", price: "Price" };
const FACET_VALUES_SHOWN = 6;
const SCORE_NAMES = { fused: "match", image: "photo", text: "text", lexical: "words", boost: "boost", rerank: "rerank" };

const $ = (id) => document.getElementById(id);
const els = {
  form: $("search-form"), photo: $("photo"), drop: $("drop-zone"), preview: $("preview"), dropText: $("drop-text"),
  clearPhoto: $("clear-photo"), maxUpload: $("max-upload"), q: $("q"), balance: $("balance"),
  balanceValue: $("balance-value"), category: $("category"), minPrice: $("min-price"), maxPrice: $("max-price"),
  alert: $("alert"), status: $("status"), results: $("results"), facets: $("facets"), active: $("active-filters"),
  heading: $("results-heading"), back: $("back"), prev: $("prev"), next: $("next"), pageLabel: $("page-label"),
  filtersToggle: $("filters-toggle"), sort: $("sort"), inStock: $("in-stock"), sortFilter: $("sort-filter"),
  stockFilter: $("stock-filter"),
};
const IDLE_STATUS = "Drop a photo or type what you are looking for.";

const state = {
  photo: null, previewUrl: null, text: "", offset: 0, similar: null, picked: {}, priceBucket: null,
  facetFields: BASE_FACETS.slice(), maxUpload: 10 * 1024 * 1024, hasMore: false, ran: false, request: 0,
  facets: {}, expanded: new Set(), refused: false, stockField: null,
};

function megabytes(n) {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(n % (1024 * 1024) ? 1 : 0)} MB` : `${Math.round(n / 1024)} KB`;
}

function showAlert(message) {
  els.alert.textContent = message || "";
}

function setStatus(message, refused = false) {
  els.status.textContent = message;
  state.refused = refused;
}

function label(field) {
  return LABELS[field] || field.charAt(0).toUpperCase() + field.slice(1);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// ---- the photo -------------------------------------------------------------------------------
function setPhoto(file) {
  showAlert("");
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.photo = null;
  state.previewUrl = null;
  if (file && file.size > state.maxUpload) {
    showAlert(`"${file.name}" is ${megabytes(file.size)}; photos can be at most ${megabytes(state.maxUpload)}.`);
    setStatus(`Photo not used: over the ${megabytes(state.maxUpload)} limit.`);
    file = null;
  } else if (state.refused) {
    setStatus(IDLE_STATUS); // the refused search is over: don't keep saying so
  }
  if (file) {
    state.photo = file;
    state.previewUrl = URL.createObjectURL(file);
    els.preview.src = state.previewUrl;
    els.preview.alt = `Your photo: ${file.name}`;
  } else {
    els.preview.removeAttribute("src");
    els.photo.value = "";
  }
  els.preview.hidden = !file;
  els.dropText.hidden = Boolean(file);
  els.dropText.replaceChildren(el("strong", { text: "Drop a photo here" }), el("br"), "or ", el("span", { class: "link-like", text: "choose one" }));
  els.clearPhoto.hidden = !file;
  els.balance.disabled = !file;
  els.drop.classList.toggle("has-photo", Boolean(file));
}

els.photo.addEventListener("change", () => {
  setPhoto(els.photo.files[0] || null);
  if (state.photo) newSearch();
});
els.preview.addEventListener("error", () => {
  if (!els.preview.getAttribute("src")) return;
  els.preview.hidden = true;
  els.dropText.hidden = false;
  els.dropText.textContent = state.photo ? `${state.photo.name} (no preview)` : "";
});
els.clearPhoto.addEventListener("click", () => {
  setPhoto(null);
  els.photo.focus();
});
for (const type of ["dragenter", "dragover"]) {
  els.drop.addEventListener(type, (event) => {
    event.preventDefault();
    els.drop.classList.add("dragging");
  });
}
for (const type of ["dragleave", "drop"]) {
  els.drop.addEventListener(type, () => els.drop.classList.remove("dragging"));
}
els.drop.addEventListener("drop", (event) => {
  event.preventDefault();
  const file = event.dataTransfer.files[0];
  if (!file) return;
  setPhoto(file);
  if (state.photo) newSearch();
});

els.balance.addEventListener("input", () => {
  els.balanceValue.textContent = `${els.balance.value}% photo`;
});
els.balance.addEventListener("change", () => {
  if (state.ran && state.photo && !state.similar) newSearch();
});

// ---- filters -----------------------------------------------------------------------------------
function buildWhere() {
  const where = {};
  if (els.category.value) where.category = els.category.value;
  for (const [field, value] of Object.entries(state.picked)) where[field] = value;
  const price = {};
  if (els.minPrice.value !== "") price.gte = Number(els.minPrice.value);
  if (els.maxPrice.value !== "") price.lte = Number(els.maxPrice.value);
  if (state.priceBucket) {
    if (state.priceBucket.min !== null) price.gte = Math.max(price.gte ?? -Infinity, state.priceBucket.min);
    if (state.priceBucket.max !== null) price.lt = state.priceBucket.max;
  }
  if (Object.keys(price).length) where.price = price;
  return where;
}

function renderActiveFilters() {
  els.active.replaceChildren();
  const chips = [];
  if (els.category.value) chips.push([`Category: ${els.category.value}`, () => { els.category.value = ""; }]);
  for (const field of Object.keys(state.picked)) {
    chips.push([`${label(field)}: ${state.picked[field]}`, () => { delete state.picked[field]; }]);
  }
  if (state.priceBucket) chips.push([`Price: ${state.priceBucket.label}`, () => { state.priceBucket = null; }]);
  for (const [text, remove] of chips) {
    const button = el("button", { type: "button", class: "chip", "aria-label": `Remove filter ${text}` }, text, el("span", { "aria-hidden": "true", text: " ✕" }));
    button.addEventListener("click", () => {
      remove();
      runSearch(0, els.heading);
    });
    els.active.append(button);
  }
}

for (const input of [els.category, els.minPrice, els.maxPrice, els.sort, els.inStock]) {
  input.addEventListener("change", () => {
    renderFiltersToggle();
    if (state.ran) runSearch(0);
  });
}

// On a phone the filters and facet counts wait behind the "Filters" button (CSS hides them while closed).
function activeFilterCount() {
  return Object.keys(buildWhere()).length + (els.inStock.checked ? 1 : 0);
}

function renderFiltersToggle() {
  const count = activeFilterCount();
  els.filtersToggle.textContent = count ? `Filters (${count})` : "Filters";
}

els.filtersToggle.addEventListener("click", () => {
  const open = !document.body.classList.contains("filters-open");
  document.body.classList.toggle("filters-open", open);
  els.filtersToggle.setAttribute("aria-expanded", String(open));
});

// ---- searching -------------------------------------------------------------------------------
els.form.addEventListener("submit", (event) => {
  event.preventDefault();
  newSearch();
});

function newSearch() {
  state.similar = null;
  runSearch(0);
}

function describe() {
  if (state.similar) return `more like “${state.similar.title}”`;
  const parts = [];
  if (state.photo) parts.push("your photo");
  if (els.q.value.trim()) parts.push(`“${els.q.value.trim()}”`);
  return parts.join(" + ");
}

function request() {
  const where = buildWhere();
  const common = { k: PAGE_SIZE, offset: state.offset, facets: state.facetFields };
  const business = {};  // sort and in-stock (search.business)
  if (els.sort.value) business.sort = els.sort.value;
  if (els.inStock.checked) business.in_stock = true;
  if (state.similar) {
    const params = new URLSearchParams({ k: common.k, offset: common.offset, facets: common.facets.join(",") });
    if (Object.keys(where).length) params.set("where", JSON.stringify(where));
    if (business.sort) params.set("sort", business.sort);
    if (business.in_stock) params.set("in_stock", "true");
    return [`products/${encodeURIComponent(state.similar.id)}/similar?${params}`, {}];
  }
  const text = els.q.value.trim();
  if (state.photo) {
    const form = new FormData();
    form.append("photo", state.photo, state.photo.name);
    if (text) form.append("text", text);
    form.append("image_weight", String(Number(els.balance.value) / 100));
    form.append("k", common.k);
    form.append("offset", common.offset);
    form.append("facets", common.facets.join(","));
    if (Object.keys(where).length) form.append("where", JSON.stringify(where));
    for (const [key, value] of Object.entries(business)) form.append(key, String(value));
    return ["search/image", { method: "POST", body: form }];
  }
  if (text) {
    const body = { text, ...common, ...business };
    if (Object.keys(where).length) body.where = where;
    return ["search", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) }];
  }
  return [null, null];
}

async function runSearch(offset, focusAfter) {
  state.offset = offset;
  const [url, init] = request();
  if (!url) {
    showAlert("Choose a photo or type what you are looking for, then search.");
    setStatus(IDLE_STATUS);
    els.q.focus();
    return;
  }
  const ticket = ++state.request;
  showAlert("");
  setStatus("Searching…");
  els.results.setAttribute("aria-busy", "true");
  let response, data;
  try {
    response = await fetch(url, init);
    data = await response.json().catch(() => ({}));
  } catch (error) {
    data = { detail: "The search server could not be reached. Is it still running?" };
  }
  if (ticket !== state.request) return; // a newer search has started
  els.results.removeAttribute("aria-busy");
  if (!response || !response.ok) {
    const status = response ? response.status : 0;
    const why = data && typeof data.detail === "string" ? data.detail : `the server answered ${status || "nothing"}`;
    const photoRefused = url === "search/image" && [400, 413, 415].includes(status);
    if (photoRefused) setPhoto(null); // unusable: let the next search go without it
    showAlert(photoRefused ? `Photo refused: ${why}` : `The search failed: ${why}`);
    setStatus(photoRefused ? "No results: the photo was refused." : "No results: the search was refused.", true);
    els.results.replaceChildren();
    els.facets.replaceChildren();
    els.back.hidden = !state.similar;
    renderPager(0);
    return;
  }
  state.ran = true;
  state.hasMore = data.has_more;
  renderResults(data.hits, data.query_id);
  state.facets = data.facets || {};
  renderFacets();
  renderActiveFilters();
  renderPager(data.hits.length);
  els.back.hidden = !state.similar;
  const first = state.offset + 1;
  setStatus(data.hits.length
    ? `Results ${first}–${state.offset + data.hits.length} for ${describe()}${data.has_more ? "" : " (all shown)"}.`
    : `Nothing found for ${describe()} with these filters.`);
  renderFiltersToggle();
  if (focusAfter) (focusAfter === true ? els.heading : focusAfter).focus();
}

// ---- rendering ---------------------------------------------------------------------------------
function price(value) {
  return typeof value === "number" ? value.toFixed(2) : "";
}

function score(value) {
  return typeof value === "number" ? value.toFixed(3) : "–";
}

// With the server's search log on (vitrina serve --log) an answer carries query_id: the first click on a
// result card reports {query_id, product_id, kind: "click", position} to POST /events. Without it, nothing is sent.
function reportClick(queryId, productId, position) {
  try {
    fetch("events", {
      method: "POST", keepalive: true, headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query_id: queryId, product_id: productId, kind: "click", position }),
    }).catch(() => {});
  } catch (error) {
    // reporting is best effort: never in the shopper's way
  }
}

function renderResults(hits, queryId) {
  els.results.replaceChildren();
  for (const hit of hits) {
    const product = hit.product;
    const id = `title-${hit.rank}`;
    const parts = Object.entries(hit.scores || {}).filter(([, v]) => typeof v === "number")
      .map(([name, v]) => `${SCORE_NAMES[name] || name} ${score(v)}`).join(" · ");
    const more = el("button", { type: "button", class: "more", "aria-describedby": id }, "More like this");
    more.addEventListener("click", () => {
      state.similar = { id: product.id, title: product.title || product.id };
      state.picked = {};
      state.priceBucket = null;
      runSearch(0, true);
    });
    const card = el("li", { class: "card", "data-product-id": product.id, "data-category": product.category || "", "data-brand": product.brand || "" },
      el("article", { "aria-labelledby": id },
        el("div", { class: "thumb" }, hit.image ? el("img", { src: hit.image, alt: product.title || product.id, loading: "lazy", width: "240", height: "240" }) : el("span", { class: "no-image", text: "no photo" })),
        el("h3", { id, class: "title", text: product.title || product.id }),
        el("p", { class: "meta" }, el("span", { class: "price", text: price(product.price) }), " ", el("span", { class: "brand", text: product.brand || "" })),
        el("p", { class: "score", title: parts }, el("span", { class: "rank", text: `#${hit.rank}` }), " ", el("span", { class: "score-parts", text: parts })),
        more));
    if (queryId) {
      let reported = false;
      card.addEventListener("click", () => {
        if (reported) return;
        reported = true;
        reportClick(queryId, product.id, hit.rank);
      });
    }
    els.results.append(card);
  }
}

function renderFacets() {
  els.facets.replaceChildren();
  for (const field of state.facetFields) {
    const values = state.facets[field] || [];
    if (!values.length) continue;
    const headingId = `facet-${field}`;
    const list = el("ul", { class: "facet-values", id: `facet-values-${field}` });
    const open = state.expanded.has(field) || values.length <= FACET_VALUES_SHOWN + 1;
    for (const item of open ? values : values.slice(0, FACET_VALUES_SHOWN)) {
      const text = String(item.value);
      const pressed = field === "price"
        ? Boolean(state.priceBucket && state.priceBucket.label === text)
        : field === "category" ? els.category.value === text : state.picked[field] === item.value;
      const button = el("button", { type: "button", class: "facet", "aria-pressed": String(pressed), "data-field": field, "data-value": text },
        el("span", { class: "facet-name", text }), el("span", { class: "count", text: String(item.count), "aria-label": `${item.count} results` }));
      button.addEventListener("click", () => pickFacet(field, item, pressed));
      list.append(el("li", {}, button));
    }
    let toggle = null;
    if (values.length > FACET_VALUES_SHOWN + 1) {
      toggle = el("button", { type: "button", class: "facet-toggle", "aria-expanded": String(open), "aria-controls": list.id },
        open ? "Show fewer" : `Show all ${values.length}`);
      toggle.addEventListener("click", () => {
        if (open) state.expanded.delete(field);
        else state.expanded.add(field);
        renderFacets();
        document.querySelector(`#facet-${field} ~ .facet-toggle`).focus();
      });
    }
    els.facets.append(el("section", { class: "facet-group", "aria-labelledby": headingId },
      el("h3", { id: headingId, text: label(field) }), list, toggle));
  }
  if (!els.facets.children.length) els.facets.append(el("p", { class: "hint", text: "No counts for these results." }));
}

function pickFacet(field, item, pressed) {
  if (field === "price") {
    state.priceBucket = pressed ? null : { label: String(item.value), min: item.min, max: item.max };
  } else if (field === "category") {
    if (![...els.category.options].some((o) => o.value === String(item.value))) {
      els.category.append(el("option", { value: String(item.value), text: String(item.value) }));
    }
    els.category.value = pressed ? "" : String(item.value);
  } else if (pressed) {
    delete state.picked[field];
  } else {
    state.picked[field] = item.value;
  }
  runSearch(0, els.heading);
}

function renderPager(count) {
  const page = Math.floor(state.offset / PAGE_SIZE) + 1;
  els.prev.disabled = state.offset === 0;
  els.next.disabled = !state.hasMore;
  els.pageLabel.textContent = count ? `Page ${page}` : "";
  els.prev.parentElement.hidden = !count && state.offset === 0;
}

els.prev.addEventListener("click", () => runSearch(Math.max(0, state.offset - PAGE_SIZE), true));
els.next.addEventListener("click", () => runSearch(state.offset + PAGE_SIZE, true));
els.back.addEventListener("click", () => {
  state.similar = null;
  if (state.photo || els.q.value.trim()) runSearch(0, true);
  else {
    els.back.hidden = true;
    els.results.replaceChildren();
    setStatus(IDLE_STATUS);
  }
});

// ---- start ---------------------------------------------------------------------------------------
async function start() {
  try {
    const response = await fetch("stats");
    if (!response.ok) return;
    const stats = await response.json();
    state.maxUpload = stats.limits.max_upload_bytes;
    els.maxUpload.textContent = megabytes(state.maxUpload);
    const extra = EXTRA_FACETS.filter((f) => (stats.facet_fields || []).includes(f)).slice(0, 2);
    state.facetFields = BASE_FACETS.concat(extra);
    for (const item of stats.catalog.category || []) {
      els.category.append(el("option", { value: item.value, text: `${item.value} (${item.count})` }));
    }
    for (const field of stats.sort_fields || []) {
      const name = label(field);
      els.sort.append(el("option", { value: field, text: `${name}: low to high` }),
        el("option", { value: `-${field}`, text: `${name}: high to low` }));
    }
    els.sortFilter.hidden = !(stats.sort_fields || []).length;
    state.stockField = stats.stock_field || null;
    els.stockFilter.hidden = !state.stockField;
    if (stats.catalog.price && stats.catalog.price.max !== null) {
      els.maxPrice.placeholder = `up to ${Math.ceil(stats.catalog.price.max)}`;
      els.minPrice.placeholder = `from ${Math.floor(stats.catalog.price.min)}`;
    }
  } catch (error) {
    showAlert("Could not load the catalog summary; searching still works.");
  }
  document.body.dataset.ready = "true";
}

start();
