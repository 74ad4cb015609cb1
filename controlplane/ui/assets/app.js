// flotilla's dashboard: live updates over server-sent events, and the
// actions' confirmation. No build step: plain browser JavaScript.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const slug = (s) => (s || "").toLowerCase().replace(/ /g, "-").replace(/%/g, "").replace(/\//g, "-");
  const short = (v) => (v && v.length > 19 ? v.slice(0, 19) + "…" : v || "");
  const pct = (f) => (f * 100).toFixed(1) + "%";

  // --- the connection -------------------------------------------------
  const conn = $("#conn");
  const connState = $("#conn-state");
  let source = null;
  let retry = null;
  function connect() {
    if (source) source.close();
    source = new EventSource("/ui/events");
    source.onopen = () => {
      conn.hidden = true;
      connState.textContent = "live";
      document.body.dataset.live = "open";
    };
    source.onerror = () => {
      conn.hidden = false;
      connState.textContent = "disconnected, reconnecting…";
      document.body.dataset.live = "lost";
      if (source.readyState === EventSource.CLOSED) {
        clearTimeout(retry);
        retry = setTimeout(connect, 2000);
      }
    };
    source.addEventListener("release", (m) => onRelease(JSON.parse(m.data)));
    source.addEventListener("metrics", (m) => onMetrics(JSON.parse(m.data)));
    source.addEventListener("status", (m) => onStatus(JSON.parse(m.data)));
  }

  // --- release steps --------------------------------------------------
  const live = $("#live");
  function setNodeState(service, state, release) {
    $$('.node[data-service="' + service + '"]').forEach((n) => {
      n.dataset.state = slug(state);
      const t = $(".state", n);
      if (t) t.textContent = state;
    });
    $$('tr[data-row="' + service + '"] .c-state').forEach((c) => (c.textContent = state));
  }
  function onRelease(e) {
    if (e.service) setNodeState(e.service, e.state, e.release);
    if (!e.service) {
      live.hidden = false;
      const final = ["done", "failed", "skipped", "unchanged", "rolled-back"].includes(e.step);
      live.textContent = "";
      live.append("Release ");
      const a = document.createElement("a");
      a.href = "/ui/releases/" + e.release;
      a.textContent = String(e.release);
      live.append(a);
      live.append(final ? " finished: " + (e.msg || e.step) : " running: " + (e.msg || e.step));
      live.dataset.release = String(e.release);
      live.dataset.step = e.step;
    } else if (live.dataset.release !== String(e.release) || live.hidden) {
      live.hidden = false;
      live.textContent = "";
      live.append("Release ");
      const a = document.createElement("a");
      a.href = "/ui/releases/" + e.release;
      a.textContent = String(e.release);
      live.append(a);
      live.append(" running: " + e.service + " " + e.state);
      live.dataset.release = String(e.release);
    }
    // The release's page follows it.
    const rl = $("#release-live");
    if (rl && rl.dataset.release === String(e.release) && e.service) {
      let art = $('article.svc[data-service="' + e.service + '"]');
      if (!art) {
        art = document.createElement("article");
        art.className = "svc";
        art.dataset.service = e.service;
        const h = document.createElement("h3");
        h.textContent = e.service + " " + short(e.version);
        art.append(h, document.createElement("ol"));
        art.lastChild.className = "steps";
        rl.append(art);
      }
      const li = document.createElement("li");
      li.dataset.step = e.step;
      const t = document.createElement("time");
      t.dateTime = e.time;
      t.textContent = new Date(e.time).toISOString().replace("T", " ").slice(0, 19) + "Z";
      const b = document.createElement("strong");
      b.textContent = e.step;
      li.append(t, " ", b, " " + (e.msg || ""));
      $(".steps", art).append(li);
    }
  }

  // --- figures and status ---------------------------------------------
  function onMetrics(figs) {
    figs.forEach((f) => {
      $$('.node[data-service="' + f.service + '"]').forEach((n) => {
        const t = $(".figs", n);
        if (t) t.textContent = f.known ? f.rate.toFixed(1) + "/s · " + pct(f.errors) + " err · p99 " + Math.round(f.p99_ms) + "ms" : "no traffic measured";
        const s = $(".spark", n);
        if (s) s.setAttribute("points", f.spark || "");
      });
      const row = $('tr[data-row="' + f.service + '"]');
      if (row && f.known) {
        $(".c-rate", row).textContent = f.rate.toFixed(1);
        $(".c-err", row).textContent = pct(f.errors);
        $(".c-p99", row).textContent = Math.round(f.p99_ms) + " ms";
      }
    });
  }
  function onStatus(st) {
    (st.nodes || []).forEach((n) => {
      $$('.node[data-service="' + n.name + '"]').forEach((g) => {
        g.dataset.health = slug(n.health);
        $(".v-stable", g).textContent = n.stable ? short(n.stable) : "—";
        $(".v-canary", g).textContent = n.canary && n.canary.length ? "canary " + short(n.canary[0]) : "";
        $(".v-weights", g).textContent = n.canary && n.canary.length ? n.weights_text : "";
        if (n.state) {
          g.dataset.state = slug(n.state);
          $(".state", g).textContent = n.state;
        }
      });
      const row = $('tr[data-row="' + n.name + '"]');
      if (row) {
        $(".c-health", row).textContent = n.health;
        $(".c-weights", row).textContent = n.weights_text;
      }
    });
    if (!st.running && live && !live.hidden && live.dataset.step === undefined) live.hidden = true;
  }

  // --- actions: confirmation, token, and the answer -------------------
  $$("form.action").forEach((form) => {
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const out = $("output.result", form);
      if (!window.confirm(form.dataset.confirm || "Are you sure?")) {
        out.textContent = "cancelled";
        out.className = "result";
        return;
      }
      $('input[type="hidden"][name="confirm"]', form).value = "yes";
      const button = $("button", form);
      button.disabled = true;
      out.textContent = "working…";
      out.className = "result";
      try {
        const resp = await fetch(form.action, {
          method: "POST",
          headers: { Accept: "application/json" },
          body: new URLSearchParams(new FormData(form)),
          credentials: "same-origin",
        });
        const body = await resp.json();
        out.textContent = body.message;
        out.className = "result " + (body.ok ? "ok" : "bad");
        form.dataset.outcome = body.ok ? "ok" : "refused";
      } catch (err) {
        out.textContent = "the control plane did not answer: " + err;
        out.className = "result bad";
        form.dataset.outcome = "error";
      } finally {
        $('input[type="hidden"][name="confirm"]', form).value = "";
        button.disabled = false;
      }
    });
  });

  connect();
})();
