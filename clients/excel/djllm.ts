/**
 * djllm for Excel: an Office Script (Automate > New script, paste this file, Save, Run).
 *
 * It sends the selected cells (or a configured column) to your djllm server and writes each answer into the cell
 * to the right of its row:
 *   - up to JOB_THRESHOLD rows: `POST /api/v1/batch` in chunks of `chunk_size` rows (default 100), `concurrency`
 *     chunks in flight at once (default 3, at most 4);
 *   - more rows: one background job (`POST /api/v1/jobs`), polled until done, then its results are written.
 * 429 and 503 answers are retried with backoff, honouring `Retry-After`; rows the server reports as throttled or
 * as a passing upstream failure are sent again. A row that still fails gets a short "#ERROR code: message".
 *
 * `operation` picks what is done with each row (default: the `type` template, e.g. summary):
 *   - each:     `instruction` (e.g. "translate to German") applied to each cell, the answer to its right;
 *   - classify: one of `labels` ("positive, negative, neutral") per cell; an answer outside them is never cached by
 *               the server, is asked once more with the cache bypassed and the labels restated, then an error;
 *   - extract:  `fields` ("name, city") from each row of the selection (its cells joined), one column per field to
 *               the right of the selection (asked with a JSON schema, checked);
 *   - freeze:   the selected cells become their values (formulas, e.g. =DJLLM.EACH(...), are replaced by what they
 *               show), written as text so that Excel never evaluates them.
 * Everything written goes in as text: an answer starting with "=", "+", "-" or "@" is never run as a formula.
 *
 * Configuration (see docs/excel.md): a sheet named "djllm" with a key in column A and its value in column B, or a
 * workbook name "DJLLM_<KEY>" (for example DJLLM_URL) pointing at a cell. Keys: url, token (both required), type,
 * source, language, model, column, header, output_column, chunk_size, concurrency, job_threshold, max_attempts,
 * job_id, operation, instruction, labels, fields.
 *
 * Office Scripts cannot store secrets: a token in the config sheet travels with the workbook to everyone who can
 * open it. Use a token made for this workbook (scope `llm`, a monthly budget, an expiry), or leave `token` blank
 * in the sheet and paste it into TOKEN_IN_SCRIPT below: the script is stored in your OneDrive, not in the workbook.
 *
 * Written for the Office Scripts compiler (TypeScript 4.0): no `any`, arrow functions only in array callbacks,
 * no `Excel` / `ExcelScript` / `console` identifiers of our own.
 */

/** Leave empty to read the token from the config sheet or the DJLLM_TOKEN name instead. */
const TOKEN_IN_SCRIPT = "";
const CONFIG_SHEET = "djllm";
const CELL_TEXT_LIMIT = 32000; // Excel holds at most 32,767 characters in a cell
const ERROR_TEXT_LIMIT = 120;
const MAX_WAIT_SECONDS = 120; // longest Retry-After we sit out before trying again
const JOB_POLL_MAX_SECONDS = 15;
const RETRYABLE_STATUS = [429, 502, 503, 504];
const RETRYABLE_ITEM_CODES = [
  "rate_limited",
  "upstream_rate_limited",
  "upstream_overloaded",
  "upstream_server_error",
  "upstream_timeout",
  "upstream_unreachable",
  "upstream_interrupted",
  "service_unavailable",
];
const JOB_FINISHED = ["done", "failed", "cancelled"];
const FORMULA_START = ["=", "+", "-", "@", "\t", "\r", "'"];

// ---- What djllm answers (docs: /api/docs/) ----------------------------------------------------------------------

interface ApiErrorDetail {
  code: string;
  message: string;
  request_id?: string;
}

/** Any 4xx/5xx from /api/: `{"error": {"code", "message", "details", "request_id"}}`. */
interface ApiErrorResponse {
  error: ApiErrorDetail;
}

/** One row's outcome, in input order. */
interface BatchResultItem {
  id: string;
  status: string; // "ok" | "error"
  result: string | null;
  error: ApiErrorDetail | null;
  cached: boolean;
  cost_usd: string | null;
}

