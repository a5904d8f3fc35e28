/*
 * djllm custom functions for Excel:
 *
 *   =DJLLM.PROMPT(A1)                          summary of A1
 *   =DJLLM.PROMPT(A1, "sentiment", "gpt-4o-mini")
 *   =DJLLM.TEMPLATE("translation", A1, B1, …)  for now the template name is a type, and the cells are joined, one
 *                                              per line, into the prompt
 *
 * and over ranges (their results spill):
 *
 *   =DJLLM.ASK("Which region grew most?", A1:D20, "text" | "list" | "table")
 *   =DJLLM.EACH(A2:A50, "translate to German")   one answer per cell, same shape
 *   =DJLLM.CLASSIFY(A2:A50, "positive, negative, neutral")   or a range of labels
 *   =DJLLM.EXTRACT(A2:B50, "name, city, amount")  or a header range; one row per input row, one column per field
 *
 * This file runs in the add-in's shared runtime: taskpane.html loads it, and the manifest's <Runtimes> entry
 * (lifetime="long") keeps that page alive for the functions while the task pane is closed. The page comes from the
 * djllm server, so the functions call the same origin; the token is the one saved in the task pane, read from
 * OfficeRuntime.storage (never from the workbook).
 *
 * Batching, after Microsoft's pattern for custom functions that call a web service: every call is queued, and a
 * timer flushes the queue FLUSH_DELAY_MS later. Calls with the same options (type, model, instruction, labels…) go
 * out together as `POST /api/v1/batch` requests of up to the server's BATCH_MAX_ITEMS items (identical texts are
 * sent once), so recalculating a column of 1,000 cells makes a handful of requests, not 1,000.
 *
 * Recalculation costs nothing: each batch asks for temperature 0, which djllm answers from its response cache
 * (30 days by default) when the same text, type and model come again.
 *
 * Lists, tables and extracted fields are asked for with a JSON schema (`parameters.response_format`) and checked
 * before they spill; CLASSIFY sends its labels (`labels`), so an answer outside them is never cached: it is asked
 * once more with the cache bypassed and the labels restated, then shown as an error in that cell only.
 *
 * EACH, CLASSIFY and EXTRACT are streaming functions: over more distinct texts than the server's
 * EXCEL_JOB_THRESHOLD (read, with BATCH_MAX_ITEMS, from /excel/settings.json) they run as one background job, and
 * their cells fill in as its rows finish, with the job's progress in the task pane.
 *
 * Errors become readable cell errors (#N/A with a message), e.g. "THROTTLED: retry" once 429s outlast the retries
 * (the server's Retry-After is waited out, up to MAX_WAIT_SECONDS in all).
 */
