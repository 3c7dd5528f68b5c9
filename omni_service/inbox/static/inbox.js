// The room sidebar, live: the preview stream (server-sent events) first; when it drops,
// ETag polling every second until the server answers again, then the stream once more.
// While neither answers, the error banner shows; it clears by itself on recovery.
"use strict";
(function () {
  const POLL_MILLISECONDS = 1000;
  let sidebar, labels, etag = null, source = null, pollTimer = null;

  function setText(root, field, value) {
    const element = root.querySelector(`[data-field="${field}"]`);
    if (element) element.textContent = value == null || value === "" ? "—" : String(value);
  }

  function creator(card) {
    return labels[card.creator_flag || ""] || card.creator_name || "—";
  }

  function fill(kind, card) {
    const section = sidebar.querySelector(`[data-card="${kind}"]`);
    const cta = sidebar.querySelector(`[data-cta="${kind}"]`);
    section.hidden = card == null;
    cta.hidden = card != null;
    if (card == null) return;
    section.querySelector('[data-field="link"]').href = card.external_url;
    setText(section, "name", card.name);
    setText(section, "status", card.status);
    setText(section, "creator", creator(card));
    if (kind === "deal") {
      setText(section, "stage", card.stage && card.stage.name);
      setText(section, "pipeline", card.pipeline && card.pipeline.name);
      setText(section, "size", card.size);
    } else {
      setText(section, "unique_ticket_id", card.unique_ticket_id);
      setText(section, "priority", card.priority);
    }
    const time = section.querySelector('[data-field="updated_at"]');
    time.setAttribute("datetime", card.updated_at);
    window.localTime(section);
  }

  function render(preview) {
    fill("deal", preview.deal);
    fill("ticket", preview.ticket);
    sidebar.dataset.version = [
      preview.deal ? preview.deal.version : "-",
      preview.ticket ? preview.ticket.version : "-",
    ].join("/");
  }

  function state(name, message) {
    sidebar.dataset.state = name;
    sidebar.querySelector("[data-error]").hidden = name !== "error";
    sidebar.querySelector("[data-status]").textContent = message;
  }

  function connect() {
    if (source) return;
    source = new EventSource(sidebar.dataset.streamUrl, { withCredentials: true });
    source.addEventListener("preview", (event) => {
      render(JSON.parse(event.data));
      state("live", "Up to date (live).");
    });
    source.addEventListener("open", () => {
      stopPolling();
      state("live", "Up to date (live).");
    });
    source.addEventListener("error", () => {
      // The browser would retry by itself; we poll instead so the page notices an
      // outage (and a 401) at once, and come back to the stream when it answers.
      source.close();
      source = null;
      startPolling();
    });
  }

  function stopPolling() {
    if (pollTimer !== null) clearTimeout(pollTimer);
    pollTimer = null;
  }

  function startPolling() {
    if (pollTimer === null) pollTimer = setTimeout(poll, 0);
  }

  async function poll() {
    pollTimer = null;
    try {
      const headers = etag ? { "If-None-Match": etag } : {};
      const response = await fetch(sidebar.dataset.pollUrl, {
        headers, credentials: "same-origin", cache: "no-store",
      });
      if (response.status === 401) {
        window.location.assign(sidebar.dataset.signInUrl);
        return;
      }
      if (response.status === 200) {
        etag = response.headers.get("ETag");
        render(await response.json());
      } else if (response.status !== 304) {
        throw new Error(`preview answered ${response.status}`);
      }
      state("polling", "Up to date.");
      connect();
    } catch (error) {
      state("error", "Offline.");
      pollTimer = setTimeout(poll, POLL_MILLISECONDS);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    sidebar = document.querySelector("[data-room-sidebar]");
    if (!sidebar) return;
    labels = JSON.parse(sidebar.dataset.creatorLabels);
    if (window.EventSource) connect(); else startPolling();
  });
})();