interface BatchResponse {
  batch_id: string;
  results: BatchResultItem[];
}

interface JobStatusResponse {
  id: string;
  status: string;
  total: number;
  done: number;
  failed: number;
  cost_usd: string | null;
  eta_seconds: number | null;
  /** Set when the job stopped for a reason that concerns every row (budget used up, token revoked). */
  error: ApiErrorDetail | null;
}

interface JobResultsResponse {
  results: BatchResultItem[];
}

// ---- What we send -----------------------------------------------------------------------------------------------

interface BatchItem {
  id: string;
  prompt: string;
}

interface SchemaProperty {
  type: string;
}

/** OpenAI's `response_format` with a JSON schema: how `extract` asks for its fields. */
interface ResponseFormat {
  type: string;
  json_schema: {
    name: string;
    strict: boolean;
    schema: {
      type: string;
      properties: { [name: string]: SchemaProperty };
      required: string[];
      additionalProperties: boolean;
    };
  };
}

interface BatchParameters {
  temperature: number;
  response_format?: ResponseFormat;
}

interface BatchRequest {
  type: string;
  source: string;
  language?: string;
  model?: string;
  system?: string;
  labels?: string[];
  cache?: boolean;
  parameters: BatchParameters;
  items: BatchItem[];
}

// ---- The script's own state -------------------------------------------------------------------------------------

interface Settings {
  url: string;
  token: string;
  type: string;
  source: string;
  language: string;
  model: string;
  column: string;
  header: boolean;
  outputColumn: string;
  chunkSize: number;
  concurrency: number;
  jobThreshold: number;
  maxAttempts: number;
  jobId: string;
  operation: string; // "" (the `type` template), "each", "classify", "extract" or "freeze"
  instruction: string;
  labels: string[];
  fields: string[];
  restateLabels: boolean; // classify's second asking, past the cache
}

/** One non-empty input cell: its offset in the input range and the id sent to the server. */
interface Row {
  offset: number;
  id: string;
  prompt: string;
}

/** The outcome of one row, ready for its cells (one, or one per field with `extract`). */
interface RowOutcome {
  id: string;
  ok: boolean;
  text: string;
  cached: boolean;
  cost: number;
  code: string; // the error code when not ok
  cells: ExcelScript.CellValue[];
}

interface HttpOutcome {
  status: number; // 0: no answer (network error)
  body: string;
  retryAfterSeconds: number | null;
  location: string;
}

interface Target {
  input: ExcelScript.Range;
  output: ExcelScript.Range;
}

interface Totals {
  ok: number;
  failed: number;
  cached: number;
  cost: number;
}

// ---- Entry point ------------------------------------------------------------------------------------------------

async function main(workbook: ExcelScript.Workbook): Promise<void> {
  const settings = readSettings(workbook);
  if (settings.operation === "freeze") {
    freeze(workbook.getSelectedRange());
    return;
  }
  const target = findTarget(workbook, settings);
  const inputValues = target.input.getValues();
  const outputValues = target.output.getValues();
  const rows: Row[] = [];
  inputValues.forEach((cells, offset) => {
    // extract reads the whole row (its cells joined); the other operations the first column
    const text =
      settings.operation === "extract"
        ? cells.map((c) => cellText(c)).filter((t) => t !== "").join(" | ")
        : cellText(cells[0]);
    if (text !== "") {
      rows.push({ offset: offset, id: `r${offset + 1}`, prompt: text });
    }
  });
  if (rows.length === 0) {
    console.log(`Nothing to do: ${target.input.getAddress()} is empty.`);
    return;
  }
  console.log(`djllm: ${rows.length} rows from ${target.input.getAddress()} -> ${target.output.getAddress()}`);
  const writer = new ColumnWriter(target.output, outputValues);
  const totals: Totals = { ok: 0, failed: 0, cached: 0, cost: 0 };
  const record = (outcomes: RowOutcome[]) => {
    outcomes.forEach((o) => {
      totals.ok += o.ok ? 1 : 0;
      totals.failed += o.ok ? 0 : 1;
      totals.cached += o.cached ? 1 : 0;
      totals.cost += o.cost;
    });
  };
  const large = settings.jobId !== "" || rows.length > settings.jobThreshold;
  const outcomes = large ? await runJob(workbook, settings, rows, writer) : await runBatches(settings, rows, writer);
  const offLabels = rows.filter((_row, i) => outcomes[i].code === "answer_not_in_labels");
  if (offLabels.length > 0) {
    // Not cached by the server: asked once more past the cache with the labels restated, then left as an error.
    console.log(`djllm: ${offLabels.length} answers were not one of the labels; asking those once more`);
    const again = await runBatches({ ...settings, restateLabels: true }, offLabels, writer);
    const byId: { [id: string]: RowOutcome } = {};
    again.forEach((o) => {
      byId[o.id] = o;
    });
    outcomes.forEach((o, i) => {
      outcomes[i] = byId[o.id] || o;
    });
  }
  record(outcomes);
  console.log(
    `djllm: ${totals.ok} ok (${totals.cached} from cache), ${totals.failed} failed, cost $${totals.cost.toFixed(6)}`
  );
}

