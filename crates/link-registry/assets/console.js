// The console's one script: follows a pending link until it connects, and builds the network picker
// from the link's inventory. No framework, no build step; data comes from the registry's own API.
"use strict";

const csrf = () => document.body.dataset.csrf || "";

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k === "className") e.className = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

async function api(path, options = {}) {
  const r = await fetch("/api" + path, {
    credentials: "same-origin",
    ...options,
    headers: { "x-csrf-token": csrf(), ...(options.headers || {}) },
  });
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) throw new Error((body && body.message) || `HTTP ${r.status}`);
  return body;
}

// Calls `refresh` whenever the registry stores something (server-sent events), and every few seconds
// while the stream is unavailable. `catchUp`: also when the stream (re)opens, for what happened before.
function follow(refresh, catchUp) {
  let timer = null;
  const poll = () => { if (!timer) timer = setInterval(refresh, 3000); };
  if (window.EventSource) {
    const es = new EventSource("/console/changes");
    es.addEventListener("change", refresh);
    es.onerror = () => { poll(); };
    es.onopen = () => {
      if (timer) { clearInterval(timer); timer = null; }
      if (catchUp) refresh();
    };
  } else {
    poll();
  }
}

// ---- a pending link ----

function initRequest(box) {
  const id = box.dataset.externalId;
  const status = document.getElementById("request-status");
  const linkBox = document.getElementById("connected-link");
  let done = box.dataset.status !== "pending";
  const refresh = async () => {
    if (done) return;
    let r;
    try { r = await api(`/link-requests/${encodeURIComponent(id)}`); } catch (_) { return; }
    if (r.status === "pending") return;
    done = true;
    box.dataset.status = r.status;
    status.className = "state " + r.status;
    if (r.status === "expired") {
      status.textContent = "This link request expired before a stack used it. Start a new one.";
      return;
    }
    let account = "";
    try {
      const link = await api(`/links/${encodeURIComponent(r.linkId)}`);
      account = ` Account ${link.accountId} (${link.partition}, stack in ${link.region}) is linked.`;
    } catch (_) { /* the link page will say */ }
    status.textContent = "Connected." + account;
    linkBox.replaceChildren(el("a", { className: "button", href: `/links/${encodeURIComponent(r.linkId)}`, text: "Pick a network" }));
  };
  if (!done) follow(refresh, true);
}

// ---- the accounts list ----

function initAccounts() {
  let last = 0;
  follow(() => {
    // New links appear without a manual reload (at most one reload every 2 s).
    const now = Date.now();
    if (now - last > 2000 && !document.activeElement.closest("form")) { last = now; location.reload(); }
  }, false);
}

// ---- the network picker ----

function vpcLabel(v, account) {
  const parts = [v.name || "(no name)", v.vpcId, v.cidrBlock || "no IPv4"];
  if (v.isDefault) parts.push("default");
  if (v.ownerId && v.ownerId !== account) parts.push(`shared by ${v.ownerId}`);
  return parts.join(" · ");
}

function unusable(s, minFree) {
  if (!s.cidrBlock) return "IPv6-only";
  if (s.availableIpAddressCount !== null && s.availableIpAddressCount < minFree)
    return `${s.availableIpAddressCount} free addresses (at least ${minFree} needed)`;
  return null;
}

function subnetLabel(s, why) {
  const parts = [s.name || "(no name)", s.subnetId, `${s.availabilityZone || "?"} (${s.availabilityZoneId || "?"})`,
    s.cidrBlock || "IPv6 only", `${s.availableIpAddressCount ?? "?"} free`];
  if (s.mapPublicIpOnLaunch) parts.push("public IP on launch");
  let label = parts.join(" · ");
  if (why) label += ` — cannot be used: ${why}`;
  return label;
}