(function (root) {
  "use strict";

  var TYPES = ["summary", "keywords", "sentiment", "entities", "translation", "custom"];
  var STORAGE = { token: "djllm.token", language: "djllm.language", model: "djllm.model", server: "djllm.server" };
  var FLUSH_DELAY_MS = 50;
  var maxItems = 200; // the server's BATCH_MAX_ITEMS (its default until /excel/settings.json or a 400 says)
  var MAX_ATTEMPTS = 6; // per batch request, on 429 / 502-504 / network errors
  var MAX_WAIT_SECONDS = 60; // waited in all per request; a longer Retry-After: THROTTLED now (recalculate later)
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

  // ---- Functions over ranges ------------------------------------------------------------------------------------

  var SHAPES = ["text", "list", "table"];

  /** A range as rows of cells (Excel passes a matrix; a scalar argument is a 1x1 range). */
  function rowsOf(value) {
    if (!Array.isArray(value)) return [[value]];
    return value.map(function (row) {
      return Array.isArray(row) ? row : [row];
    });
  }

  /** Labels or fields: a range's non-empty cells, or a text listing them ("a, b; c" or one per line). */
  function listOf(value) {
    var parts = flatten(Array.isArray(value) ? value : [value]).map(text);
    if (parts.length === 1) parts = parts[0].split(/[,;\n]/); // one cell or a text: the list written out
    var seen = [];
    parts.forEach(function (part) {
      var item = part.trim();
      if (item && seen.indexOf(item) < 0) seen.push(item);
    });
    return seen;
  }

  /** A range as a small Markdown table, its first row the headers, for the model to read. */
  function tableText(rows) {
    var cells = rows.map(function (row) {
      return row.map(function (cell) {
        return text(cell).replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
      });
    });
    cells = cells.filter(function (row) {
      return row.some(Boolean);
    });
    if (!cells.length) return "";
    var line = function (row) {
      return "| " + row.join(" | ") + " |";
    };
    var rule = line(
      cells[0].map(function () {
        return "---";
      })
    );
    return [line(cells[0]), rule].concat(cells.slice(1).map(line)).join("\n");
  }

  function jsonSchema(name, schema) {
    return { type: "json_schema", json_schema: { name: name, strict: true, schema: schema } };
  }

  function objectOf(properties) {
    return { type: "object", properties: properties, required: Object.keys(properties), additionalProperties: false };
  }

  var STRINGS = { type: "array", items: { type: "string" } };
  var ASK_FORMATS = {
    list: jsonSchema("list", objectOf({ items: STRINGS })),
    table: jsonSchema("table", objectOf({ columns: STRINGS, rows: { type: "array", items: STRINGS } })),
  };
  var ASK_SYSTEM = {
    text: "Answer the user's request about the data they give, briefly, as plain text without Markdown.",
    list:
      "Answer the user's request about the data they give as a JSON object whose `items` is the list asked for, " +
      "one short string per item.",
    table:
      "Answer the user's request about the data they give as a JSON object with `columns` (the headers) and " +
      "`rows` (each row a list of strings, as many as there are columns).",
  };

  /** A cell value from a table the model filled: plain numbers become numbers, the rest stays text. */
  function cellValue(value) {
    var s = text(value);
    return /^-?\d+(\.\d+)?$/.test(s) && s.length < 16 ? Number(s) : s;
  }

  function parseJson(answer) {
    try {
      return JSON.parse(answer.replace(/^\s*```(?:json)?\s*|\s*```\s*$/g, ""));
    } catch (error) {
      return null;
    }
  }

  function isStrings(value) {
    return (
      Array.isArray(value) &&
      value.every(function (v) {
        return typeof v === "string" || typeof v === "number";
      })
    );
  }

  /** The model's answer in the shape asked for, as the rows that spill; null when it is not that shape. */
  function shaped(shape, answer) {
    if (shape === "text") return [[answer]];
    var data = parseJson(answer);
    if (shape === "list") {
      if (!data || !isStrings(data.items) || !data.items.length) return null;
      return data.items.map(function (item) {
        return [cellValue(item)];
      });
    }
    if (!data || !isStrings(data.columns) || !data.columns.length || !Array.isArray(data.rows)) return null;
    var width = data.columns.length;
    var ok = data.rows.every(function (row) {
      return isStrings(row) && row.length === width;
    });
    if (!ok) return null;
    return [data.columns.map(text)].concat(
      data.rows.map(function (row) {
        return row.map(cellValue);
      })
    );
  }

  /** =DJLLM.ASK(prompt, [context], [shape]) */
  async function askRange(prompt, context, shape) {
    var question = text(prompt);
    if (!question) throw cellError("ASK: give a prompt, e.g. \"Which region grew most?\"", "value");
    var form = text(shape).toLowerCase() || "text";
    if (SHAPES.indexOf(form) < 0) throw cellError("SHAPE: use text, list or table", "value");
    var data = context === null || context === undefined ? "" : tableText(rowsOf(context));
    var body = data ? question + "\n\nData (a table; its first row holds the headers):\n" + data : question;
    var options = { type: "custom", system: ASK_SYSTEM[form] };
    if (ASK_FORMATS[form]) options.response_format = ASK_FORMATS[form];
    var item = await ask(options, body);
    if (!item.ok) throw item.error;
    var rows = shaped(form, item.result);
    if (!rows) throw cellError("SHAPE: the answer was not a " + form + "; recalculate or rephrase the prompt");
    return rows;
  }

  /** Each non-empty cell of `range` asked with `options`; `finish(item)` turns an answer into the cell's value. */
  function perCell(range, options, finish) {
    return Promise.all(
      rowsOf(range).map(function (row) {
        return Promise.all(
          row.map(function (cell) {
            var body = text(cell);
            if (!body) return ""; // an empty cell: nothing to ask, nothing to pay
            return ask(options, body).then(function (item) {
              return finish(item, body);
            });
          })
        );
      })
    );
  }

  function valueOrError(item) {
    return item.ok ? item.result : item.error;
  }

  function eachOptions(instruction) {
    var task = text(instruction);
    if (!task) throw cellError("EACH: give an instruction, e.g. \"translate to German\"", "value");
    return { type: "custom", system: "Do this with the text the user sends and answer with the result only: " + task };
  }

  /** A function that lays a job's answers (text -> item) out as the range's cells: `value(item)` for each cell
   * whose text has its answer, PENDING for the others, "" for empty cells. */
  function cellsOf(rows, value) {
    return function (answers) {
      return rows.map(function (row) {
        return row.map(function (cell) {
          var body = text(cell);
          if (!body) return "";
          return answers.has(body) ? value(answers.get(body)) : PENDING;
        });
      });
    };
  }

  /** =DJLLM.EACH(range, instruction): a streaming function (see `streaming`). */
  async function eachCell(range, instruction, progress, cancel) {
    var options = eachOptions(instruction);
    var rows = rowsOf(range);
    var texts = unique(flatten(rows).map(text));
    if (await overJobThreshold(texts)) {
      var place = cellsOf(rows, valueOrError);
      return place(await runJob(options, texts, "EACH", place, progress, cancel));
    }
    return perCell(range, options, valueOrError);
  }

  function classifySystem(labels, restated) {
    var list = labels.join(" | ");
    var system = "Classify the text the user sends. Answer with exactly one of these labels and nothing else: " + list;
    if (restated) {
      system += ". Your answer must be one of these, spelled exactly as given: " + list + ".";
    }
    return system;
  }

  function classifyOptions(labels) {
    var list = listOf(labels);
    if (list.length < 2) throw cellError("LABELS: give at least two labels, e.g. \"positive, negative\"", "value");
    return { type: "custom", system: classifySystem(list, false), labels: list };
  }

  /** =DJLLM.CLASSIFY(range, labels): a streaming function (see `streaming`). */
  async function classify(range, labels, progress, cancel) {
    var options = classifyOptions(labels);
    var list = options.labels;
    var settle = async function (item, body) {
      if (item.ok || item.code !== "answer_not_in_labels") return valueOrError(item);
      // Never cached by the server; asked once more past the cache, the labels restated, then this cell's error.
      var retry = await ask({ type: "custom", system: classifySystem(list, true), labels: list, cache: false }, body);
      if (retry.ok) return retry.result;
      if (retry.code === "answer_not_in_labels") {
        return cellError("NOT A LABEL: the answer was none of " + list.join(", "));
      }
      return retry.error;
    };
    var rows = rowsOf(range);
    var texts = unique(flatten(rows).map(text));
    if (!(await overJobThreshold(texts))) return perCell(range, options, settle);
    var answers = await runJob(options, texts, "CLASSIFY", cellsOf(rows, valueOrError), progress, cancel);
    var settled = new Map();
    await Promise.all(
      Array.from(answers.keys()).map(async function (body) {
        settled.set(body, await settle(answers.get(body), body));
      })
    );
    return cellsOf(rows, function (value) {
      return value;
    })(settled);
  }

  function extractOptions(fields) {
    var names = listOf(fields);
    if (!names.length) throw cellError("FIELDS: give the fields, e.g. \"name, city\" or a header range", "value");
    var properties = {};
    names.forEach(function (name) {
      properties[name] = { type: "string" };
    });
    return {
      type: "custom",
      system:
        "Extract these fields from the text the user sends: " +
        names.join(", ") +
        ". Answer with a JSON object with exactly these keys; an empty string where the text does not say.",
      response_format: jsonSchema("fields", objectOf(properties)),
      fields: names,
    };
  }

  /** A row of the range as EXTRACT sends it: its non-empty cells joined. */
  function rowText(row) {
    return row.map(text).filter(Boolean).join(" | ");
  }

  /** One row of EXTRACT's result from its answer: a cell per field, or the row's error in each of them. */
  function fieldRow(names, item) {
    var fill = function (value) {
      return names.map(function () {
        return value;
      });
    };
    if (!item.ok) return fill(item.error);
    var data = parseJson(item.result);
    if (!data || typeof data !== "object" || Array.isArray(data)) {
      return fill(cellError("EXTRACT: the answer was not the fields asked for; recalculate"));
    }
    return names.map(function (name) {
      return data[name] === undefined || data[name] === null ? "" : cellValue(data[name]);
    });
  }

  /** =DJLLM.EXTRACT(range, fields): a streaming function (see `streaming`). */
  async function extract(range, fields, progress, cancel) {
    var options = extractOptions(fields);
    var names = options.fields;
    var rows = rowsOf(range);
    var blank = function (value) {
      return names.map(function () {
        return value;
      });
    };
    var texts = unique(rows.map(rowText));
    if (await overJobThreshold(texts)) {
      var place = function (answers) {
        return rows.map(function (row) {
          var body = rowText(row);
          if (!body) return blank("");
          return answers.has(body) ? fieldRow(names, answers.get(body)) : blank(PENDING);
        });
      };
      return place(await runJob(options, texts, "EXTRACT", place, progress, cancel));
    }
    return Promise.all(
      rows.map(async function (row) {
        var body = rowText(row);
        return body ? fieldRow(names, await ask(options, body)) : blank("");
      })
    );
  }

  // ---- Large ranges: a background job, the cells filling in as rows finish ------------------------------------

  var PENDING = "…"; // a cell whose row the job has not finished yet
  var JOB_POLL_MAX_SECONDS = 5;
  var limits = null; // this server's /excel/settings.json, read once
  var jobs = []; // the jobs this runtime started, for the task pane: {id, label, total, done, failed, status}
  var jobListeners = [];

  /** The server's batch limit and job threshold (defaults when it cannot say). */
  async function serverLimits() {
    if (limits) return limits;
    var settings = await readSettings();
    try {
      var response = await root.fetch(settings.server + "/excel/settings.json");
      var body = await response.json();
      if (body.batch_max_items > 0) maxItems = body.batch_max_items;
      limits = { jobThreshold: body.job_threshold > 0 ? body.job_threshold : Infinity };
    } catch (error) {
      return { jobThreshold: Infinity }; // not kept: asked again next time
    }
    return limits;
  }

  async function overJobThreshold(texts) {
    return texts.length > (await serverLimits()).jobThreshold;
  }

  function jobsChanged() {
    var snapshot = jobs.map(function (job) {
      return Object.assign({}, job);
    });
    jobListeners.forEach(function (listener) {
      listener(snapshot);
    });
  }

  /** Runs the texts as one background job (POST /api/v1/jobs) and polls it; after each poll `progress` gets the
   * cells with the rows finished so far (`place(answers)`). Resolves with the answers: text -> {ok, result} or
   * {ok: false, error}. `cancel.cancelled` (the cell was deleted) cancels the job. */
  async function runJob(options, texts, label, place, progress, cancel) {
    var settings = await readSettings();
    if (!settings.token) throw cellError("NO TOKEN: open the djllm task pane and save your token");
    var merged = Object.assign({}, options, { model: options.model || settings.model });
    var created = await postWithRetries(settings, "/api/v1/jobs", batchBody(settings, merged, texts));
    if ([200, 201, 202].indexOf(created.status) < 0 || !created.json || !created.json.id) {
      var error = (created.json && created.json.error) || {};
      throw requestError(created.status, error.code, error.message || created.text);
    }
    var job = { id: created.json.id, label: label, total: texts.length, done: 0, failed: 0, status: "queued" };
    jobs.push(job);
    jobsChanged();
    var answers = new Map();
    progress(place(answers));
    var path = "/api/v1/jobs/" + encodeURIComponent(job.id);
    while (true) {
      if (cancel.cancelled) {
        await requestWithRetries(settings, "POST", path + "/cancel", {});
        job.status = "cancelled";
        jobsChanged();
        throw cellError("CANCELLED: the job was cancelled");
      }
      var polled = await requestWithRetries(settings, "GET", path);
      if (polled.status !== 200 && polled.status !== 202) {
        var failure = (polled.json && polled.json.error) || {};
        throw requestError(polled.status, failure.code, failure.message || polled.text);
      }
      var results = await requestWithRetries(settings, "GET", path + "/results?format=json");
      if (results.status === 200 && results.json && Array.isArray(results.json.results)) {
        results.json.results.forEach(function (item) {
          var body = texts[Number(item.id)];
          if (item.status === "ok" && typeof item.result === "string") {
            answers.set(body, { ok: true, result: item.result });
          } else if (item.status === "error" || item.status === "cancelled") {
            var itemErr = item.error || { code: item.status, message: "the job did not run this row" };
            answers.set(body, { ok: false, code: itemErr.code, error: itemError(itemErr) });
          }
        });
      }
      Object.assign(job, { done: polled.json.done, failed: polled.json.failed, status: polled.json.status });
      jobsChanged();
      if (polled.status === 200) return answers; // finished
      progress(place(answers));
      var wait = Math.min(Math.max(polled.retryAfter || 1, 1), JOB_POLL_MAX_SECONDS);
      await sleep(wait * 1000);
    }
  }

  /** A streaming custom function (`"stream": true` in functions.json): Excel passes an invocation last, and the
   * cells show each `setResult` — the rows a background job has finished so far, then the whole answer. Deleting
   * the cell cancels its job. (The returned promise is for tests; Excel ignores it.) */
  function streaming(fn) {
    var wrapped = function (range, argument, invocation) {
      var cancel = { cancelled: false };
      var show = function (value) {
        if (invocation && invocation.setResult) invocation.setResult(value);
      };
      if (invocation) {
        invocation.onCanceled = function () {
          cancel.cancelled = true;
        };
      }
      return fn(range, argument, show, cancel).then(
        function (value) {
          show(value);
          return value;
        },
        function (error) {
          show(error instanceof root.CustomFunctions.Error ? error : cellError(String(error)));
          throw error;
        }
      );
    };
    wrapped.streaming = true;
    return wrapped;
  }

  // ---- Before and after: the price of a range, freezing results ----------------------------------------------

  /** What =DJLLM.<fn>(range, argument) would send for these cells: its batch options and distinct texts. */
  function plan(fn, values, argument) {
    var rows = rowsOf(values);
    if (fn === "EXTRACT") return { options: extractOptions(argument), prompts: unique(rows.map(rowText)) };
    var options = fn === "CLASSIFY" ? classifyOptions(argument) : eachOptions(argument);
    return { options: options, prompts: unique(flatten(rows).map(text)) };
  }

  function unique(texts) {
    var seen = new Set();
    return texts.filter(function (t) {
      if (!t || seen.has(t)) return false;
      seen.add(t);
      return true;
    });
  }

  function addMoney(a, b) {
    return a === null || b === null || b === undefined ? null : a + Number(b);
  }

  /** The price of running fn over the cells, from the server's dry run (nothing is sent upstream or billed):
   * {texts, calls, cached, errors, input_tokens, input_cost_usd, max_cost_usd, budget_left_usd, budgeted}. */
  async function estimate(fn, values, argument) {
    var settings = await readSettings();
    if (!settings.token) throw new Error("Save a token first.");
    await serverLimits();
    var job = plan(fn, values, argument);
    var options = Object.assign({}, job.options, { model: job.options.model || settings.model });
    var sum = { texts: job.prompts.length, calls: 0, cached: 0, errors: 0, input_tokens: 0 };
    sum.input_cost_usd = 0;
    sum.max_cost_usd = 0;
    sum.budget_left_usd = null;
    sum.budgeted = false;
    for (var i = 0; i < job.prompts.length; i += maxItems) {
      var body = batchBody(settings, options, job.prompts.slice(i, i + maxItems));
      body.dry_run = true;
      var answer = await postWithRetries(settings, "/api/v1/batch", body);
      var error = (answer.json && answer.json.error) || {};
      if (answer.status === 400 && error.code === "too_many_items" && error.details && error.details.limit > 0) {
        maxItems = Math.min(maxItems, error.details.limit);
        return estimate(fn, values, argument);
      }
      if (answer.status !== 200 || !answer.json || !answer.json.totals) {
        throw new Error(error.message || "the server answered " + answer.status);
      }
      var totals = answer.json.totals;
      sum.calls += totals.calls;
      sum.cached += totals.cached;
      sum.errors += totals.errors;
      sum.input_tokens += totals.input_tokens;
      sum.input_cost_usd = addMoney(sum.input_cost_usd, totals.input_cost_usd);
      sum.max_cost_usd = addMoney(sum.max_cost_usd, totals.max_cost_usd);
      sum.budget_left_usd = answer.json.budget.left_usd === null ? null : Number(answer.json.budget.left_usd);
      sum.budgeted = answer.json.budget.left_usd !== null;
    }
    return sum;
  }

  var FORMULA_START = ["=", "+", "-", "@", "\t", "\r", "'"];

  /** A value as it must be written so that Excel stores it as the text it is and never runs it: an answer starting
   * with "=", "+", "-" or "@" would be a formula; a leading apostrophe marks text and is not shown. */
  function asText(value) {
    if (typeof value === "string" && value.length && FORMULA_START.indexOf(value.charAt(0)) >= 0) return "'" + value;
    return value;
  }

  /** "Freeze results": the selection's =DJLLM cells (and the answers they spill) become values, written as text;
   * other formulas stay formulas. Written in one go, so a spilled array is replaced together with its formula.
   * Returns the number of =DJLLM formulas frozen. */
  async function freezeSelection() {
    return root.Excel.run(async function (context) {
      var range = context.workbook.getSelectedRange();
      range.load(["values", "formulas"]);
      await context.sync();
      var frozen = 0;
      var out = range.formulas.map(function (row, r) {
        return row.map(function (formula, c) {
          var isFormula = typeof formula === "string" && formula.charAt(0) === "=";
          if (isFormula && !/^=\s*DJLLM\./i.test(formula)) return formula; // not ours: left as it is
          if (isFormula) frozen += 1;
          return asText(range.values[r][c]);
        });
      });
      range.formulas = out;
      await context.sync();
      return frozen;
    });
  }

  // ---- Batching -------------------------------------------------------------------------------------------------

  /** One cell's text with the batch options it shares with other cells ({type, model, system, labels, cache,
   * response_format}); resolves with the answer, rejects with the cell's error. */
  function enqueue(kind, model, body) {
    return ask({ type: kind, model: model }, body).then(function (item) {
      if (item.ok) return item.result;
      throw item.error;
    });
  }

  /** Like enqueue, but resolves with {ok, result} or {ok: false, code, error} (the range functions decide per
   * cell what an error means). */
  function ask(options, body) {
    return new Promise(function (resolve) {
      queue.push({ options: options, prompt: body, resolve: resolve });
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
    var failAll = function (error) {
      calls.forEach(function (call) {
        call.resolve({ ok: false, code: "request", error: error });
      });
    };
    try {
      settings = await readSettings();
    } catch (error) {
      failAll(cellError("STORAGE: " + (error && error.message ? error.message : error)));
      return;
    }
    if (!settings.token) {
      failAll(cellError("NO TOKEN: open the djllm task pane and save your token"));
      return;
    }
    // One batch carries one set of options (type, model, instruction…); identical texts within it share one item
    // (one answer, one bill).
    var groups = new Map();
    calls.forEach(function (call) {
      var options = Object.assign({}, call.options, { model: call.options.model || settings.model });
      var key = JSON.stringify(options);
      if (!groups.has(key)) groups.set(key, { options: options, waiters: new Map() });
      var group = groups.get(key);
      if (!group.waiters.has(call.prompt)) group.waiters.set(call.prompt, []);
      group.waiters.get(call.prompt).push(call);
    });
    var sends = [];
    groups.forEach(function (group) {
      sends.push(sendChunks(settings, group, Array.from(group.waiters.keys())));
    });
    await Promise.all(sends);
  }

  /** The prompts in chunks of the server's batch limit, all in flight at once. */
  async function sendChunks(settings, group, prompts) {
    await serverLimits(); // the server's BATCH_MAX_ITEMS, before the first chunk
    var chunks = [];
    for (var i = 0; i < prompts.length; i += maxItems) chunks.push(prompts.slice(i, i + maxItems));
    await Promise.all(
      chunks.map(function (chunk) {
        return sendBatch(settings, group, chunk);
      })
    );
  }

  function batchBody(settings, options, prompts) {
    var parameters = { temperature: 0 }; // cacheable: recalculation is answered from djllm's cache at $0
    if (options.response_format) parameters.response_format = options.response_format;
    var body = {
      type: options.type || "custom",
      source: "excel",
      parameters: parameters,
      items: prompts.map(function (p, i) {
        return { id: String(i), prompt: p };
      }),
    };
    if (options.model) body.model = options.model;
    if (options.system) body.system = options.system;
    if (options.labels) body.labels = options.labels;
    if (options.cache === false) body.cache = false;
    if (settings.language) body.language = settings.language;
    return body;
  }

  async function sendBatch(settings, group, prompts) {
    var each = function (fn) {
      prompts.forEach(function (p, i) {
        group.waiters.get(p).forEach(function (call) {
          fn(call, i);
        });
      });
    };
    var answer = await postWithRetries(settings, "/api/v1/batch", batchBody(settings, group.options, prompts));
    var error = (answer.json && answer.json.error) || {};
    if (answer.status === 400 && error.code === "too_many_items" && error.details && error.details.limit > 0) {
      maxItems = Math.min(maxItems, error.details.limit); // this server's BATCH_MAX_ITEMS: split and send again
      await sendChunks(settings, group, prompts);
      return;
    }
    if (answer.status !== 200 || !answer.json || !Array.isArray(answer.json.results)) {
      var failure = requestError(answer.status, error.code, error.message || answer.text);
      each(function (call) {
        call.resolve({ ok: false, code: error.code || "request", error: failure });
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
        call.resolve({ ok: true, result: item.result, cached: !!item.cached });
      } else {
        var itemErr = item ? item.error : { code: "missing", message: "no result for this cell" };
        call.resolve({ ok: false, code: (itemErr && itemErr.code) || "error", error: itemError(itemErr) });
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
    return requestWithRetries(settings, "POST", path, body);
  }

  async function requestWithRetries(settings, method, path, body) {
    var key = "xl-fn-" + Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 10);
    var answer = { status: 0, json: null, text: "" };
    var waited = 0;
    var headers = { Authorization: "Bearer " + settings.token };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      headers["Idempotency-Key"] = key;
    }
    for (var attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
      var response = null;
      try {
        response = await root.fetch(settings.server + path, {
          method: method,
          headers: headers,
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        var raw = await response.text();
        var json = null;
        try {
          json = JSON.parse(raw);
        } catch (error) {
          json = null;
        }
        answer = {
          status: response.status,
          json: json,
          text: raw.slice(0, MESSAGE_LIMIT),
          retryAfter: Number(response.headers.get("Retry-After")) || 0,
        };
      } catch (error) {
        answer = { status: 0, json: null, text: String(error) };
      }
      var retryable = answer.status === 0 || [429, 502, 503, 504].indexOf(answer.status) >= 0;
      if (!retryable || attempt === MAX_ATTEMPTS) break;
      var wait = retryAfterSeconds(response, attempt);
      if (waited + wait > MAX_WAIT_SECONDS) break; // THROTTLED now rather than spinning for minutes
      waited += wait;
      await sleep(wait * 1000);
    }
    return answer;
  }

  // ---- Registration ---------------------------------------------------------------------------------------------

  root.djllmFunctions = {
    prompt: prompt,
    template: template,
    ask: askRange,
    each: eachCell,
    classify: classify,
    extract: extract,
    jobs: function () {
      return jobs.slice();
    },
    onJobs: function (listener) {
      jobListeners.push(listener);
    },
    estimate: estimate,
    freezeSelection: freezeSelection,
    asText: asText,
    STORAGE: STORAGE,
    TYPES: TYPES,
  };
  if (root.CustomFunctions && root.CustomFunctions.associate) {
    root.CustomFunctions.associate("PROMPT", prompt);
    root.CustomFunctions.associate("TEMPLATE", template);
    root.CustomFunctions.associate("ASK", askRange);
    root.CustomFunctions.associate("EACH", streaming(eachCell));
    root.CustomFunctions.associate("CLASSIFY", streaming(classify));
    root.CustomFunctions.associate("EXTRACT", streaming(extract));
  }
})(typeof self !== "undefined" ? self : this);