// ---- Settings and target range ----------------------------------------------------------------------------------

function readSettings(workbook: ExcelScript.Workbook): Settings {
  const sheetValues: { [key: string]: string } = {};
  const sheet = workbook.getWorksheet(CONFIG_SHEET);
  const used = sheet ? sheet.getUsedRange(true) : undefined;
  if (used) {
    used.getValues().forEach((cells) => {
      const key = cellText(cells[0]).toLowerCase();
      if (key !== "" && cells.length > 1) {
        sheetValues[key] = cellText(cells[1]);
      }
    });
  }
  const get = (key: string, fallback: string): string => {
    const named = workbook.getNamedItem(`DJLLM_${key.toUpperCase()}`);
    const namedRange = named ? named.getRange() : undefined;
    const value = namedRange ? cellText(namedRange.getValue()) : sheetValues[key] || "";
    return value !== "" ? value : fallback;
  };
  const url = get("url", "").replace(/\/+$/, "");
  const token = TOKEN_IN_SCRIPT !== "" ? TOKEN_IN_SCRIPT : get("token", "");
  if (url === "" || token === "") {
    throw new Error(
      `Set the server URL and token: a sheet "${CONFIG_SHEET}" with "url" and "token" in column A and their values ` +
        "in column B (or workbook names DJLLM_URL and DJLLM_TOKEN)."
    );
  }
  return {
    url: url,
    token: token,
    type: get("type", "summary"),
    source: get("source", "excel"),
    language: get("language", ""),
    model: get("model", ""),
    column: get("column", ""),
    header: ["true", "yes", "1"].indexOf(get("header", "true").toLowerCase()) >= 0,
    outputColumn: get("output_column", ""),
    chunkSize: clamp(toInt(get("chunk_size", "100"), 100), 1, 200),
    concurrency: clamp(toInt(get("concurrency", "3"), 3), 1, 4),
    jobThreshold: Math.max(toInt(get("job_threshold", "2000"), 2000), 1),
    maxAttempts: clamp(toInt(get("max_attempts", "6"), 6), 1, 20),
    jobId: get("job_id", ""),
    operation: checkedOperation(get("operation", "").toLowerCase()),
    instruction: get("instruction", ""),
    labels: listOf(get("labels", "")),
    fields: listOf(get("fields", "")),
    restateLabels: false,
  };
}

function checkedOperation(operation: string): string {
  if (["", "each", "classify", "extract", "freeze"].indexOf(operation) < 0) {
    throw new Error(`Unknown operation "${operation}": use each, classify, extract or freeze (or leave it empty).`);
  }
  return operation;
}

/** "a, b; c" (or one per line) -> ["a", "b", "c"], without blanks or repeats. */
function listOf(text: string): string[] {
  const out: string[] = [];
  text.split(/[,;\n]/).forEach((part) => {
    const item = part.trim();
    if (item !== "" && out.indexOf(item) < 0) {
      out.push(item);
    }
  });
  return out;
}

