/*
 * djllm custom functions for Excel:
 *
 *   =DJLLM.PROMPT(A1)                          summary of A1
 *   =DJLLM.PROMPT(A1, "sentiment", "gpt-4o-mini")
 *   =DJLLM.TEMPLATE("translation", A1, B1, …)  for now the template name is a type, and the cells are joined, one
 *                                              per line, into the prompt
 *
 * This file runs in the add-in's shared runtime: taskpane.html loads it, and the manifest's <Runtimes> entry
 * (lifetime="long") keeps that page alive for the functions while the task pane is closed. The page comes from the
 * djllm server, so the functions call the same origin; the token is the one saved in the task pane, read from
 * OfficeRuntime.storage (never from the workbook).
 *
 * Batching, after Microsoft's pattern for custom functions that call a web service: every call is queued, and a
 * timer flushes the queue FLUSH_DELAY_MS later. Calls with the same type and model go out together as one
 * `POST /api/v1/batch` (up to MAX_ITEMS items; identical texts are sent once), so recalculating a column of 1,000
 * cells makes a handful of requests, not 1,000.
 *
 * Recalculation costs nothing: each batch asks for temperature 0, which djllm answers from its response cache
 * (30 days by default) when the same text, type and model come again.
 *
 * Errors become readable cell errors (#N/A with a message), e.g. "THROTTLED: retry" once 429s outlast the retries.
 */
