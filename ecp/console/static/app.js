// ecp console: the few behaviours plain HTML lacks. No framework; htmx does
// the partial refreshes. Everything here works on elements the server
// rendered, so the pages stay usable without it.
(function () {
  "use strict";

  // shellQuote quotes s for a POSIX shell exactly as ecp's register command
  // does: plain words stay bare, everything else goes in single quotes.
  function shellQuote(s) {
    if (s !== "" && /^[A-Za-z0-9\-_./:=@%+,]+$/.test(s)) return s;
    return "'" + s.replace(/'/g, "'\\''") + "'";
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    var ta = document.createElement("textarea");
    ta.value = text;
    ta.setAttribute("readonly", "");
    ta.className = "sr-only";
    document.body.appendChild(ta);
    ta.select();
    try { document.execCommand("copy"); } finally { document.body.removeChild(ta); }
    return Promise.resolve();
  }

  // The register command, rebuilt from the EMQX form on every keystroke.
  // The values never leave the page: the inputs have no name and sit in no
  // form, and nothing here sends a request.
  function registerCommand(pre) {
    var v = function (id) { return document.getElementById(id).value.trim(); };
    var def = function (id) { return document.getElementById(id).getAttribute("data-default"); };
    var parts = [
      "./agent-exporter register",
      "--ecp-url " + shellQuote(pre.getAttribute("data-ecp-url")),
      "--token " + shellQuote(pre.getAttribute("data-token")),
      "--username " + shellQuote(v("emqx-username") || def("emqx-username"))
    ];
    var pw = document.getElementById("emqx-password").value;
    if (pw !== "") parts.push("--password " + shellQuote(pw));
    parts.push("--dashboard-url " + shellQuote(v("emqx-dashboard-url") || def("emqx-dashboard-url")));
    parts.push("--api-url " + shellQuote(v("emqx-api-url") || def("emqx-api-url")));
    if (document.getElementById("emqx-logs").checked) {
      parts.push("--emqx-log-collection-enabled --emqx-log-collection-dir " + shellQuote(v("emqx-log-dir") || "/opt/emqx/log"));
    }
    return parts.join(" ");
  }

  function initGuide() {
    var guide = document.querySelector(".guide[data-replace-url]");
    if (!guide) return;
    // The guide is the answer to a POST; a reload must not issue yet
    // another token, so the address becomes the cluster's page.
    history.replaceState(null, "", guide.getAttribute("data-replace-url"));
    var pre = document.getElementById("register-cmd");
    var form = document.getElementById("emqx-form");
    var update = function () { pre.querySelector("code").textContent = registerCommand(pre); };
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    // Only rebuild once the user typed: until then the server's text
    // stands, and the two agree (the browser test checks it).
  }

  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("button.copy");
    if (btn) {
      var src = document.getElementById(btn.getAttribute("data-copy"));
      copyText(src.textContent).then(function () {
        var label = btn.textContent;
        btn.textContent = "Copied";
        btn.classList.add("copied");
        setTimeout(function () { btn.textContent = label; btn.classList.remove("copied"); }, 1500);
      });
      return;
    }
    var confirmBtn = ev.target.closest("[data-confirm]");
    if (confirmBtn && !window.confirm(confirmBtn.getAttribute("data-confirm"))) {
      ev.preventDefault();
    }
  });

  // The project switcher opens the chosen project at once; without
  // JavaScript its Open button (in <noscript>) does the same.
  document.addEventListener("change", function (ev) {
    var sel = ev.target.closest("select[data-navigate]");
    if (sel && sel.value !== "") sel.form.submit();
  });

  // A page that answers a POST and must not be re-sent on reload (the
  // one-time display of a new API token) puts its own address back.
  function initReplaceURL() {
    var el = document.querySelector("[data-replace-url]:not(.guide)");
    if (el) history.replaceState(null, "", el.getAttribute("data-replace-url"));
  }

  document.addEventListener("DOMContentLoaded", initGuide);
  document.addEventListener("DOMContentLoaded", initReplaceURL);
})();