function renderRouteTables(vpc) {
  const box = document.getElementById("route-tables");
  if (!vpc) { box.replaceChildren(el("p", { className: "muted", text: "Pick a VPC to see its route tables." })); return; }
  if (!vpc.routeTables.length) { box.replaceChildren(el("p", { className: "muted", text: "This VPC has no route tables." })); return; }
  const tables = vpc.routeTables.map((t) => {
    const routes = el("table", { className: "list" },
      el("thead", {}, el("tr", {}, el("th", { text: "Destination" }), el("th", { text: "Target" }), el("th", { text: "State" }))),
      el("tbody", {}, ...t.routes.map((r) => el("tr", {}, el("td", { text: r.destination || "" }), el("td", { text: r.target || "" }), el("td", { text: r.state || "" })))));
    const title = `${t.name || t.routeTableId} (${t.routeTableId})${t.main ? " · main" : ""}` +
      (t.subnetIds.length ? ` · subnets ${t.subnetIds.join(", ")}` : "");
    return el("div", { className: "route-table", "data-route-table-id": t.routeTableId }, el("h3", { text: title }), routes);
  });
  box.replaceChildren(...tables);
}

async function renderHistory(linkId) {
  const box = document.getElementById("history");
  box.replaceChildren(el("p", { className: "muted", text: "Loading…" }));
  try {
    const page = await api(`/links/${encodeURIComponent(linkId)}/events?limit=100`);
    const rows = page.events.map((e) => el("tr", {},
      el("td", { text: e.type }), el("td", { text: e.timestamp }), el("td", { text: e.receivedAt }),
      el("td", { text: e.part || "" }), el("td", {}, el("code", { text: e.webhookId }))));
    box.replaceChildren(el("table", { className: "list", id: "history-table" },
      el("thead", {}, el("tr", {}, ...["Event", "Built", "Received", "Part", "Webhook id"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows)));
  } catch (err) {
    box.replaceChildren(el("p", { className: "error", text: err.message }));
  }
}

// `keep`: the region and VPC on screen, and the subnets chosen, kept when the picker is built again.
async function initPicker(box, keep) {
  const linkId = box.dataset.linkId;
  let link;
  try { link = await api(`/links/${encodeURIComponent(linkId)}`); } catch (err) {
    box.replaceChildren(el("h2", { text: "Network" }), el("p", { className: "error", text: err.message }));
    return;
  }
  const regions = link.inventory || [];
  const minFree = link.minFreeIps;
  const saved = link.selection;
  const regionSel = el("select", { id: "region", name: "region" });
  const vpcSel = el("select", { id: "vpc", name: "vpc" });
  const subnetSel = el("select", { id: "subnets", name: "subnets", multiple: true, size: 12 });
  const missing = el("p", { id: "missing-azs", className: "muted" });
  const count = el("p", { id: "subnet-count", className: "muted" });
  const save = el("button", { id: "save", type: "button", text: "Save" });
  const result = el("p", { id: "save-status", role: "status" });
  const current = el("p", { id: "current-selection", className: "muted" });
  const linked = link.state === "linked";

  const region = () => regions.find((r) => r.region === regionSel.value);
  const vpc = () => { const r = region(); return r && r.vpcs.find((v) => v.vpcId === vpcSel.value); };

  const showSaved = (s) => {
    current.textContent = s ? `Saved: ${s.vpcId} in ${s.region}, subnets ${s.subnetIds.join(", ")}` : "Nothing saved yet.";
  };

  const fillSubnets = (selected = []) => {
    const v = vpc();
    const frag = document.createDocumentFragment();
    let usable = 0;
    if (v) {
      const ordered = [...v.subnets].sort((a, b) =>
        (a.availabilityZone || "").localeCompare(b.availabilityZone || "") || a.subnetId.localeCompare(b.subnetId));
      for (const s of ordered) {
        const why = unusable(s, minFree);
        if (!why) usable += 1;
        const o = el("option", { value: s.subnetId, disabled: !!why, className: why ? "unusable" : "", text: subnetLabel(s, why) });
        if (!why && selected.includes(s.subnetId)) o.selected = true;
        frag.append(o);
      }
      const zones = new Set(region().vpcs.flatMap((x) => x.subnets.map((s) => s.availabilityZone)).filter(Boolean));
      const here = new Set(v.subnets.map((s) => s.availabilityZone));
      const none = [...zones].filter((z) => !here.has(z)).sort();
      missing.textContent = none.length ? `No subnet of this VPC in: ${none.join(", ")}` : "This VPC has a subnet in every availability zone the account uses in this region.";
      count.textContent = `${v.subnets.length} subnets, ${usable} can be used (at least ${minFree} free addresses, IPv4).`;
    } else {
      missing.textContent = "";
      count.textContent = "";
    }
    subnetSel.replaceChildren(frag);
    renderRouteTables(v);
  };

  const fillVpcs = (selectedVpc) => {
    const r = region();
    const opts = [el("option", { value: "", text: r && r.vpcs.length ? "Choose a VPC…" : "No VPC in this region" })];
    if (r) for (const v of r.vpcs) opts.push(el("option", { value: v.vpcId, text: vpcLabel(v, link.accountId) }));
    vpcSel.replaceChildren(...opts);
    vpcSel.value = selectedVpc || "";
  };

  for (const r of regions) regionSel.append(el("option", { value: r.region, text: `${r.region} (${r.vpcs.length} VPCs)` }));
  if (keep && regions.some((r) => r.region === keep.region)) {
    regionSel.value = keep.region;
    fillVpcs(keep.vpc);
    fillSubnets(keep.subnets);
  } else if (saved && regions.some((r) => r.region === saved.region)) {
    regionSel.value = saved.region;
    fillVpcs(saved.vpcId);
    fillSubnets(saved.subnetIds);
  } else {
    fillVpcs("");
    fillSubnets();
  }
  showSaved(saved);

  regionSel.addEventListener("change", () => { fillVpcs(""); fillSubnets(); result.textContent = ""; });
  vpcSel.addEventListener("change", () => { fillSubnets(); result.textContent = ""; });
  save.addEventListener("click", async () => {
    const subnetIds = [...subnetSel.selectedOptions].map((o) => o.value);
    result.className = "";
    if (!vpcSel.value || !subnetIds.length) {
      result.className = "error";
      result.textContent = "Choose a VPC and at least one subnet.";
      return;
    }
    save.disabled = true;
    try {
      const body = JSON.stringify({ region: regionSel.value, vpcId: vpcSel.value, subnetIds });
      const r = await api(`/links/${encodeURIComponent(linkId)}/selection`, {
        method: "PUT", body, headers: { "content-type": "application/json" } });
      result.textContent = "Saved.";
      showSaved(r.selection);
    } catch (err) {
      result.className = "error";
      result.textContent = err.message;
    } finally {
      save.disabled = !linked;
    }
  });
  save.disabled = !linked;

  box.replaceChildren(...[
    el("h2", { text: "Network" }),
    el("p", { className: "muted", text: "Choose the VPC and the subnets we should use in this account." }),
    regions.length ? null : el("p", { className: "warn", text: "No inventory has arrived for this link yet." }),
    el("div", { className: "picker" },
      el("label", { for: "region", text: "Region" }), regionSel,
      el("label", { for: "vpc", text: "VPC" }), vpcSel,
      el("label", { for: "subnets", text: "Subnets (one or more)" }), subnetSel),
    count, missing,
    el("div", { className: "actions" }, save, result),
    linked ? null : el("p", { className: "warn", text: "This link is unlinked: its network can no longer be changed." }),
    current].filter(Boolean));

  const history = document.getElementById("history-box");
  if (!history.dataset.follows) {
    history.dataset.follows = "1";
    history.addEventListener("toggle", () => { if (history.open) renderHistory(linkId); });
  }
  box.keep = () => ({ region: regionSel.value, vpc: vpcSel.value,
                      subnets: [...subnetSel.selectedOptions].map((o) => o.value) });
}

// ---- a live link: role checks and refreshes, followed as they happen ----

const when = (t) => (t ? `${t.replace("T", " ").slice(0, 16)} UTC` : "—");

// The role check, the refresh's state and the inventory's source from the API's link.
function renderLive(link) {
  const roles = document.getElementById("roles-check");
  if (roles && link.roleChecks) {
    const checks = link.roleChecks;
    if (!checks.length) {
      roles.replaceChildren(el("span", { className: "muted", text: "not checked yet" }));
    } else if (checks.every((c) => c.assumable)) {
      roles.replaceChildren(el("span", { className: "state linked", text: "roles verified" }), ` at ${when(link.rolesCheckedAt)}`);
    } else {
      roles.replaceChildren(el("ul", { className: "plain" }, ...checks.filter((c) => c.problem).map((c) =>
        el("li", { className: "error", role: "alert", text: `${c.problem} (${when(c.checkedAt)})` }))));
    }
  }
  const status = document.getElementById("refresh-status");
  const r = link.refresh;
  if (status && r) {
    const parts = [];
    if (r.running) parts.push(`running since ${when(r.startedAt)}`);
    else if (r.status) {
      parts.push(`${r.status} at ${when(r.finishedAt)}`);
      if (r.problem) parts.push(": ", el("span", { className: "error", text: r.problem }));
      if (r.summary) parts.push(" · ", el("span", { id: "refresh-changes", text: r.summary }));
    }
    if (r.dueAt) parts.push(el("br"), el("span", { className: "muted", text: `next scheduled ${when(r.dueAt)}` }));
    status.replaceChildren(...parts);
    document.getElementById("refresh-state").dataset.status = r.running ? "running" : (r.status || "");
  }
  const source = document.getElementById("inventory-source");
  if (source && link.inventoryAt) {
    source.textContent = `as of ${when(link.inventoryAt)} · ${link.inventorySource === "refresh" ? "refreshed" : "reported by the stack"}`;
  }
}

// Follows the link: each change stored for it (a role check, a refresh starting or ending, an event) is
// shown without a reload; a new inventory rebuilds the picker, keeping what is chosen on screen.
function followLink(picker) {
  const linkId = picker.dataset.linkId;
  let seen;
  follow(async (ev) => {
    if (ev && ev.data && ev.data !== linkId) return;
    let link;
    try { link = await api(`/links/${encodeURIComponent(linkId)}`); } catch (_) { return; }
    renderLive(link);
    if (seen !== undefined && link.inventoryAt !== seen) await initPicker(picker, picker.keep && picker.keep());
    seen = link.inventoryAt;
  }, true);
}

// ---- refresh (the account's networks, listed by the registry through the link's RemoteRole) ----

function initRefresh(form, picker) {
  const state = document.getElementById("refresh-state");
  const progress = el("span", { id: "refresh-progress", role: "status" });
  form.after(progress);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    progress.className = "muted";
    progress.textContent = " Refreshing: checking the roles, listing the account's networks…";
    try {
      const r = await api(`/links/${encodeURIComponent(picker.dataset.linkId)}/refresh?wait=true`, { method: "POST" });
      progress.className = r.status === "failed" ? "error" : "";
      progress.textContent = r.status === "failed" ? ` Refresh failed: ${r.problem}` : ` Refreshed: ${r.summary}.`;
      state.dataset.status = r.status;
      renderLive(await api(`/links/${encodeURIComponent(picker.dataset.linkId)}`));
      await initPicker(picker, picker.keep ? picker.keep() : undefined);
    } catch (err) {
      progress.className = "error";
      progress.textContent = ` ${err.message}`;
    } finally {
      button.disabled = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const request = document.getElementById("request");
  if (request) initRequest(request);
  const picker = document.getElementById("picker");
  if (picker) initPicker(picker);
  const refresh = document.getElementById("refresh");
  if (picker && refresh) initRefresh(refresh.closest("form"), picker);
  if (picker && document.getElementById("roles-check")) followLink(picker);
  if (document.getElementById("start-link")) initAccounts();
});
