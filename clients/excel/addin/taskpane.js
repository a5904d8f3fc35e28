/*
 * The djllm task pane: saves the API token (and default language and model) in OfficeRuntime.storage, which the
 * custom functions in functions.js read from the same shared runtime. The token never goes into the workbook.
 * "Check connection" calls GET /v1/models with the token: free, and it lists the models for the Model field.
 * "Estimate cost" prices the selected range for a range function with the batch API's dry run (nothing is sent to
 * the model); "Freeze results" turns the selected =DJLLM cells into their values (functions.js does both).
 */
(function (root) {
  "use strict";

  var keys = root.djllmFunctions.STORAGE;

  function $(id) {
    return document.getElementById(id);
  }

  function storage() {
    return root.OfficeRuntime.storage;
  }

  function show(id, message, kind) {
    var el = $(id);
    el.textContent = message;
    el.className = "state" + (kind ? " " + kind : "");
  }

  /** What the pane may show of a token: its public part (`djl_<prefix>_`), as the account page does. */
  function tokenLabel(token) {
    var parts = token.split("_");
    return parts.length >= 3 ? parts[0] + "_" + parts[1] + "_…" : token.slice(0, 4) + "…";
  }

  function server() {
    return root.location.origin;
  }

  async function refresh() {
    var values = await Promise.all([
      storage().getItem(keys.token),
      storage().getItem(keys.language),
      storage().getItem(keys.model),
    ]);
    var token = values[0];
    if (token) {
      show("token-state", "Token saved: " + tokenLabel(token), "ok");
    } else {
      show("token-state", "No token saved: the functions answer #N/A NO TOKEN until you save one.", "bad");
    }
    $("language").value = values[1] || "";
    $("model").value = values[2] || "";
    return token;
  }

  async function checkConnection() {
    var token = await storage().getItem(keys.token);
    if (!token) {
      show("status", "Save a token first.", "bad");
      return;
    }
    show("status", "Checking…");
    try {
      var response = await root.fetch(server() + "/v1/models", { headers: { Authorization: "Bearer " + token } });
      var body = await response.json().catch(function () {
        return null;
      });
      if (response.ok && body && Array.isArray(body.data)) {
        var list = $("models");
        list.textContent = "";
        body.data.forEach(function (model) {
          var option = document.createElement("option");
          option.value = model.id;
          list.appendChild(option);
        });
        show("status", "Connected: token accepted, " + body.data.length + " models available.", "ok");
      } else {
        var error = (body && body.error) || {};
        var message = error.message || response.statusText;
        show("status", (response.status === 401 ? "Token rejected: " : "Error " + response.status + ": ") + message, "bad");
      }
    } catch (error) {
      show("status", "The server did not answer: " + error, "bad");
    }
  }

  async function saveToken(event) {
    event.preventDefault();
    var token = $("token").value.trim();
    if (!token) {
      show("token-state", "Paste a token first.", "bad");
      return;
    }
    await storage().setItem(keys.token, token);
    $("token").value = "";
    await refresh();
    await checkConnection();
  }

  async function forgetToken() {
    await storage().removeItem(keys.token);
    show("status", "");
    await refresh();
  }

  async function saveDefaults(event) {
    event.preventDefault();
    var language = $("language").value.trim();
    var model = $("model").value.trim();
    await (language ? storage().setItem(keys.language, language) : storage().removeItem(keys.language));
    await (model ? storage().setItem(keys.model, model) : storage().removeItem(keys.model));
    show("status", "Defaults saved. Recalculate (Ctrl+Alt+F9) to apply them to existing cells.", "ok");
  }

  // ---- The selected range: its price before, its values after --------------------------------------------------

  function usd(amount) {
    if (amount === null) return "unknown (a model has no price)";
    if (amount === 0) return "$0";
    return "$" + (amount < 0.01 ? amount.toPrecision(2) : amount.toFixed(2));
  }

  function selectedValues() {
    return root.Excel.run(async function (context) {
      var range = context.workbook.getSelectedRange();
      range.load(["values", "address"]);
      await context.sync();
      return { values: range.values, address: range.address };
    });
  }

  async function estimateSelection(event) {
    event.preventDefault();
    show("estimate-state", "Pricing the selection…");
    try {
      var selection = await selectedValues();
      var fn = $("operation").value;
      var price = await root.djllmFunctions.estimate(fn, selection.values, $("argument").value);
      var tokens = price.input_tokens.toLocaleString("en-US");
      var lines = [
        selection.address + ": " + price.texts + " texts, " + price.calls + " calls, " + price.cached + " cached ($0)",
        "≈ " + tokens + " input tokens, " + usd(price.input_cost_usd) + "; at most " + usd(price.max_cost_usd),
        price.budgeted ? "Budget left this month: " + usd(price.budget_left_usd) : "No monthly budget on this token.",
      ];
      if (price.errors) lines.push(price.errors + " texts would be refused (too long?)");
      var over = price.budgeted && price.max_cost_usd > price.budget_left_usd;
      show("estimate-state", lines.join("\n"), over ? "bad" : "ok");
    } catch (error) {
      show("estimate-state", (error && error.message) || String(error), "bad");
    }
  }

  async function freezeResults() {
    show("estimate-state", "Freezing…");
    try {
      var frozen = await root.djllmFunctions.freezeSelection();
      var message = frozen ? "Frozen: " + frozen + " =DJLLM cells now hold their values." : "No =DJLLM cells selected.";
      show("estimate-state", message, frozen ? "ok" : "");
    } catch (error) {
      show("estimate-state", "Could not freeze: " + ((error && error.message) || error), "bad");
    }
  }

  /** The background jobs the functions started, with their progress (functions.js reports every poll). */
  function showJobs(jobs) {
    var list = $("jobs");
    list.textContent = "";
    jobs.forEach(function (job) {
      var item = document.createElement("li");
      var bar = document.createElement("progress");
      bar.max = job.total;
      bar.value = job.done;
      var label = document.createElement("div");
      var failed = job.failed ? ", " + job.failed + " failed" : "";
      label.textContent = job.label + ": " + job.done + "/" + job.total + " rows, " + job.status + failed;
      item.appendChild(label);
      item.appendChild(bar);
      list.appendChild(item);
    });
    $("jobs-section").hidden = jobs.length === 0;
  }

  function start() {
    $("server").textContent = server();
    $("account-link").href = server() + "/account/";
    if (!root.OfficeRuntime || !root.OfficeRuntime.storage) {
      show("token-state", "Open this page from Excel: it is the djllm add-in's task pane.", "bad");
      return;
    }
    $("token-form").addEventListener("submit", saveToken);
    $("forget-token").addEventListener("click", forgetToken);
    $("defaults-form").addEventListener("submit", saveDefaults);
    $("check").addEventListener("click", checkConnection);
    $("estimate-form").addEventListener("submit", estimateSelection);
    $("freeze").addEventListener("click", freezeResults);
    root.djllmFunctions.onJobs(showJobs);
    showJobs(root.djllmFunctions.jobs());
    refresh();
  }

  if (root.Office && root.Office.onReady) {
    root.Office.onReady(start);
  } else {
    start();
  }
})(self);