/** The input is the first column of the selection, or the configured `column`; the output is the column to the
 * right of the selection (or `output_column`), row for row. */
function findTarget(workbook: ExcelScript.Workbook, settings: Settings): Target {
  checkOperationSettings(settings);
  const width = settings.operation === "extract" ? settings.fields.length : 1;
  let input: ExcelScript.Range;
  if (settings.column !== "") {
    input = configuredColumn(workbook, settings);
  } else {
    const selection = workbook.getSelectedRange();
    input = settings.operation === "extract" ? selection : selection.getColumn(0);
    if (settings.outputColumn === "") {
      const output = selection.getOffsetRange(0, selection.getColumnCount()).getColumn(0);
      return { input: input, output: output.getResizedRange(0, width - 1) };
    }
  }
  if (settings.outputColumn !== "") {
    const sheet = input.getWorksheet();
    const column = sheet.getRange(`${settings.outputColumn}1`).getColumnIndex();
    const output = input.getColumn(0).getOffsetRange(0, column - input.getColumnIndex());
    return { input: input, output: output.getResizedRange(0, width - 1) };
  }
  const output = input.getColumn(0).getOffsetRange(0, input.getColumnCount());
  return { input: input, output: output.getResizedRange(0, width - 1) };
}

function checkOperationSettings(settings: Settings): void {
  if (settings.operation === "each" && settings.instruction === "") {
    throw new Error('operation "each" needs an instruction (e.g. "translate to German") in the config sheet.');
  }
  if (settings.operation === "classify" && settings.labels.length < 2) {
    throw new Error('operation "classify" needs at least two labels (e.g. "positive, negative") in the config sheet.');
  }
  if (settings.operation === "extract" && settings.fields.length === 0) {
    throw new Error('operation "extract" needs fields (e.g. "name, city") in the config sheet.');
  }
}

/** The selection's cells become the values they show (a formula's result, a spilled answer), written as text
 * where Excel would otherwise run it: "Freeze results" for cells filled by =DJLLM functions. */
function freeze(selection: ExcelScript.Range): void {
  const values = selection.getValues();
  selection.setValues(values.map((row) => row.map((value) => asText(value))));
  console.log(`djllm: ${selection.getAddress()} frozen: ${values.length} rows now hold values, not formulas`);
}

/** `column` is "B", "Sheet1!B" or an explicit range such as "Sheet1!B2:B500". A bare column runs from row 1 (row 2
 * with `header`) to the last used row of its sheet. */
function configuredColumn(workbook: ExcelScript.Workbook, settings: Settings): ExcelScript.Range {
  const bang = settings.column.lastIndexOf("!");
  const sheetName = bang >= 0 ? settings.column.slice(0, bang).replace(/^'|'$/g, "") : "";
  const address = bang >= 0 ? settings.column.slice(bang + 1) : settings.column;
  const sheet = sheetName !== "" ? workbook.getWorksheet(sheetName) : workbook.getActiveWorksheet();
  if (!sheet) {
    throw new Error(`No sheet "${sheetName}" (from the "column" setting ${settings.column}).`);
  }
  const bare = /^\$?([A-Za-z]{1,3})(:\$?[A-Za-z]{1,3})?$/.exec(address);
  if (!bare) {
    return sheet.getRange(address).getColumn(0);
  }
  const letter = bare[1].toUpperCase();
  const used = sheet.getUsedRange(true);
  const lastRow = used ? used.getRowIndex() + used.getRowCount() : 0;
  const firstRow = settings.header ? 2 : 1;
  if (lastRow < firstRow) {
    throw new Error(`Column ${letter} of "${sheet.getName()}" has no data.`);
  }
  return sheet.getRange(`${letter}${firstRow}:${letter}${lastRow}`);
}

// ---- Batches ----------------------------------------------------------------------------------------------------

