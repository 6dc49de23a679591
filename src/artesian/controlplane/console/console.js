// The web console: a page over the control plane's own REST API, with the caller's token.
// Everything shown is built with textContent, never parsed as HTML: names, descriptions and
// error messages are other people's text. The token lives in this page's memory only, never
// in storage another page of the origin could read: a reload asks for it again.
"use strict";

const REFRESH_MS = 3000;
const USAGE_EVERY = 10; // refreshes: usage sums change by the minute
let token = null;
let selected = null; // the cluster whose detail is shown
let timer = null;
let refreshes = 0;
let session = 0; // bumped at each sign-in and sign-out: answers to an older one are dropped
let chain = Promise.resolve(); // refreshes run one after another, never two at once
const armed = new Map(); // a delete button's id -> when its second click stops counting
const ARMED_MS = 5000;

const $ = (id) => document.getElementById(id);
const path = (...parts) => parts.map(encodeURIComponent).join("/");

class Stale extends Error {}

async function api(method, path, body) {
  const mine = session;
  const response = await fetch(path, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (mine !== session) {
    throw new Stale(); // signed out (or in again) meanwhile: this answer is nobody's now
  }
  if (!response.ok) {
    let detail = answer.detail ?? response.statusText;
    if (Array.isArray(detail)) {
      detail = detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    }
    const error = new Error(`${method} ${path}: ${response.status} ${detail}`);
    error.status = response.status;
    throw error;
  }
  return answer;
}

function say(text) {
  $("status").textContent = text;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  row.appendChild(td);
  return td;
}

function button(td, label, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", (event) => {
    event.stopPropagation();
    run(action);
  });
  td.appendChild(b);
}

// A button that asks once more before it acts: deleting takes two clicks within 5 s. The
// armed state is kept by id, so a table redrawn meanwhile keeps it.
function confirmButton(td, id, label, action) {
  const again = `Really ${label.toLowerCase()}?`;
  const live = () => (armed.get(id) ?? 0) > Date.now();
  button(td, live() ? again : label, async () => {
    const b = td.querySelector("button");
    if (!live()) {
      armed.set(id, Date.now() + ARMED_MS);
      b.textContent = again;
      setTimeout(() => {
        if (!live()) {
          b.textContent = label;
        }
      }, ARMED_MS + 50);
      return;
    }
    armed.delete(id);
    b.disabled = true;
    await action();
  });
}

// The one way to refresh: queued behind any refresh under way.
function refreshNow() {
  const next = chain.then(refresh, refresh);
  chain = next.catch(() => {});
  return next;
}

function fill(tableId, items, render) {
  const body = $(tableId).querySelector("tbody");
  body.replaceChildren(...items.map((item) => {
    const row = document.createElement("tr");
    render(row, item);
    return row;
  }));
}

// Runs an action and shows its error, if any; a token refused signs out.
async function run(action) {
  try {
    await action();
  } catch (error) {
    if (error instanceof Stale) {
      return;
    }
    if (error.status === 401) {
      signOut();
    }
    say(error.message);
  }
}

async function signIn(candidate) {
  session += 1;
  token = candidate;
  try {
    const me = await api("GET", "/v1/whoami");
    $("token").value = "";
    $("who").textContent = me.admin ? "signed in as the admin" : `signed in as tenant ${me.tenant}`;
    document.body.classList.toggle("is-admin", me.admin);
    say("");
    refreshes = 0;
    await refreshNow();
  } catch (error) {
    if (!(error instanceof Stale)) {
      signOut();
    }
    throw error;
  }
  $("sign-in").hidden = true;
  $("signed-in").hidden = false;
  $("sign-out").hidden = false;
  schedule();
}

// One refresh after another, never two at once.
function schedule() {
  clearTimeout(timer);
  timer = setTimeout(async () => {
    await run(refreshNow);
    if (token !== null) {
      schedule();
    }
  }, REFRESH_MS);
}

function signOut() {
  session += 1;
  clearTimeout(timer);
  armed.clear();
  token = null;
  selected = null;
  $("token").value = "";
  $("who").textContent = "not signed in";
  $("sign-in").hidden = false;
  $("signed-in").hidden = true;
  $("sign-out").hidden = true;
  $("cluster-detail").hidden = true;
  for (const id of ["new-secret", "new-token"]) {
    $(id).textContent = "";
    $(id).hidden = true;
  }
  for (const body of document.querySelectorAll("tbody")) {
    body.replaceChildren();
  }
  document.body.classList.remove("is-admin");
}

async function refresh() {
  const { clusters } = await api("GET", "/v1/clusters");
  fill("clusters", clusters, (row, c) => {
    const status = c.status || {};
    row.dataset.id = c.id;
    row.classList.toggle("selected", c.id === selected);
    cell(row, c.id);
    cell(row, c.spec.name);
    cell(row, c.spec.tenant || "-").classList.add("admin");
    cell(row, brokersOf(c.spec));
    cell(row, c.status
      ? `${status.phase} (gen ${status.observed_generation}/${c.spec.generation})`
      : `no report yet (gen ${c.spec.generation})`);
    cell(row, status.bootstrap || "-");
    const actions = cell(row, "");
    if (!c.spec.deleted) {
      confirmButton(actions, `cluster:${c.id}`, "Delete", async () => {
        await api("DELETE", `/v1/clusters/${path(c.id)}`);
        say(`cluster ${c.id} is being deleted`);
        await refreshNow();
      });
    }
    row.addEventListener("click", () => run(() => select(c.id)));
  });
  if (selected !== null && !clusters.some((c) => c.id === selected)) {
    selected = null;
    $("cluster-detail").hidden = true;
  }
  if (refreshes++ % USAGE_EVERY === 0) {
    await refreshUsage();
  }
  if (document.body.classList.contains("is-admin")) {
    const { tenants } = await api("GET", "/v1/tenants");
    fill("tenants", tenants, (row, t) => {
      cell(row, t.id);
      cell(row, t.name);
      cell(row, t.max_clusters);
      cell(row, t.max_brokers);
    });
  }
}

