// async-jobs dashboard: live refresh without reloading the page. Hand-written, no library.
//
// Every element with `data-live` and an `id` is refreshed every few seconds: the page's own URL
// is fetched again (same origin, the session cookie goes with it), the HTML the server rendered
// (and escaped) is parsed with DOMParser — which runs no script — and each live element's
// content is swapped for its new version. A region holding the keyboard focus is left alone.
// The "Live refresh" checkbox turns it off. Without this script every page still works.
(function () {
  "use strict";
  var PERIOD_MS = 5000;
  var toggle = document.getElementById("live-toggle");
  var status = document.getElementById("live-status");
  var live = document.querySelectorAll("[data-live][id]");
  if (!toggle || live.length === 0) {
    if (toggle && toggle.parentNode) { toggle.parentNode.hidden = true; }
    return;
  }
  var busy = false;

  function say(text) { if (status) { status.textContent = text; } }

  function refresh() {
    if (busy || !toggle.checked || document.hidden) { return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.redirected && /\/login$/.test(new URL(response.url).pathname)) {
          window.location.reload(); // The session ended: show the login page.
          return null;
        }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (text) {
        if (text === null) { return; }
        var doc = new DOMParser().parseFromString(text, "text/html");
        live.forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (fresh && !el.contains(document.activeElement)) {
            el.replaceChildren.apply(el, Array.prototype.slice.call(fresh.childNodes).map(function (n) {
              return document.importNode(n, true);
            }));
          }
        });
        say("Updated " + new Date().toLocaleTimeString());
      })
      .catch(function (err) { say("Refresh failed (" + err.message + ")"); })
      .finally(function () { busy = false; });
  }

  toggle.addEventListener("change", function () { say(toggle.checked ? "Live" : "Paused"); refresh(); });
  window.setInterval(refresh, PERIOD_MS);
})();
