// Zero EMQX console: create a namespace, see its credentials once, use it over WSS, manage it.
//
// The password lives in this closure only: never in storage, a URL, a cookie or a log.
// Every value from the network is put into the page as text (textContent), never as HTML.
(function () {
  "use strict";

  const SHOWN_ONCE =
    "The password is shown once, here and now. Copy it before you leave or reload this page: " +
    "the service keeps only a one-way hash of it and cannot show it again.";
  const BASE_URL_TOKEN = "<base_url>";
  const USERNAME_TOKEN = "<instance_id>";
  const PASSWORD_TOKEN = "<password>";

  const $ = (id) => document.getElementById(id);
  const state = { instance: null, password: null, client: null, timer: null };
  const templates = new Map();

  // ---- errors in words -------------------------------------------------------------

  function retryAfterSeconds(response) {
    const raw = response.headers.get("Retry-After");
    if (!raw) return null;
    const seconds = Number(raw);
    if (Number.isFinite(seconds)) return Math.max(0, Math.ceil(seconds));
    const at = Date.parse(raw);
    return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  function inWords(seconds) {
    if (seconds < 90) return plural(seconds, "second");
    if (seconds < 90 * 60) return plural(Math.round(seconds / 60), "minute");
    if (seconds < 36 * 3600) return plural(Math.round(seconds / 3600), "hour");
    return plural(Math.round(seconds / 86400), "day");
  }

  async function serverMessage(response) {
    const text = (await response.text()).trim();
    try {
      const body = JSON.parse(text);
      if (body && typeof body.message === "string") return body.message;
    } catch (_) {
      // a plain-text error body
    }
    return text.length <= 300 ? text : "";
  }

  async function describeError(response) {
    const said = await serverMessage(response);
    const status = response.status;
    if (status === 429) {
      const wait = retryAfterSeconds(response);
      const when = wait === null ? "later" : `in ${inWords(wait)}`;
      return `Too many requests (${said || "a limit was reached"}). Try again ${when}.`;
    }
    if (status === 401) {
      return "The namespace's credentials were refused: the password was replaced, or the namespace expired or was deleted.";
    }
    if (status === 502) return "The service cannot reach its storage right now. Try again in a few seconds.";
    if (status === 503) return "The service is not ready or cannot reach its storage. Try again in a few seconds.";
    if (status === 504) return "The service took too long to answer. Try again in a few seconds.";
    if (status >= 500) return "The service had an internal error. Try again later; if it lasts, tell its operator.";
    return `The request was refused (${status}): ${said || "no reason given"}.`;
  }

  function say(id, text, isError) {
    const element = $(id);
    element.textContent = text;
    element.classList.toggle("error", Boolean(isError));
  }

  // ---- HTTP --------------------------------------------------------------------------

  function basicAuth() {
    const pair = `${state.instance.instance_id}:${state.password}`;
    return `Basic ${btoa(pair)}`;
  }

  async function call(method, path, options) {
    const init = Object.assign({ method, cache: "no-store", credentials: "omit" }, options || {});
    try {
      return await fetch(path, init);
    } catch (_) {
      return null;
    }
  }

  const UNREACHABLE = "Could not reach the service. Check your connection and try again.";

  // ---- showing a namespace -----------------------------------------------------------

  function baseUrl() {
    // The address this page was loaded from: where the person reaches the manager.
    return new URL(".", window.location.href).href.replace(/\/$/, "");
  }

  function fillSnippets() {
    for (const [id, text] of templates) {
      $(id).textContent = text
        .split(BASE_URL_TOKEN).join(baseUrl())
        .split(USERNAME_TOKEN).join(state.instance.instance_id)
        .split(PASSWORD_TOKEN).join(state.password);
    }
  }

  function countdown() {
    const left = Math.max(0, Math.floor((state.expiresAt - Date.now()) / 1000));
    const d = Math.floor(left / 86400);
    const h = Math.floor((left % 86400) / 3600);
    const m = Math.floor((left % 3600) / 60);
    const s = left % 60;
    $("countdown").textContent = left === 0 ? "(expired)" : `(in ${d} d ${h} h ${m} min ${s} s)`;
  }

  function showInstance(answer) {
    state.instance = answer;
    state.password = answer.credentials.password;
    state.expiresAt = Date.parse(answer.expires_at);
    $("username").textContent = answer.credentials.username;
    $("password").textContent = state.password;
    $("mqtts-uri").textContent = answer.mqtts.uri;
    $("wss-uri").textContent = answer.wss.uri;
    $("live-uri").textContent = answer.wss.uri;
    const expires = $("expires-at");
    expires.dateTime = answer.expires_at;
    expires.textContent = `${new Date(state.expiresAt).toLocaleString()} (${answer.expires_at})`;
    countdown();
    clearInterval(state.timer);
    state.timer = setInterval(countdown, 1000);
    fillSnippets();
    for (const id of ["instance", "live", "manage", "snippets"]) $(id).hidden = false;
    warnShownOnce();
  }

  function warnShownOnce() {
    // Written after the section is shown, so screen readers announce the alert.
    const alert = $("shown-once");
    alert.textContent = "";
    setTimeout(() => { alert.textContent = SHOWN_ONCE; }, 0);
  }

  function forget() {
    endMqtt("Not connected.");
    clearInterval(state.timer);
    state.instance = null;
    state.password = null;
    for (const id of ["instance", "live", "manage", "snippets"]) $(id).hidden = true;
    for (const id of ["username", "password", "mqtts-uri", "wss-uri", "messages"]) $(id).textContent = "";
    for (const [id, text] of templates) $(id).textContent = text;
    $("usage").hidden = true;
  }

  // ---- create ------------------------------------------------------------------------

  async function create(event) {
    event.preventDefault();
    const button = $("create");
    button.disabled = true;
    say("create-status", "Creating your namespace…");
    const tag = $("tag").value.trim();
    const response = await call("POST", "v1/instances", {
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(tag ? { tag } : {}),
    });
    button.disabled = false;
    if (response === null) return say("create-status", UNREACHABLE, true);
    if (response.status !== 201) return say("create-status", await describeError(response), true);
    if (state.instance) forget();
    showInstance(await response.json());
    say("create-status", "Your namespace is ready.");
    say("manage-status", "");
    $("instance-title").focus();
  }

  // ---- copy --------------------------------------------------------------------------

  async function copy(event) {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const text = $(button.dataset.copy).textContent;
    try {
      await navigator.clipboard.writeText(text);
      say("copy-status", "Copied.");
    } catch (_) {
      const range = document.createRange();
      range.selectNodeContents($(button.dataset.copy));
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      say("copy-status", "Selected: press Ctrl+C (or ⌘C) to copy.");
    }
  }

  // ---- the live MQTT console ---------------------------------------------------------

  function setConnected(connected) {
    $("connect").disabled = connected;
    $("disconnect").disabled = !connected;
    $("subscribe").disabled = !connected;
    $("publish").disabled = !connected;
  }

  function endMqtt(message) {
    if (state.client) {
      state.client.removeAllListeners();
      state.client.end(true);
      state.client = null;
    }
    setConnected(false);
    if (message) say("mqtt-status", message);
  }

  function connackInWords(error) {
    const code = error && error.code;
    if (code === 4 || code === 134) return "bad user name or password";
    if (code === 5 || code === 135) return "not authorized (expired, deleted or paused?)";
    return (error && error.message) || "unknown error";
  }

  function connectMqtt() {
    if (!state.instance || typeof mqtt === "undefined") return;
    endMqtt(null);
    say("mqtt-status", "Connecting…");
    const suffix = Array.from(crypto.getRandomValues(new Uint8Array(4)), (b) => b.toString(16).padStart(2, "0")).join("");
    const client = mqtt.connect(state.instance.wss.uri, {
      username: state.instance.credentials.username,
      password: state.password,
      clientId: `console-${suffix}`,
      protocolVersion: 4,
      timerVariant: "native", // no keepalive worker: the page's CSP allows no blob: workers
      reconnectPeriod: 0,
      connectTimeout: 10000,
      clean: true,
    });
    state.client = client;
    client.on("connect", () => {
      setConnected(true);
      say("mqtt-status", "Connected. Subscribe to a topic filter, then publish.");
    });
    client.on("error", (error) => {
      say("mqtt-status", `The broker refused the connection: ${connackInWords(error)}.`, true);
    });
    let opened = false;
    client.on("connect", () => { opened = true; });
    client.on("close", () => {
      if (state.client !== client) return;
      const wasError = $("mqtt-status").classList.contains("error");
      setConnected(false);
      if (wasError) return;
      if (opened) say("mqtt-status", "Disconnected.");
      else say("mqtt-status", `Could not connect to ${state.instance.wss.uri}: the broker is unreachable, or this browser does not trust its certificate.`, true);
      client.end(true);
    });
    client.on("message", (topic, payload) => {
      const item = document.createElement("li");
      const time = document.createElement("time");
      const now = new Date();
      time.dateTime = now.toISOString();
      time.textContent = now.toLocaleTimeString();
      const name = document.createElement("code");
      name.className = "topic";
      name.textContent = topic;
      const body = document.createElement("span");
      body.className = "payload";
      body.textContent = new TextDecoder().decode(payload);
      item.append(time, " ", name, " ", body);
      $("messages").append(item);
    });
  }

  function subscribe(event) {
    event.preventDefault();
    const filter = $("sub-topic").value.trim();
    if (!state.client || !filter) return;
    state.client.subscribe(filter, { qos: 0 }, (error, granted) => {
      const refused = error || (granted && granted.some((g) => g.qos === 128));
      if (refused) say("mqtt-status", `The broker refused the subscription to ${filter}.`, true);
      else say("mqtt-status", `Subscribed to ${filter}.`);
    });
  }

  function publish(event) {
    event.preventDefault();
    const topic = $("pub-topic").value.trim();
    if (!state.client || !topic) return;
    state.client.publish(topic, $("pub-payload").value, { qos: 0 }, (error) => {
      if (error) say("mqtt-status", `Publishing failed: ${error.message}.`, true);
      else say("mqtt-status", `Published to ${topic}.`);
    });
  }

  // ---- self-service ------------------------------------------------------------------

  function ownPath(suffix) {
    return `v1/instances/${encodeURIComponent(state.instance.instance_id)}${suffix || ""}`;
  }

  const SHOWN_FIELDS = new Set(["instance_id", "state", "connected_clients", "created_at", "expires_at", "tag", "credentials", "limits", "usage"]);
  const EMQX_STATES = {
    ok: "answered",
    unreachable: "did not answer: some figures are unknown",
    not_configured: "is not asked by this deployment: figures are unknown",
  };

  function usedOf(entry) {
    if (!entry || entry.used === null || entry.used === undefined) return `unknown (at most ${entry ? entry.limit : "?"})`;
    return `${entry.used} of ${entry.limit}`;
  }

  function usageRows(detail) {
    const usage = detail.usage || {};
    const rows = [
      ["State", detail.state],
      ["Expires", detail.expires_at],
      ["Created", detail.created_at],
      ["Tag", detail.tag || "none"],
    ];
    if (detail.usage) {
      rows.push(["Live sessions", usedOf(usage.sessions)]);
      rows.push(["Retained messages", usedOf(usage.retained_messages)]);
      for (const [name, value] of Object.entries(usage.counters || {})) rows.push([name.replace(/_/g, " "), String(value)]);
      rows.push(["The broker", EMQX_STATES[usage.emqx] || String(usage.emqx)]);
    } else {
      const clients = detail.connected_clients;
      rows.push(["Connected clients", clients === null || clients === undefined ? "unknown" : String(clients)]);
    }
    // Whatever else the service reports: one row per value, as text.
    for (const [key, value] of Object.entries(detail)) {
      if (!SHOWN_FIELDS.has(key)) rows.push([key, JSON.stringify(value)]);
    }
    return rows;
  }

  function showUsage(detail) {
    const list = $("usage");
    list.replaceChildren();
    for (const [name, value] of usageRows(detail)) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      list.append(dt, dd);
    }
    list.hidden = false;
  }

  async function inspect() {
    if (!state.instance) return;
    say("manage-status", "Asking the service…");
    const response = await call("GET", ownPath(), { headers: { Authorization: basicAuth() } });
    if (response === null) return say("manage-status", UNREACHABLE, true);
    if (response.status !== 200) return say("manage-status", await describeError(response), true);
    showUsage(await response.json());
    say("manage-status", "Usage as of now.");
  }

  async function rotate() {
    if (!state.instance) return;
    say("manage-status", "Making a new password…");
    const response = await call("POST", ownPath("/rotate-credentials"), { headers: { Authorization: basicAuth() } });
    if (response === null) return say("manage-status", UNREACHABLE, true);
    if (response.status !== 200) return say("manage-status", await describeError(response), true);
    const answer = await response.json();
    const wasConnected = Boolean(state.client && state.client.connected);
    state.password = answer.credentials.password;
    $("password").textContent = state.password;
    fillSnippets();
    warnShownOnce();
    say("manage-status", "New password made: the old one no longer works. It is shown once, above.");
    if (wasConnected) connectMqtt();
  }

  async function remove() {
    if (!state.instance) return;
    if (!window.confirm("Delete this namespace now? Its clients are disconnected and it cannot be brought back.")) return;
    say("manage-status", "Deleting…");
    const response = await call("DELETE", ownPath(), { headers: { Authorization: basicAuth() } });
    if (response === null) return say("manage-status", UNREACHABLE, true);
    if (response.status !== 204) return say("manage-status", await describeError(response), true);
    forget();
    say("create-status", "Your namespace was deleted. Create another whenever you like.");
    $("create").focus();
  }

  // ---- wiring ------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    for (const code of document.querySelectorAll("code[data-snippet]")) templates.set(code.id, code.textContent);
    $("create-form").addEventListener("submit", create);
    document.body.addEventListener("click", copy);
    $("connect").addEventListener("click", connectMqtt);
    $("disconnect").addEventListener("click", () => endMqtt("Disconnected."));
    $("subscribe-form").addEventListener("submit", subscribe);
    $("publish-form").addEventListener("submit", publish);
    $("inspect").addEventListener("click", inspect);
    $("rotate").addEventListener("click", rotate);
    $("delete").addEventListener("click", remove);
    if (typeof mqtt === "undefined") say("mqtt-status", "The MQTT library did not load; the live console is off.", true);
    document.body.dataset.ready = "true";
  });
})();