async function refreshUsage() {
  const since = Date.now() - 23 * 3600 * 1000; // the ledger's hours: this one and 23 before
  let hours;
  try {
    ({ hours } = await api("GET", `/v1/usage?start_ms=${since}`));
  } catch (error) {
    if (error.status === 503) {
      return; // the ledger is still being read: next time
    }
    throw error;
  }
  const per = new Map();
  for (const h of hours) {
    const total = per.get(h.cluster) || { bytes_in: 0, bytes_out: 0, broker: 0, storage: 0 };
    total.bytes_in += h.bytes_in;
    total.bytes_out += h.bytes_out;
    total.broker += h.broker_seconds;
    total.storage += h.storage_byte_seconds;
    per.set(h.cluster, total);
  }
  fill("usage", [...per.entries()], (row, [cluster, t]) => {
    cell(row, cluster);
    cell(row, t.bytes_in);
    cell(row, t.bytes_out);
    cell(row, (t.broker / 3600).toFixed(3));
    cell(row, (t.storage / 3600 / 2 ** 30).toFixed(6));
  });
}

function brokersOf(spec) {
  if (spec.deleted) return "deleting";
  if (spec.host) return `logical, on ${spec.host}`;
  return spec.shared ? `${spec.brokers}, shared` : spec.brokers;
}

async function select(clusterId) {
  const c = await api("GET", `/v1/clusters/${path(clusterId)}`);
  selected = clusterId;
  $("detail-id").textContent = `${c.spec.name} (${c.id})`;
  $("resize-brokers").value = c.spec.brokers;
  $("resize").hidden = Boolean(c.spec.host); // a logical cluster has no brokers to resize
  $("new-secret").hidden = true;
  $("cluster-detail").hidden = false;
  for (const row of $("clusters").querySelectorAll("tbody tr")) {
    row.classList.toggle("selected", row.dataset.id === clusterId);
  }
  await refreshKeys();
}

async function refreshKeys() {
  const cluster = selected;
  const { api_keys: keys } = await api("GET", `/v1/clusters/${path(cluster)}/api-keys`);
  fill("api-keys", keys, (row, k) => {
    cell(row, k.key);
    cell(row, k.resource_prefix || "(all)");
    cell(row, k.description);
    confirmButton(cell(row, ""), `key:${cluster}:${k.key}`, "Delete", async () => {
      await api("DELETE", `/v1/clusters/${path(cluster, "api-keys", k.key)}`);
      say(`API key ${k.key} deleted`);
      await refreshKeys();
    });
  });
}

// A number field's value; an empty one is refused here rather than sent as 0.
function whole(id) {
  const text = $(id).value.trim();
  if (text === "") {
    throw new Error(`${$(id).closest("label")?.textContent.trim() || id}: give a number`);
  }
  return Number(text);
}

function onSubmit(formId, action) {
  $(formId).addEventListener("submit", (event) => {
    event.preventDefault();
    run(action);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  onSubmit("sign-in-form", () => signIn($("token").value.trim()));
  $("sign-out").addEventListener("click", signOut);
  onSubmit("create-cluster", async () => {
    const body = { name: $("cluster-name").value.trim() };
    if ($("cluster-logical").checked) {
      body.logical = true;
    } else {
      body.brokers = whole("cluster-brokers");
    }
    const cellName = $("cluster-cell").value.trim();
    if (cellName) {
      body.cell = cellName; // else the API's default
    }
    const tenant = $("cluster-tenant").value.trim();
    if (tenant && document.body.classList.contains("is-admin")) {
      body.tenant = tenant;
    }
    const c = await api("POST", "/v1/clusters", body);
    say(`created cluster ${c.id}`);
    $("cluster-name").value = "";
    await refreshNow();
  });
  onSubmit("resize", async () => {
    const c = await api("PATCH", `/v1/clusters/${path(selected)}`, {
      brokers: whole("resize-brokers"),
    });
    say(`cluster ${c.id} is at generation ${c.spec.generation}`);
    await refreshNow();
  });
  onSubmit("create-key", async () => {
    const prefix = $("key-prefix").value.trim();
    const k = await api("POST", `/v1/clusters/${path(selected)}/api-keys`, {
      resource_prefix: prefix || null,
      description: $("key-description").value,
    });
    $("new-secret").textContent =
      `API key ${k.key}\nsecret ${k.secret}\nSave the secret now: it cannot be shown again.`;
    $("new-secret").hidden = false;
    await refreshKeys();
  });
  onSubmit("create-tenant", async () => {
    const t = await api("POST", "/v1/tenants", {
      name: $("tenant-name").value.trim(),
      max_clusters: whole("tenant-clusters"),
      max_brokers: whole("tenant-brokers"),
    });
    $("new-token").textContent =
      `tenant ${t.id}\ntoken ${t.token}\nSave the token now: it cannot be shown again.`;
    $("new-token").hidden = false;
    await refreshNow();
  });
});
