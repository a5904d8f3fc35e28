#!/usr/bin/env node
/*
 * Runs a compiled Office Script the way Excel does, `await main(workbook)`, against a FakeWorkbook, in a fresh V8
 * context that only has what Office Scripts have: `fetch`, `console`, `setTimeout` and the JavaScript built-ins.
 * The server URL and token reach the script the way they do in Excel: through the workbook's config sheet (or
 * workbook names), so the workbook JSON carries them.
 *
 *   node run-office-script.js COMPILED.js WORKBOOK.json
 *
 * WORKBOOK.json is FakeWorkbook's constructor argument ({sheets, selection, names, active}). Prints one JSON
 * object: {"ok", "error", "workbook": {sheets, setValuesCalls}, "logs": [...], "requests": [{method, url,
 * status, idempotency_key, items}]}. Exit status 0 when main() resolved, 1 when it threw.
 */
"use strict";

const fs = require("fs");
const vm = require("vm");
const { FakeWorkbook } = require("./fake-workbook");

async function run(scriptPath, workbookPath) {
  const source = fs.readFileSync(scriptPath, "utf8");
  const workbook = new FakeWorkbook(JSON.parse(fs.readFileSync(workbookPath, "utf8")));
  const logs = [];
  const requests = [];

  const recordingFetch = async (url, init = {}) => {
    const headers = init.headers || {};
    let items = null;
    if (typeof init.body === "string") {
      try {
        const body = JSON.parse(init.body);
        items = Array.isArray(body.items) ? body.items.map((item) => item.id) : null;
      } catch (error) {
        items = null;
      }
    }
    const entry = {
      method: init.method || "GET",
      url: String(url),
      status: null,
      idempotency_key: headers["Idempotency-Key"] || null,
      items,
    };
    requests.push(entry);
    const response = await fetch(url, init);
    entry.status = response.status;
    return response;
  };

  const sandbox = {
    fetch: recordingFetch,
    setTimeout,
    clearTimeout,
    console: {
      log: (...args) => logs.push(args.map(String).join(" ")),
    },
  };
  sandbox.console.info = sandbox.console.log;
  sandbox.console.warn = sandbox.console.log;
  sandbox.console.error = sandbox.console.log;
  const context = vm.createContext(sandbox);
  vm.runInContext(source, context, { filename: scriptPath });
  if (typeof context.main !== "function") {
    throw new Error(`${scriptPath} does not define main()`);
  }
  let error = null;
  try {
    await context.main(workbook);
  } catch (exc) {
    error = exc && exc.message ? exc.message : String(exc);
  }
  return { ok: error === null, error, workbook: workbook.toJSON(), logs, requests };
}

const [scriptPath, workbookPath] = process.argv.slice(2);
if (!scriptPath || !workbookPath) {
  process.stderr.write("usage: run-office-script.js COMPILED.js WORKBOOK.json\n");
  process.exit(2);
}
run(scriptPath, workbookPath).then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(result.ok ? 0 : 1);
  },
  (exc) => {
    process.stderr.write(`${exc && exc.stack ? exc.stack : exc}\n`);
    process.exit(3);
  }
);