async function runBatches(settings: Settings, rows: Row[], writer: ColumnWriter): Promise<RowOutcome[]> {
  const chunks: Row[][] = [];
  for (let i = 0; i < rows.length; i += settings.chunkSize) {
    chunks.push(rows.slice(i, i + settings.chunkSize));
  }
  const runId = newRunId();
  const all: RowOutcome[] = [];
  const tasks = chunks.map((chunk, n) => {
    return async (): Promise<void> => {
      const outcomes = await runChunk(settings, chunk, `${runId}-${n}`);
      writer.write(chunk, outcomes); // as soon as a chunk is done: progress shows, and a stopped run keeps it
      outcomes.forEach((o) => all.push(o));
      console.log(`chunk ${n + 1}/${chunks.length}: ${outcomes.filter((o) => o.ok).length}/${chunk.length} ok`);
    };
  });
  await runPool(tasks, settings.concurrency);
  return all;
}

/** One chunk: a batch request (retried on 429/503), then the rows that failed for a passing reason once more. */
async function runChunk(settings: Settings, chunk: Row[], key: string): Promise<RowOutcome[]> {
  const done: { [id: string]: RowOutcome } = {};
  let pending = chunk;
  for (let round = 0; round < settings.maxAttempts && pending.length > 0; round++) {
    if (round > 0) {
      await sleep(backoffSeconds(round) * 1000);
    }
    const body: BatchRequest = requestBody(settings, pending);
    const answer = await sendWithRetries(settings, "POST", "/api/v1/batch", body, `${key}-${round}`);
    if (answer.status !== 200) {
      const text = errorText(answer);
      pending.forEach((row) => {
        done[row.id] = failed(row.id, text, "request", 0);
      });
      break;
    }
    const parsed: BatchResponse = JSON.parse(answer.body);
    const retry: Row[] = [];
    const byId: { [id: string]: BatchResultItem } = {};
    parsed.results.forEach((item) => {
      byId[item.id] = item;
    });
    pending.forEach((row) => {
      const item = byId[row.id];
      const outcome = outcomeOf(settings, row.id, item);
      done[row.id] = outcome;
      if (!outcome.ok && item && item.error && RETRYABLE_ITEM_CODES.indexOf(item.error.code) >= 0) {
        retry.push(row);
      }
    });
    pending = retry;
  }
  return chunk.map((row) => done[row.id]);
}

function requestBody(settings: Settings, rows: Row[]): BatchRequest {
  const body: BatchRequest = {
    type: settings.type,
    source: settings.source,
    // temperature 0 makes the answer cacheable on the server: running the script again costs nothing.
    parameters: { temperature: 0 },
    items: rows.map((row) => ({ id: row.id, prompt: row.prompt })),
  };
  if (settings.language !== "") {
    body.language = settings.language;
  }
  if (settings.model !== "") {
    body.model = settings.model;
  }
  if (settings.operation === "each") {
    body.type = "custom";
    body.system = `Do this with the text the user sends and answer with the result only: ${settings.instruction}`;
  } else if (settings.operation === "classify") {
    const list = settings.labels.join(" | ");
    body.type = "custom";
    body.labels = settings.labels;
    body.system = `Classify the text the user sends. Answer with exactly one of these labels and nothing else: ${list}`;
    if (settings.restateLabels) {
      body.system += `. Your answer must be one of these, spelled exactly as given: ${list}.`;
      body.cache = false;
    }
  } else if (settings.operation === "extract") {
    const properties: { [name: string]: SchemaProperty } = {};
    settings.fields.forEach((field) => {
      properties[field] = { type: "string" };
    });
    body.type = "custom";
    body.system =
      `Extract these fields from the text the user sends: ${settings.fields.join(", ")}. Answer with a JSON ` +
      "object with exactly these keys; an empty string where the text does not say.";
    body.parameters.response_format = {
      type: "json_schema",
      json_schema: {
        name: "fields",
        strict: true,
        schema: { type: "object", properties: properties, required: settings.fields, additionalProperties: false },
      },
    };
  }
  return body;
}