(function (root) {
  "use strict";

  var TYPES = ["summary", "keywords", "sentiment", "entities", "translation", "custom"];
  var STORAGE = { token: "djllm.token", language: "djllm.language", model: "djllm.model", server: "djllm.server" };
  var FLUSH_DELAY_MS = 50;
  var MAX_ITEMS = 200; // the server's default BATCH_MAX_ITEMS
  var MAX_ATTEMPTS = 3; // per batch request, on 429 / 502-504 / network errors
  var MAX_WAIT_SECONDS = 10; // longer Retry-After: give up and show THROTTLED (the user recalculates later)
  var MESSAGE_LIMIT = 200;
  var THROTTLED_CODES = ["rate_limited", "upstream_rate_limited", "upstream_overloaded"];
  var UNAVAILABLE_CODES = [
    "upstream_server_error",
    "upstream_timeout",
    "upstream_unreachable",
    "upstream_interrupted",
    "service_unavailable",
  ];

  var queue = [];
  var flushTimer = null;

  // ---- Cell errors ----------------------------------------------------------------------------------------------

  function cellError(message, kind) {
    var CF = root.CustomFunctions;
    var text = message.length > MESSAGE_LIMIT ? message.slice(0, MESSAGE_LIMIT - 1) + "…" : message;
    return new CF.Error(kind === "value" ? CF.ErrorCode.invalidValue : CF.ErrorCode.notAvailable, text);
  }

  /** A whole request that failed: every cell of it shows this. */
  function requestError(status, code, message) {
    if (status === 401) return cellError("TOKEN REJECTED: check the token in the djllm task pane");
    if (status === 403) return cellError("FORBIDDEN: " + message);
    if (status === 402 || code === "budget_exceeded") return cellError("BUDGET: " + message);
    if (status === 429) return cellError("THROTTLED: retry");
    if (status === 0) return cellError("OFFLINE: the djllm server did not answer; retry");
    if (status >= 500) return cellError("UNAVAILABLE: " + (message || "the server failed") + "; retry");
    return cellError((code || "error").toUpperCase() + ": " + message);
  }

  /** One item that failed inside a successful batch. */
  function itemError(error) {
    var code = (error && error.code) || "error";
    var message = (error && error.message) || "no result";
    if (THROTTLED_CODES.indexOf(code) >= 0) return cellError("THROTTLED: retry");
    if (UNAVAILABLE_CODES.indexOf(code) >= 0) return cellError("UNAVAILABLE: " + message + "; retry");
    return cellError(code.toUpperCase() + ": " + message);
  }

  // ---- The functions --------------------------------------------------------------------------------------------

  function text(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "boolean") return value ? "TRUE" : "FALSE";
    return String(value).trim();
  }

  function kindOf(value, fallback) {
    var kind = text(value).toLowerCase() || fallback;
    if (TYPES.indexOf(kind) < 0) {
      throw cellError("TYPE: use one of " + TYPES.join(", "), "value");
    }
    return kind;
  }

  function flatten(values, out) {
    out = out || [];
    if (Array.isArray(values)) {
      values.forEach(function (value) {
        flatten(value, out);
      });
    } else {
      out.push(values);
    }
    return out;
  }

  /** =DJLLM.PROMPT(text, [type], [model]) */
  async function prompt(value, type, model) {
    var kind = kindOf(type, "summary");
    var body = text(value);
    if (!body) return ""; // an empty cell: nothing to ask, nothing to pay
    return enqueue(kind, text(model), body);
  }

  /** =DJLLM.TEMPLATE(name, values…): the repeating `values` arrive as an array of ranges (matrices). */
  async function template(name, values) {
    if (!text(name)) throw cellError("TEMPLATE: give a template name, e.g. \"translation\"", "value");
    var kind = kindOf(name, "");
    var parts = flatten(values || []).map(text).filter(Boolean);
    if (!parts.length) return "";
    return enqueue(kind, "", parts.join("\n"));
  }

  // ---- Batching -------------------------------------------------------------------------------------------------

  function enqueue(kind, model, body) {
    return new Promise(function (resolve, reject) {
      queue.push({ type: kind, model: model, prompt: body, resolve: resolve, reject: reject });
      if (flushTimer === null) {
        flushTimer = setTimeout(flush, FLUSH_DELAY_MS);
      }
    });
  }

  async function readSettings() {
    var storage = root.OfficeRuntime.storage;
    var values = await Promise.all([
      storage.getItem(STORAGE.token),
      storage.getItem(STORAGE.language),
      storage.getItem(STORAGE.model),
      storage.getItem(STORAGE.server),
    ]);
    return {
      token: values[0] || "",
      language: values[1] || "",
      model: values[2] || "",
      server: (values[3] || root.location.origin).replace(/\/+$/, ""),
    };
  }

  async function flush() {
    flushTimer = null;
    var calls = queue;
    queue = [];
    var settings;
    try {
      settings = await readSettings();
    } catch (error) {
      calls.forEach(function (call) {
        call.reject(cellError("STORAGE: " + (error && error.message ? error.message : error)));
      });
      return;
    }
    if (!settings.token) {
      calls.forEach(function (call) {
        call.reject(cellError("NO TOKEN: open the djllm task pane and save your token"));
      });
      return;
    }
    // One batch carries one type and one model; identical texts within it share one item (one answer, one bill).
    var groups = new Map();
    calls.forEach(function (call) {
      var model = call.model || settings.model;
      var key = JSON.stringify([call.type, model]);
      if (!groups.has(key)) groups.set(key, { type: call.type, model: model, waiters: new Map() });
      var group = groups.get(key);
      if (!group.waiters.has(call.prompt)) group.waiters.set(call.prompt, []);
      group.waiters.get(call.prompt).push(call);
    });
    var sends = [];
    groups.forEach(function (group) {
      var prompts = Array.from(group.waiters.keys());
      for (var i = 0; i < prompts.length; i += MAX_ITEMS) {
        sends.push(sendBatch(settings, group, prompts.slice(i, i + MAX_ITEMS)));
      }
    });
    await Promise.all(sends);
  }

  async function sendBatch(settings, group, prompts) {
    var body = {
      type: group.type,
      source: "excel",
      parameters: { temperature: 0 }, // cacheable: recalculation is answered from djllm's cache at $0
      items: prompts.map(function (p, i) {
        return { id: String(i), prompt: p };
      }),
    };
    if (group.model) body.model = group.model;
    if (settings.language) body.language = settings.language;
    var each = function (fn) {
      prompts.forEach(function (p, i) {
        group.waiters.get(p).forEach(function (call) {
          fn(call, i);
        });
      });
    };
    var answer = await postWithRetries(settings, "/api/v1/batch", body);
    if (answer.status !== 200 || !answer.json || !Array.isArray(answer.json.results)) {
      var error = (answer.json && answer.json.error) || {};
      var failure = requestError(answer.status, error.code, error.message || answer.text);
      each(function (call) {
        call.reject(failure);
      });
      return;
    }
    var byId = {};
    answer.json.results.forEach(function (item) {
      byId[String(item.id)] = item;
    });
    each(function (call, i) {
      var item = byId[String(i)];
      if (item && item.status === "ok" && typeof item.result === "string") {
        call.resolve(item.result);
      } else {
        call.reject(itemError(item ? item.error : { code: "missing", message: "no result for this cell" }));
      }
    });
  }

  function sleep(ms) {
    return new Promise(function (resolve) {
      setTimeout(resolve, ms);
    });
  }

  function retryAfterSeconds(response, attempt) {
    var header = response ? response.headers.get("Retry-After") : null;
    var seconds = header === null ? NaN : Number(header);
    return isNaN(seconds) ? Math.pow(2, attempt - 1) * (1 + Math.random() * 0.25) : Math.max(seconds, 0);
  }

  /** POST with the saved token; 429 and 502-504 (and network errors) are retried, honouring Retry-After, with the
   * same Idempotency-Key each time so a batch the server did finish is not billed twice. */
  async function postWithRetries(settings, path, body) {
    var key = "xl-fn-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
    var answer = { status: 0, json: null, text: "" };
    for (var attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      var response = null;
      try {
        response = await root.fetch(settings.server + path, {
          method: "POST",
          headers: {
            Authorization: "Bearer " + settings.token,
            "Content-Type": "application/json",
            "Idempotency-Key": key,
          },
          body: JSON.stringify(body),
        });
        var raw = await response.text();
        var json = null;
        try {
          json = JSON.parse(raw);
        } catch (error) {
          json = null;
        }
        answer = { status: response.status, json: json, text: raw.slice(0, MESSAGE_LIMIT) };
      } catch (error) {
        answer = { status: 0, json: null, text: String(error) };
      }
      var retryable = answer.status === 0 || [429, 502, 503, 504].indexOf(answer.status) >= 0;
      if (!retryable || attempt === MAX_ATTEMPTS) break;
      var wait = retryAfterSeconds(response, attempt);
      if (wait > MAX_WAIT_SECONDS) break; // the cell shows THROTTLED now rather than spinning for minutes
      await sleep(wait * 1000);
    }
    return answer;
  }

  // ---- Registration ---------------------------------------------------------------------------------------------

  root.djllmFunctions = { prompt: prompt, template: template, STORAGE: STORAGE, TYPES: TYPES };
  if (root.CustomFunctions && root.CustomFunctions.associate) {
    root.CustomFunctions.associate("PROMPT", prompt);
    root.CustomFunctions.associate("TEMPLATE", template);
  }
})(typeof self !== "undefined" ? self : this);
