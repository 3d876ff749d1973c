// Keyplane console: progressive enhancement only. Every page works without this
// file; with it, create/revoke/roll happen in <dialog>s and the key can be copied.
(function () {
  "use strict";

  var main = function () { return document.getElementById("main"); };
  var topbar = function () { return document.getElementById("topbar"); };

  function hideBackground(hidden) {
    [main(), topbar()].forEach(function (element) {
      if (!element) { return; }
      if (hidden) { element.setAttribute("aria-hidden", "true"); }
      else { element.removeAttribute("aria-hidden"); }
    });
  }

  function openDialog(dialog, opener) {
    dialog.returnFocusTo = opener || null;
    hideBackground(true);
    dialog.showModal();
    var first = dialog.querySelector("input:not([type=hidden]):not([readonly]), select, button.primary");
    if (first) { first.focus(); }
  }

  function bindDialog(dialog) {
    dialog.addEventListener("close", function () {
      hideBackground(false);
      if (dialog.dataset.revealed === "1") {
        // The key was shown: reload by GET, which never shows it again.
        window.location.replace(window.location.pathname + window.location.search);
        return;
      }
      if (dialog.returnFocusTo) { dialog.returnFocusTo.focus(); }
    });
    dialog.addEventListener("click", function (event) {
      if (event.target === dialog && dialog.dataset.revealed !== "1") { dialog.close(); }
    });
  }

  function setCopyStatus(button, text) {
    var scope = button.closest("[data-reveal], .reveal") || document;
    var status = scope.querySelector("[data-copy-status]");
    if (status) { status.textContent = text; }
  }

  async function copyFrom(button) {
    var field = document.getElementById(button.dataset.copy);
    if (!field) { return; }
    try {
      await navigator.clipboard.writeText(field.value);
    } catch (error) {
      field.focus();
      field.select();
      if (!document.execCommand("copy")) {
        setCopyStatus(button, "Select the key and copy it with Ctrl+C or Cmd+C.");
        return;
      }
    }
    setCopyStatus(button, "Copied to the clipboard.");
  }

  function downloadEnv(button) {
    var field = document.getElementById(button.dataset.downloadEnv);
    if (!field) { return; }
    var blob = new Blob([button.dataset.envVar + "=" + field.value + "\n"], { type: "text/plain" });
    var link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    // Browsers strip a leading dot from downloads (hidden files), so ".env" would
    // arrive as "env": name it so it is obvious what it is and where it goes.
    link.download = "keyplane.env";
    document.body.appendChild(link);
    link.click();
    setTimeout(function () { URL.revokeObjectURL(link.href); link.remove(); }, 1000);
  }

  async function submitInDialog(form) {
    var dialog = form.closest("dialog");
    var body = dialog.querySelector("[data-dialog-body]");
    var submit = form.querySelector("button[type=submit]");
    if (submit) { submit.disabled = true; }
    try {
      var response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-Requested-With": "fetch" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.redirected && (response.url.indexOf("/signin") !== -1 || response.url.indexOf("/sudo") !== -1)) {
        window.location.assign(response.url);
        return;
      }
      body.innerHTML = await response.text();
      enhance(body);
      if (body.querySelector("[data-reveal]")) {
        dialog.dataset.revealed = "1";
        var copy = body.querySelector("[data-copy]");
        if (copy) { copy.focus(); }
      } else {
        var first = body.querySelector("input:not([type=hidden]), select");
        if (first) { first.focus(); }
      }
    } catch (error) {
      if (submit) { submit.disabled = false; }
      form.insertAdjacentHTML("afterbegin", '<p class="alert" role="alert">The server could not be reached. Try again.</p>');
    }
  }

  function showCustomExpiry(select) {
    var form = select.closest("form");
    var custom = form && form.querySelector("[data-custom-expiry]");
    if (!custom) { return; }
    custom.hidden = select.value !== "custom";
    var input = custom.querySelector("input");
    if (input) { input.required = select.value === "custom"; }
  }

  function enhance(root) {
    root.querySelectorAll("[data-js-hide]").forEach(function (element) { element.hidden = true; });
    root.querySelectorAll("[data-download-env]").forEach(function (element) { element.hidden = false; });
    root.querySelectorAll("[data-expiry-select]").forEach(showCustomExpiry);
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest("button, a");
    if (!target) { return; }
    if (target.matches("[data-copy]")) { event.preventDefault(); copyFrom(target); }
    else if (target.matches("[data-download-env]")) { event.preventDefault(); downloadEnv(target); }
    else if (target.matches("[data-dialog-close]")) {
      var dialog = target.closest("dialog");
      if (dialog) { event.preventDefault(); dialog.close(); }
    }
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.matches("[data-opens]")) {
      var dialog = document.getElementById(form.dataset.opens);
      if (!dialog) { return; }
      event.preventDefault();
      if (form.dataset.action) {
        var revoke = dialog.querySelector("[data-revoke-form]");
        revoke.action = form.dataset.action;
        dialog.querySelector("[data-key-name]").textContent = form.dataset.keyName;
        dialog.querySelector("[data-key-hint]").textContent = form.dataset.keyHint;
        var callers = dialog.querySelector("[data-key-callers]");
        if (callers) { callers.textContent = form.dataset.keyCallers || ""; }
      }
      openDialog(dialog, form.querySelector("button"));
    } else if (form.matches("[data-fetch-form]") && form.closest("dialog")) {
      event.preventDefault();
      submitInDialog(form);
    }
  });

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches("select[data-autosubmit]")) { target.form.requestSubmit(); }
    if (target.matches("[data-expiry-select]")) { showCustomExpiry(target); }
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.documentElement.classList.add("js");
    document.querySelectorAll("dialog").forEach(bindDialog);
    enhance(document);
  });
})();