/** A row that failed: its error text goes in each of its cells. */
function failed(id: string, text: string, code: string, cost: number): RowOutcome {
  return { id: id, ok: false, text: text, cached: false, cost: cost, code: code, cells: [] };
}

function outcomeOf(settings: Settings, id: string, item: BatchResultItem | undefined): RowOutcome {
  if (!item) {
    return failed(id, shortError("missing", "the server sent no result for this row"), "missing", 0);
  }
  const cost = item.cost_usd ? parseFloat(item.cost_usd) : 0;
  if (item.status === "ok" && item.result !== null) {
    const text = item.result.slice(0, CELL_TEXT_LIMIT);
    const cells = settings.operation === "extract" ? fieldCells(settings.fields, text) : [text];
    if (cells.length === 0) {
      return failed(id, shortError("bad_answer", "the answer was not the fields asked for"), "bad_answer", cost);
    }
    return { id: id, ok: true, text: text, cached: item.cached, cost: cost, code: "", cells: cells };
  }
  const error = item.error || { code: "error", message: "no result" };
  return failed(id, shortError(error.code, error.message), error.code, cost);
}

/** The fields of an `extract` answer (a JSON object) in the order asked; [] when it is not that object. */
function fieldCells(fields: string[], answer: string): ExcelScript.CellValue[] {
  let parsed: { [name: string]: string | number | boolean | null } = {};
  try {
    parsed = JSON.parse(answer);
  } catch (error) {
    return [];
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    return [];
  }
  return fields.map((field) => {
    const value = parsed[field];
    return value === undefined || value === null ? "" : String(value).slice(0, CELL_TEXT_LIMIT);
  });
}

// ---- Background job (very large ranges) -------------------------------------------------------------------------

async function runJob(
  workbook: ExcelScript.Workbook,
  settings: Settings,
  rows: Row[],
  writer: ColumnWriter
): Promise<RowOutcome[]> {
  let jobId = settings.jobId;
  if (jobId === "") {
    const created = await sendWithRetries(settings, "POST", "/api/v1/jobs", requestBody(settings, rows), newRunId());
    if (created.status !== 202 && created.status !== 200 && created.status !== 201) {
      return failAll(rows, writer, errorText(created));
    }
    const job: JobStatusResponse = JSON.parse(created.body);
    jobId = job.id || created.location.replace(/\/+$/, "").split("/").pop() || "";
    // A run stopped while it waits (a closed tab, a time limit) picks the same job up again when run once more.
    rememberJob(workbook, jobId);
    console.log(`djllm: job ${jobId} started for ${rows.length} rows`);
  } else {
    console.log(`djllm: collecting job ${jobId}`);
  }
  let jobError: ApiErrorDetail | null = null;
  while (true) {
    const polled = await sendWithRetries(settings, "GET", `/api/v1/jobs/${encodeURIComponent(jobId)}`, null, "");
    if (polled.status !== 200 && polled.status !== 202) {
      // 202: still running (with Retry-After); 200: finished
      return failAll(rows, writer, errorText(polled));
    }
    const job: JobStatusResponse = JSON.parse(polled.body);
    console.log(`job ${jobId}: ${job.status}, ${job.done}/${job.total} done, ${job.failed} failed`);
    jobError = job.error || null;
    if (polled.status === 200 || JOB_FINISHED.indexOf(job.status) >= 0) {
      break;
    }
    const eta = job.eta_seconds !== null ? job.eta_seconds / 4 : 2;
    const wait = polled.retryAfterSeconds !== null ? polled.retryAfterSeconds : eta;
    await sleep(clamp(wait, 1, JOB_POLL_MAX_SECONDS) * 1000);
  }
  const path = `/api/v1/jobs/${encodeURIComponent(jobId)}/results?format=json`;
  const fetched = await sendWithRetries(settings, "GET", path, null, "");
  if (fetched.status !== 200) {
    return failAll(rows, writer, errorText(fetched));
  }
  const parsed: JobResultsResponse = JSON.parse(fetched.body);
  const byId: { [id: string]: BatchResultItem } = {};
  parsed.results.forEach((item) => {
    byId[item.id] = item;
  });
  const outcomes = rows.map((row) => {
    const item = byId[row.id];
    if (item && item.status !== "ok" && !item.error) {
      // a row the job never ran (cancelled, or stopped by a job-wide error)
      item.error = jobError || { code: item.status, message: "the job did not run this row" };
    }
    return outcomeOf(settings, row.id, item);
  });
  for (let i = 0; i < rows.length; i += 1000) {
    writer.write(rows.slice(i, i + 1000), outcomes.slice(i, i + 1000));
  }
  rememberJob(workbook, "");
  return outcomes;
}

