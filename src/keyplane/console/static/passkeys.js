// Passkeys and security keys (WebAuthn). A static file: the console's CSP forbids
// inline script. A form marked data-passkey-register or data-passkey-sign-in posts
// (with its CSRF token) to its action for the ceremony's options, asks the browser
// for the credential, then submits it as an ordinary form post to data-finish, so
// the server answers with a page (a redirect, or the recovery codes) as usual.
(function () {
  "use strict";

  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (base64.length % 4) { base64 += "="; }
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
    return bytes.buffer;
  }

  function toText(buffer) {
    if (!buffer) { return null; }
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) { binary += String.fromCharCode(bytes[i]); }
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(options) {
    options.challenge = toBytes(options.challenge);
    options.user.id = toBytes(options.user.id);
    (options.excludeCredentials || []).forEach(function (item) { item.id = toBytes(item.id); });
    return options;
  }

  function requestOptions(options) {
    options.challenge = toBytes(options.challenge);
    (options.allowCredentials || []).forEach(function (item) { item.id = toBytes(item.id); });
    return options;
  }

  function credentialJSON(credential) {
    var response = credential.response;
    var out = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toText(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      out.response.attestationObject = toText(response.attestationObject);
      out.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      out.response.authenticatorData = toText(response.authenticatorData);
      out.response.signature = toText(response.signature);
      out.response.userHandle = toText(response.userHandle);
    }
    return JSON.stringify(out);
  }

  function showError(form, message) {
    var box = form.querySelector("[data-passkey-error]");
    if (box) { box.textContent = message; box.hidden = false; }
  }

  function finish(form, token, credential) {
    var post = document.createElement("form");
    post.method = "post";
    post.action = form.dataset.finish;
    var fields = {
      csrf_token: form.querySelector("[name=csrf_token]").value,
      token: token,
      credential: credential,
    };
    var name = form.querySelector("[name=name]");
    if (name) { fields.name = name.value; }
    var next = form.querySelector("[name=next]");
    if (next) { fields.next = next.value; } else if (form.dataset.next) { fields.next = form.dataset.next; }
    Object.keys(fields).forEach(function (key) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = key;
      input.value = fields[key];
      post.appendChild(input);
    });
    document.body.appendChild(post);
    post.submit();
  }

  async function ceremony(form, register) {
    if (!window.PublicKeyCredential || !navigator.credentials) {
      showError(form, "This browser cannot use passkeys.");
      return;
    }
    var button = form.querySelector("button[type=submit]");
    if (button) { button.disabled = true; }
    try {
      var response = await fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-Requested-With": "fetch", "Accept": "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.redirected) { window.location.assign(response.url); return; }
      if (!response.ok) {
        showError(form, "Passkeys are not available here right now (" + response.status + ").");
        return;
      }
      var answer = await response.json();
      var credential = register
        ? await navigator.credentials.create({ publicKey: creationOptions(answer.options) })
        : await navigator.credentials.get({ publicKey: requestOptions(answer.options) });
      finish(form, answer.token, credentialJSON(credential));
    } catch (error) {
      showError(form, "The passkey was not used (" + (error && error.name ? error.name : "error") + ").");
    } finally {
      if (button) { button.disabled = false; }
    }
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.matches("[data-passkey-register]")) {
      event.preventDefault();
      ceremony(form, true);
    } else if (form.matches("[data-passkey-sign-in]")) {
      event.preventDefault();
      ceremony(form, false);
    }
  });
})();
