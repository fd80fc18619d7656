// The portal's page: sign in, my desktops, create with live stages,
// destroy, .rdp download, the desktop in the tab; for administrators every
// session, the pools, the cluster's nodes and the audit trail. No framework,
// no build step.

const $ = (id) => document.getElementById(id);
let me = null; // {user, admin, csrf, templates, orgs, administers}
let following = null; // the EventSource of the create being watched

// --- the API -------------------------------------------------------------

// `background`: the page's own periodic refresh, which the server does not
// count as the user's activity (an open tab alone does not keep them signed in).
async function api(method, path, body, background = false) {
  const headers = {};
  if (background) headers["X-Page-Refresh"] = "1";
  if (method !== "GET") headers["X-CSRF-Token"] = me ? me.csrf : "";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = {};
  try { data = text ? JSON.parse(text) : {}; } catch { data = { error: text }; }
  if (response.status === 401 && path !== "/web/login") {
    showSignIn("You were signed out. Sign in again.");
  }
  if (!response.ok) {
    const error = new Error(data.error || `${response.status} ${response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function notice(text) {
  $("notice").textContent = text || "";
  $("notice").hidden = !text;
}

// --- signing in and out --------------------------------------------------

function showSignIn(message) {
  me = null;
  if (following) { following.close(); following = null; }
  $("home").hidden = true;
  $("who").hidden = true;
  $("viewer").hidden = true;
  // Nothing of this user's stays on the page for the next one.
  $("progress").hidden = true;
  $("stages").replaceChildren();
  $("output").textContent = "";
  $("progress-result").textContent = "";
  notice("");
  for (const body of document.querySelectorAll("#home tbody")) body.replaceChildren();
  $("quotas").replaceChildren();
  $("schedule-form").reset();
  $("signin").hidden = false;
  $("signin-error").textContent = message || "";
  $("username").focus();
}

async function signIn(event) {
  event.preventDefault();
  const button = event.submitter || $("signin-form").querySelector("button");
  button.disabled = true;
  $("signin-error").textContent = "";
  try {
    await api("POST", "/web/login", {
      username: $("username").value,
      password: $("password").value,
    });
    $("password").value = "";
    await start();
  } catch (error) {
    $("signin-error").textContent = error.message;
    $("password").select();
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  try { await api("POST", "/web/logout"); } catch { /* signed out anyway */ }
  showSignIn("Signed out.");
}

// --- the home view -------------------------------------------------------

async function start() {
  try {
    me = await api("GET", "/web/me");
  } catch {
    showSignIn();
    return;
  }
  $("signin").hidden = true;
  $("home").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = me.admin ? `${me.user} (administrator)` : me.user;
  $("templates").replaceChildren(...me.templates.map(templateCard));
  // A member of several organisations says which a desktop counts against.
  $("org-choice").hidden = me.orgs.length < 2;
  $("org").replaceChildren(...me.orgs.map((name) => {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    return option;
  }));
  $("org-admin").hidden = me.administers.length === 0 || me.admin;
  $("schedule-template").replaceChildren(...me.templates.map((t) => {
    const option = document.createElement("option");
    option.value = t.name;
    option.textContent = t.title;
    return option;
  }));
  $("schedule-zone").textContent = browserZone();
  $("admin").hidden = !me.admin;
  await refresh();
}

// A template of the catalog as a card: what it is, a size to choose (when
// it has several) and its Create button.
function templateCard(t) {
  const card = document.createElement("article");
  card.className = "card";
  const title = document.createElement("h3");
  title.textContent = t.title;
  card.append(title);
  if (t.os || t.description) {
    const what = document.createElement("p");
    what.textContent = [t.os, t.description].filter(Boolean).join(" · ");
    card.append(what);
  }
  const sizeText = (s) =>
    `${s.name}: ${s.cores} CPU, ${(s.memory_mb / 1024).toFixed(s.memory_mb % 1024 ? 1 : 0)} GiB, ${s.disk_gb} GB disk`;
  let select = null;
  if (t.sizes.length > 1) {
    const label = document.createElement("label");
    label.textContent = "Size ";
    select = document.createElement("select");
    select.append(...t.sizes.map((s) => {
      const option = document.createElement("option");
      option.value = s.name;
      option.textContent = sizeText(s);
      option.selected = s.name === t.default_size;
      return option;
    }));
    label.append(select);
    card.append(label);
  } else if (t.sizes.length === 1) {
    const size = document.createElement("p");
    size.textContent = sizeText(t.sizes[0]);
    card.append(size);
  }
  const button = document.createElement("button");
  button.type = "button";
  button.className = "primary";
  button.textContent = `Create a desktop (${t.name})`;
  button.dataset.template = t.name;
  button.addEventListener("click", () => create(t.name, select ? select.value : "", button));
  card.append(button);
  return card;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function whyAlive(session) {
  if (session.failure) return `${session.failure.stage} failed: ${session.failure.reason}`;
  const a = session.activity;
  if (!a) return session.state === "READY" ? "" : "being prepared";
  const parts = [];
  if (a.users && a.users.length) parts.push(`in use by ${a.users.join(", ")}`);
  if (a.rdp_clients) parts.push(`${a.rdp_clients} RDP client(s)`);
  if (a.reap_at) parts.push(`destroyed at ${when(a.reap_at)} unless used (${a.reap_reason})`);
  return parts.join("; ");
}

function actionButton(label, handler, name) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.setAttribute("aria-label", `${label} ${name}`);
  button.addEventListener("click", () => handler(button));
  return button;
}

function sessionRow(session, withUser) {
  const row = document.createElement("tr");
  row.dataset.session = session.id;
  const cell = (text, className) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.append(td);
  };
  const name = session.vm_name || session.id.slice(0, 8);
  cell(name);
  if (withUser) cell(session.username);
  const what = session.size ? `${session.template} (${session.size})` : session.template;
  cell(session.restored_from ? `${what}, restored` : what);
  cell(session.state, `state-${session.state}`);
  cell(when(session.created_at));
  cell(whyAlive(session));
  const actions = document.createElement("td");
  const buttons = document.createElement("div");
  buttons.className = "buttons";
  if (session.state === "READY") {
    if (session.username === me.user) {
      buttons.append(actionButton("Open in the browser", () => openDesktop(session), name));
    }
    const link = document.createElement("a");
    link.className = "button";
    link.href = `/web/sessions/${encodeURIComponent(session.id)}/rdp`;
    link.textContent = "Download .rdp";
    link.setAttribute("aria-label", `Download .rdp for ${name}`);
    buttons.append(link);
  }
  if (session.state !== "DESTROYING") {
    buttons.append(actionButton("Destroy", (button) => destroy(session, button), name));
  }
  actions.append(buttons);
  row.append(actions);
  return row;
}

async function refresh(background = false) {
  if (!me) return;
  try {
    const mine = await api("GET", "/web/sessions", undefined, background);
    const body = $("sessions").querySelector("tbody");
    body.replaceChildren(...mine.sessions.map((s) => sessionRow(s, false)));
    $("sessions").hidden = mine.sessions.length === 0;
    $("no-sessions").hidden = mine.sessions.length !== 0;
    $("quotas").replaceChildren(...mine.quotas.map(quotaItem));
    showKept(mine.kept);
    const schedules = await api("GET", "/web/schedules", undefined, background);
    $("schedules").querySelector("tbody").replaceChildren(...schedules.schedules.map(scheduleRow));
    $("schedules").hidden = schedules.schedules.length === 0;
    if (me.admin) {
      await refreshAdmin(background);
    } else if (me.administers.length) {
      const rows = [];
      for (const org of me.administers) {
        const theirs = await api("GET", `/web/sessions?org=${encodeURIComponent(org)}`, undefined, background);
        rows.push(...theirs.sessions.map((s) => sessionRow(s, true)));
      }
      $("org-sessions").querySelector("tbody").replaceChildren(...rows);
    }
  } catch (error) {
    if (error.status !== 401) notice(error.message);
  }
}

// A template whose desktop kept its disk offers to resume it.
function showKept(kept) {
  for (const button of $("templates").querySelectorAll("button[data-template]")) {
    const disk = kept.find((k) => k.template === button.dataset.template && !k.restoring);
    button.textContent = disk
      ? `Resume my desktop (${button.dataset.template}, kept ${when(disk.created_at)})`
      : `Create a desktop (${button.dataset.template})`;
  }
}

// Where the user stands in a quota: "Physics: 2 of 4 vCPUs, ...; yours: 1 of
// 1 desktops". A max of 0 is no limit.
function quotaItem(q) {
  const item = document.createElement("li");
  const gib = (mb) => (mb / 1024).toFixed(mb % 1024 ? 1 : 0);
  const part = (a) => [
    a.desktops.max
      ? `${a.desktops.used} of ${a.desktops.max} desktops`
      : `${a.desktops.used} desktop${a.desktops.used === 1 ? "" : "s"}`,
    a.cores.max ? `${a.cores.used} of ${a.cores.max} vCPUs` : "",
    a.memory_mb.max ? `${gib(a.memory_mb.used)} of ${gib(a.memory_mb.max)} GiB` : "",
  ].filter(Boolean).join(", ");
  item.textContent = q.org
    ? `${q.title}: ${part(q.org_usage)}; yours: ${part(q.user_usage)}`
    : `Your desktops: ${part(q.user_usage)}`;
  return item;
}

async function refreshAdmin(background) {
  const all = await api("GET", "/web/sessions?all=1", undefined, background);
  $("all-sessions").querySelector("tbody")
    .replaceChildren(...all.sessions.map((s) => sessionRow(s, true)));
  const pools = await api("GET", "/web/pools", undefined, background);
  $("pools").querySelector("tbody").replaceChildren(...pools.pools.map((p) => {
    const row = document.createElement("tr");
    for (const text of [p.name, p.template, `${p.ready} / ${p.desired}`, p.provisioning,
      p.claimed_today, p.failures ? `${p.failures}: ${p.last_failure}` : "0"]) {
      const td = document.createElement("td");
      td.textContent = String(text);
      row.append(td);
    }
    return row;
  }));
  const nodes = await api("GET", "/web/nodes", undefined, background);
  $("nodes-part").hidden = nodes.nodes.length === 0;
  $("nodes").querySelector("tbody").replaceChildren(...nodes.nodes.map(nodeRow));
  const recordings = await api("GET", "/web/recordings", undefined, background);
  $("no-recordings").hidden = recordings.recordings.length > 0;
  $("recordings").hidden = recordings.recordings.length === 0;
  $("recordings").querySelector("tbody").replaceChildren(...recordings.recordings.map(recordingRow));
  const audit = await api("GET", "/web/audit", undefined, background);
  $("audit").querySelector("tbody").replaceChildren(...audit.entries.map((e) => {
    const row = document.createElement("tr");
    for (const text of [when(e.time), e.actor, e.action, e.session_id.slice(0, 8), e.result, e.detail]) {
      const td = document.createElement("td");
      td.textContent = text;
      row.append(td);
    }
    return row;
  }));
}

// A recording's row, with Replay.
function recordingRow(r) {
  const row = document.createElement("tr");
  row.dataset.recording = r.id;
  const open = r.ended_ms === null;
  const length = open ? "open now (or cut)" : duration(r.ended_ms - r.started_ms);
  for (const text of [new Date(r.started_ms).toLocaleString(), r.owner, r.user, r.template, length,
    `${(r.bytes / 1e6).toFixed(1)} MB`]) {
    const td = document.createElement("td");
    td.textContent = text;
    row.append(td);
  }
  const td = document.createElement("td");
  if (open) td.append(actionButton("Watch live", () => replay(r, true), `${r.owner}'s desktop`));
  if (r.kept) td.append(actionButton("Replay", () => replay(r, false), `the recording of ${r.owner}'s desktop`));
  row.append(td);
  return row;
}

function duration(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
}

// A cluster node's row, with Drain or Resume.
function nodeRow(n) {
  const row = document.createElement("tr");
  const gib = (mb) => (mb / 1024).toFixed(mb % 1024 ? 1 : 0);
  let state = n.state.toLowerCase();
  if (!n.listed) state += " (not listed)";
  if (n.drained) state += ", drained";
  for (const text of [n.name, state, `${n.desktops} / ${n.pool_desktops}`,
    `${gib(n.configured_memory_mb)} / ${gib(n.memory_mb)} GiB`,
    `${n.configured_cores} / ${n.cpus}`,
    n.templates.map((t) => (n.template_storage[t] ? `${t} @ ${n.template_storage[t]}` : t)).join(", ")]) {
    const td = document.createElement("td");
    td.textContent = String(text);
    row.append(td);
  }
  const actions = document.createElement("td");
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = n.drained ? "Resume" : "Drain";
  button.title = n.drained
    ? `${n.name} takes new desktops again`
    : `${n.name} takes no new desktop; its users' desktops stay until they end`;
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await api("POST", `/web/nodes/${encodeURIComponent(n.name)}/${n.drained ? "resume" : "drain"}`);
      await refresh();
    } catch (error) {
      notice(`${n.name}: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  });
  actions.append(button);
  row.append(actions);
  return row;
}

// --- create, follow, destroy ---------------------------------------------

async function create(template, size, button) {
  notice("");
  button.disabled = true;
  try {
    const created = await api("POST", "/web/sessions", {
      template,
      size,
      org: me.orgs.length > 1 ? $("org").value : "",
      request_id: crypto.randomUUID(),
      // With sign in once the server starts the session as soon as the
      // desktop is READY, at about the size the viewer will open it at.
      screen: { width: window.innerWidth, height: window.innerHeight },
    });
    follow(created.id);
    await refresh();
  } catch (error) {
    notice(`The desktop could not be created: ${error.message}`);
  } finally {
    button.disabled = false;
  }
}

function follow(id) {
  if (following) following.close();
  $("progress").hidden = false;
  $("stages").replaceChildren();
  $("output").textContent = "";
  $("progress-result").textContent = "Starting…";
  const source = new EventSource(`/web/sessions/${encodeURIComponent(id)}/events`);
  following = source;
  let last = null;
  source.addEventListener("session", (message) => {
    const event = JSON.parse(message.data);
    if (event.kind === "stage" || last === null) {
      if (last) last.classList.add("done");
      last = document.createElement("li");
      last.dataset.state = event.state;
      last.textContent = event.message ? `${event.state}: ${event.message}` : event.state;
      $("stages").append(last);
      $("progress-result").textContent = `${event.state}…`;
    }
    if (event.kind === "output") {
      $("output").textContent += `[${event.tool}] ${event.text}\n`;
    }
    if (event.session) {
      const s = event.session;
      if (s.state === "READY") {
        last.classList.add("done");
        $("progress-result").textContent = "Your desktop is ready.";
      } else if (s.state === "FAILED") {
        $("progress-result").textContent = `It failed: ${whyAlive(s)}`;
      } else {
        $("progress-result").textContent = s.state;
      }
      refresh();
    }
  });
  source.addEventListener("failure", (message) => {
    $("progress-result").textContent = JSON.parse(message.data).error;
  });
  source.addEventListener("end", () => {
    source.close();
    if (following === source) following = null;
  });
}

async function destroy(session, button) {
  const name = session.vm_name || session.id;
  if (!confirm(`Destroy ${name}? Whatever is not saved in your network folder is lost.`)) return;
  button.disabled = true;
  try {
    await api("POST", `/web/sessions/${encodeURIComponent(session.id)}/destroy`);
  } catch (error) {
    notice(`${name} could not be destroyed: ${error.message}`);
  }
  await refresh();
}

// --- schedules -------------------------------------------------------------

// The browser's IANA time zone ("Europe/Paris"): a schedule's is explicit.
function browserZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

function scheduleRow(s) {
  const row = document.createElement("tr");
  row.dataset.schedule = s.id;
  const cell = (text) => {
    const td = document.createElement("td");
    td.textContent = text;
    row.append(td);
  };
  cell(`${s.at} ${s.days} (${s.timezone})`);
  cell(s.size ? `${s.template} (${s.size})` : s.template);
  cell(s.next_at ? when(s.next_at) : "never");
  cell(s.last_error ? `refused: ${s.last_error}`
    : s.last_session_id ? `desktop made ${when(s.last_run_at)}` : "not yet");
  const actions = document.createElement("td");
  actions.append(actionButton("Remove", (button) => removeSchedule(s, button), `${s.at} ${s.days}`));
  row.append(actions);
  return row;
}

async function addSchedule(event) {
  event.preventDefault();
  notice("");
  try {
    await api("POST", "/web/schedules", {
      at: $("schedule-at").value,
      days: $("schedule-days").value,
      timezone: browserZone(),
      template: $("schedule-template").value,
      org: me.orgs.length > 1 ? $("org").value : "",
    });
  } catch (error) {
    notice(`The schedule could not be added: ${error.message}`);
  }
  await refresh();
}

async function removeSchedule(s, button) {
  button.disabled = true;
  try {
    await api("POST", `/web/schedules/${encodeURIComponent(s.id)}/remove`);
  } catch (error) {
    notice(`The schedule could not be removed: ${error.message}`);
  }
  await refresh();
}

// --- the desktop in the browser ------------------------------------------

// A dropped connection is opened again with a fresh ticket, this many
// times at most in a row, waiting 1, 2, 4, 8, 15 s; a session that showed
// the desktop starts the count again.
const RECONNECTS = 5;

// The viewer's bar for a desktop or a replay titled `title`; `onClose`
// runs when the user goes back. Returns the status setter and whether the
// viewer was closed.
function showViewer(title, recorded, onClose) {
  $("viewer-title").textContent = title;
  $("viewer-recorded").hidden = !recorded;
  $("viewer-watched").hidden = true;
  $("viewer").hidden = false;
  const state = { closed: false };
  $("viewer-close").onclick = () => {
    state.closed = true;
    clearInterval(state.watchers);
    if (window.daasViewer) window.daasViewer.ui.shutdown();
    $("viewer").hidden = true;
    $("screen").replaceChildren();
    onClose();
  };
  // The desktop alone on the screen (Esc leaves), scaled to fit it.
  $("viewer-fullscreen").onclick = () => {
    $("screen").requestFullscreen().catch((error) => notice(`No full screen: ${error.message}`));
  };
  state.status = (text) => { if (!state.closed) $("viewer-status").textContent = text; };
  return state;
}

// Plays a recording in the viewer, as the user's tab showed it, or (live)
// the tab still open, as it goes: the server plays the desktop's part, and
// nothing typed here goes anywhere. A live watch is shown to the user.
async function replay(r, live) {
  notice("");
  const viewer = await import("/viewer.js");
  const title = live
    ? `${r.owner}'s desktop, live (read-only; ${r.owner} is told)`
    : `Recording of ${r.owner}'s desktop, ${new Date(r.started_ms).toLocaleString()}`;
  const shown = showViewer(title, false, refresh);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ended = live ? "Watch ended" : "Replay ended";
  try {
    // The client names no reason of its own for the server's end.
    await viewer.open($("screen"), {
      gateway: `${scheme}://${location.host}/web/recordings/${encodeURIComponent(r.id)}/replay${live ? "?live=1" : ""}`,
      ticket: "replay",
      username: r.user,
      clipboard: r.client_clipboard ? "both" : "off",
      status: shown.status,
      replay: live ? "live" : "recording",
    });
    shown.status(live ? `${ended}: the user's tab closed.` : `${ended}: the end of the recording.`);
  } catch (error) {
    shown.status(`${ended}: ${error.message || error}`);
  }
}

// While a desktop an administrator may watch is open, says who watches.
function showWatchers(view, session) {
  const poll = async () => {
    try {
      const { watchers } = await api("GET", `/web/sessions/${encodeURIComponent(session.id)}/watchers`,
        undefined, true);
      if (view.closed) return;
      $("viewer-watched").textContent = `● Watched live by ${watchers.join(", ")} (read-only)`;
      $("viewer-watched").hidden = watchers.length === 0;
    } catch {
      // Signed out or gone: the viewer says so itself.
    }
  };
  poll();
  view.watchers = setInterval(poll, 3000);
}

async function openDesktop(session) {
  notice("");
  const ticketFor = () => api("POST", `/web/sessions/${encodeURIComponent(session.id)}/ticket`);
  let ticket;
  try {
    ticket = await ticketFor();
  } catch (error) {
    notice(`The desktop cannot be opened: ${error.message}`);
    return;
  }
  const viewer = await import("/viewer.js");
  const view = showViewer(session.vm_name, ticket.recorded, refresh);
  const status = view.status;
  if (ticket.watchable) showWatchers(view, session);
  // A new size of the tab (or full screen): with sign in once the desktop
  // is reopened at it, a second later (xrdp resizes the same session);
  // else the page says why it keeps its size.
  let resizing = false;
  let settle = null;
  const observer = new ResizeObserver(() => {
    clearTimeout(settle);
    settle = setTimeout(() => {
      const shown = window.daasViewer;
      const wanted = viewer.sizeFor($("screen"));
      if (view.closed || resizing || !shown || $("viewer").hidden) return;
      if (Math.abs(wanted.width - shown.width) < 32 && Math.abs(wanted.height - shown.height) < 32) return;
      if (!ticket.autologon) {
        status("Connected. The desktop keeps the size it opened with (scaled to fit): open it again for the new size.");
        return;
      }
      resizing = true;
      status(`Resizing the desktop to ${wanted.width}×${wanted.height}…`);
      shown.ui.shutdown();
    }, 1000);
  });
  observer.observe($("screen"));
  let failures = 0;
  for (;;) {
    try {
      await viewer.open($("screen"), {
        gateway: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/web/gateway`,
        ticket: ticket.ticket,
        username: ticket.username,
        clipboard: ticket.clipboard,
        autologon: ticket.autologon,
        status,
      });
      if (!resizing) break; // the desktop ended the session (logged out, or destroyed)
      resizing = false;
    } catch (error) {
      if (view.closed) break;
      if (resizing) {
        resizing = false;
      } else {
        // A first connection that fails, or a refused ticket: say why.
        if (error.refused || (!error.started && failures === 0)) {
          status(`Disconnected: ${error.message || error}`);
          break;
        }
        failures = error.started ? 1 : failures + 1;
        if (failures > RECONNECTS) {
          status(`Disconnected: ${error.message} (gave up after ${RECONNECTS} attempts; open it again)`);
          break;
        }
        status(`The connection was lost (${error.message}). Reconnecting (${failures}/${RECONNECTS})…`);
        await new Promise((resolve) => setTimeout(resolve, Math.min(15000, 1000 * 2 ** (failures - 1))));
        if (view.closed) break;
      }
    }
    try {
      ticket = await ticketFor();
    } catch (ticketError) {
      // Signed out (the sign-in view is shown), or the desktop is gone.
      status(`Disconnected: ${ticketError.message}`);
      break;
    }
  }
  observer.disconnect();
  clearTimeout(settle);
  clearInterval(view.watchers);
}

// --- wiring ----------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", signOut);
  $("schedule-form").addEventListener("submit", addSchedule);
  start();
  setInterval(() => { if (me && !$("home").hidden) refresh(true); }, 15000);
});