function rememberJob(workbook: ExcelScript.Workbook, jobId: string): void {
  const sheet = workbook.getWorksheet(CONFIG_SHEET);
  const used = sheet ? sheet.getUsedRange(true) : undefined;
  if (!sheet || !used) {
    return;
  }
  const keys = used.getColumn(0).getValues();
  let row = keys.findIndex((cells) => cellText(cells[0]).toLowerCase() === "job_id");
  if (row < 0) {
    row = used.getRowCount();
  }
  used.getCell(row, 0).getResizedRange(0, 1).setValues([["job_id", asText(jobId)]]);
}

function failAll(rows: Row[], writer: ColumnWriter, text: string): RowOutcome[] {
  const outcomes = rows.map((row) => failed(row.id, text, "request", 0));
  writer.write(rows, outcomes);
  return outcomes;
}

// ---- HTTP -------------------------------------------------------------------------------------------------------

/** One request, repeated on 429, 502-504 and network errors, waiting `Retry-After` when the server sends one. The
 * same Idempotency-Key goes with every repeat, so a batch the server did finish is answered again, not re-billed. */
async function sendWithRetries(
  settings: Settings,
  method: string,
  path: string,
  body: BatchRequest | null,
  idempotencyKey: string
): Promise<HttpOutcome> {
  let outcome: HttpOutcome = { status: 0, body: "", retryAfterSeconds: null, location: "" };
  for (let attempt = 1; attempt <= settings.maxAttempts; attempt++) {
    outcome = await send(settings, method, path, body, idempotencyKey);
    if (outcome.status !== 0 && RETRYABLE_STATUS.indexOf(outcome.status) < 0) {
      return outcome;
    }
    if (attempt < settings.maxAttempts) {
      const wait =
        outcome.retryAfterSeconds !== null
          ? Math.min(outcome.retryAfterSeconds, MAX_WAIT_SECONDS)
          : backoffSeconds(attempt);
      console.log(`${method} ${path}: ${outcome.status || "no answer"}, retrying in ${wait.toFixed(1)} s`);
      await sleep(wait * 1000);
    }
  }
  return outcome;
}

async function send(
  settings: Settings,
  method: string,
  path: string,
  body: BatchRequest | null,
  idempotencyKey: string
): Promise<HttpOutcome> {
  const headers: { [name: string]: string } = { Authorization: `Bearer ${settings.token}` };
  if (body !== null) {
    headers["Content-Type"] = "application/json";
  }
  if (idempotencyKey !== "") {
    headers["Idempotency-Key"] = idempotencyKey;
  }
  try {
    const response = await fetch(settings.url + path, {
      method: method,
      headers: headers,
      body: body !== null ? JSON.stringify(body) : undefined,
    });
    return {
      status: response.status,
      body: await response.text(),
      retryAfterSeconds: parseRetryAfter(response.headers.get("Retry-After")),
      location: response.headers.get("Location") || "",
    };
  } catch (error) {
    console.log(`${method} ${path} failed: ${String(error)}`);
    return { status: 0, body: String(error), retryAfterSeconds: null, location: "" };
  }
}

function parseRetryAfter(value: string | null): number | null {
  if (value === null || value.trim() === "") {
    return null;
  }
  const seconds = Number(value);
  if (!isNaN(seconds)) {
    return Math.max(seconds, 0);
  }
  const date = Date.parse(value); // the HTTP-date form
  return isNaN(date) ? null : Math.max((date - Date.now()) / 1000, 0);
}

