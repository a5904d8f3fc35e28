#!/usr/bin/env node
/*
 * Runs the add-in's custom functions (addin/functions.js) in Node the way Excel's shared runtime does, with the fake
 * office.js (fake-office.js) in a fresh V8 context whose `fetch` reaches a live djllm and records what was sent.
 *
 *   node run-functions.js SCENARIO.json
 *
 * SCENARIO.json: {"server": "http://127.0.0.1:PORT", "storage": {"djllm.token": "..."},
 *                 "recalculations": [[["EACH", [[["a"], ["b"]], "translate"]], ...], ...]}
 * Each recalculation calculates its cells at once (as Excel does) and waits for all of them. Prints one JSON
 * object: {"recalculations": [[cell, ...], ...], "requests": [{"url", "status", "body"}], "waits": [seconds],
 * "streamed": [{"id", "value"}] (each setResult of a streaming function)}, where
 * a cell is what __excel.calculate returns ({value} or {error, message}; a spilled value may hold per-cell errors).
 * Optional: "faults": [{"status": 429, "retry_after": 30, "url": "/api/v1/batch"}, ...] answer the first requests
 * to that URL (default: the batch API) without the server, in order, and
 * "fast_clock": true fires timers at once, recording each wait of a second or more in "waits".
 */
"use strict";

const fs = require("fs");
const path = require("path");
const vm = require("vm");

const ADDIN = path.join(__dirname, "..", "addin");

async function run(scenario) {
  const requests = [];
  const waits = [];
  const faults = (scenario.faults || []).slice();
  const recordingFetch = async (url, init = {}) => {
    const entry = { url: String(url), status: null, body: init.body ? JSON.parse(init.body) : null };
    requests.push(entry);
    const index = faults.findIndex((f) => String(url).includes(f.url || "/api/v1/batch"));
    const fault = index >= 0 ? faults.splice(index, 1)[0] : null;
    if (fault) {
      // Answered here instead of by the server: a 429 (or 5xx) with the Retry-After the scenario gives.
      const error = { error: { code: "rate_limited", message: "Rate limit exceeded.", details: {}, request_id: "x" } };
      const headers = { "Content-Type": "application/json" };
      if (fault.retry_after !== undefined) headers["Retry-After"] = String(fault.retry_after);
      entry.status = fault.status;
      return new Response(JSON.stringify(error), { status: fault.status, headers });
    }
    const response = await fetch(url, init);
    entry.status = response.status;
    return response;
  };
  // With `fast_clock`, timers fire at once and their delays are recorded: waiting out a Retry-After of 30 s takes
  // no time, and the test reads what the add-in would have waited.
  const timer = scenario.fast_clock
    ? (fn, ms) => {
        if (ms >= 1000) waits.push(ms / 1000);
        return setTimeout(fn, 0);
      }
    : setTimeout;
  const sandbox = { fetch: recordingFetch, setTimeout: timer, clearTimeout, location: { origin: scenario.server } };
  sandbox.self = sandbox;
  const context = vm.createContext(sandbox);
  for (const file of [path.join(__dirname, "fake-office.js"), path.join(ADDIN, "functions.js")]) {
    vm.runInContext(fs.readFileSync(file, "utf8"), context, { filename: file });
  }
  for (const [key, value] of Object.entries(scenario.storage || {})) {
    await context.OfficeRuntime.storage.setItem(key, value);
  }
  const recalculations = [];
  for (const cells of scenario.recalculations) {
    recalculations.push(await Promise.all(cells.map(([id, args]) => context.__excel.calculate(id, args))));
  }
  return { recalculations, requests, waits, streamed: context.__excel.streamed };
}

const scenario = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
run(scenario).then(
  (result) => process.stdout.write(`${JSON.stringify(result)}\n`),
  (exc) => {
    process.stderr.write(`${exc && exc.stack ? exc.stack : exc}\n`);
    process.exit(3);
  }
);