/** "#ERROR code: message" from djllm's error body, or the HTTP status when the body is not djllm's. */
function errorText(outcome: HttpOutcome): string {
  if (outcome.status === 0) {
    return shortError("network", outcome.body);
  }
  try {
    const parsed: ApiErrorResponse = JSON.parse(outcome.body);
    if (parsed && parsed.error && parsed.error.code) {
      return shortError(parsed.error.code, parsed.error.message);
    }
  } catch (error) {
    // not JSON (a proxy's error page): fall through
  }
  return shortError(`http_${outcome.status}`, outcome.body);
}

function shortError(code: string, message: string): string {
  const text = `#ERROR ${code}: ${message}`.replace(/\s+/g, " ");
  return text.length > ERROR_TEXT_LIMIT ? `${text.slice(0, ERROR_TEXT_LIMIT - 1)}…` : text;
}

// ---- Small helpers ----------------------------------------------------------------------------------------------

/** What to hand `setValues` so that Excel stores text as the text it is and never runs it: a model's answer (or
 * anything read back) that starts with "=", "+", "-" or "@" would be a formula (`=HYPERLINK(...)` sending a
 * neighbouring cell away), and a leading tab or CR is dropped before Excel decides. A leading apostrophe makes the
 * rest text and is not shown, so text that starts with an apostrophe gets one more to keep its own. */
function asText(value: ExcelScript.CellValue): ExcelScript.CellValue {
  if (typeof value === "string" && value.length > 0 && FORMULA_START.indexOf(value.charAt(0)) >= 0) {
    return `'${value}`;
  }
  return value;
}

/** Keeps the output column's values in memory and writes one contiguous block per finished chunk: one call to
 * Excel per chunk instead of one per cell (Office Scripts' main performance rule). */
class ColumnWriter {
  private output: ExcelScript.Range;
  private values: ExcelScript.CellValue[][];

  constructor(output: ExcelScript.Range, values: ExcelScript.CellValue[][]) {
    this.output = output;
    this.values = values;
  }

  write(rows: Row[], outcomes: RowOutcome[]): void {
    if (rows.length === 0) {
      return;
    }
    rows.forEach((row, i) => {
      const width = this.values[row.offset].length;
      const cells = outcomes[i].cells;
      // one cell per output column: the answer (or each field), or the error text in every one of them
      this.values[row.offset] = cells.length === width ? cells : this.values[row.offset].map(() => outcomes[i].text);
    });
    const first = rows[0].offset;
    const last = rows[rows.length - 1].offset;
    // Every value of the block goes through asText: the answers, and the cells between them written back as read.
    const block = this.values.slice(first, last + 1).map((cells) => cells.map((value) => asText(value)));
    this.output.getCell(first, 0).getResizedRange(last - first, this.output.getColumnCount() - 1).setValues(block);
  }
}

/** Runs the tasks, at most `limit` at a time, in order of start. */
async function runPool(tasks: (() => Promise<void>)[], limit: number): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const task = tasks[next];
      next += 1;
      await task();
    }
  };
  const workers: Promise<void>[] = [];
  for (let i = 0; i < Math.min(limit, tasks.length); i++) {
    workers.push(worker());
  }
  await Promise.all(workers);
}

function sleep(ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    setTimeout(resolve, ms);
  });
}

/** 1, 2, 4, 8 … seconds (at most 30), plus up to 25 % jitter so parallel chunks do not retry in step. */
function backoffSeconds(attempt: number): number {
  const base = Math.min(Math.pow(2, attempt - 1), 30);
  return base * (1 + Math.random() * 0.25);
}

function newRunId(): string {
  return `xl-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}

function cellText(value: ExcelScript.CellValue | undefined): string {
  return value === undefined || value === null ? "" : String(value).trim();
}

function toInt(text: string, fallback: number): number {
  const value = parseInt(text, 10);
  return isNaN(value) ? fallback : value;
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(Math.max(value, low), high);
}
