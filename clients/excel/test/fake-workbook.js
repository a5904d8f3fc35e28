/*
 * An in-memory stand-in for Excel's `ExcelScript.Workbook`: exactly the members declared in ../excelscript.d.ts,
 * with Excel's behaviour where the script depends on it (an empty cell reads as "", `setValues` needs the range's
 * exact dimensions and only takes strings, numbers and booleans, `getUsedRange` is undefined on an empty sheet).
 *
 *   const wb = new FakeWorkbook({
 *     sheets: { Sheet1: [["Comment"], ["great"], ["awful"]], djllm: [["url", "http://..."], ["token", "djl_..."]] },
 *     selection: "Sheet1!A2:A3",            // what getSelectedRange() returns
 *     names: { DJLLM_URL: "djllm!B1" },      // workbook names -> ranges
 *     active: "Sheet1",
 *   });
 *   wb.toJSON()   // { sheets: { name: rows from A1 to the last used cell }, setValuesCalls: N, formulas: [...] }
 */
"use strict";

const MAX_ROWS = 1048576;
const MAX_COLUMNS = 16384;

function columnIndex(letters) {
  let n = 0;
  for (const ch of letters.toUpperCase()) {
    n = n * 26 + (ch.charCodeAt(0) - 64);
  }
  return n - 1;
}

function columnLetters(index) {
  let n = index + 1;
  let out = "";
  while (n > 0) {
    const rem = (n - 1) % 26;
    out = String.fromCharCode(65 + rem) + out;
    n = Math.floor((n - 1) / 26);
  }
  return out;
}

/** "B2", "B2:C9", "B:B", "$B$2" -> {row, column, rows, columns} (zero-based). */
function parseAddress(address) {
  const clean = address.replace(/\$/g, "").trim();
  const cell = /^([A-Za-z]{1,3})(\d+)$/;
  const col = /^([A-Za-z]{1,3})$/;
  const [a, b = a] = clean.split(":");
  let m1 = cell.exec(a);
  let m2 = cell.exec(b);
  if (m1 && m2) {
    const r1 = Number(m1[2]) - 1;
    const r2 = Number(m2[2]) - 1;
    const c1 = columnIndex(m1[1]);
    const c2 = columnIndex(m2[1]);
    return {
      row: Math.min(r1, r2),
      column: Math.min(c1, c2),
      rows: Math.abs(r2 - r1) + 1,
      columns: Math.abs(c2 - c1) + 1,
    };
  }
  m1 = col.exec(a);
  m2 = col.exec(b);
  if (m1 && m2) {
    const c1 = columnIndex(m1[1]);
    const c2 = columnIndex(m2[1]);
    return { row: 0, column: Math.min(c1, c2), rows: MAX_ROWS, columns: Math.abs(c2 - c1) + 1 };
  }
  throw new Error(`fake workbook: cannot parse address ${JSON.stringify(address)}`);
}

function checkValue(value) {
  const kind = typeof value;
  if (kind !== "string" && kind !== "number" && kind !== "boolean") {
    throw new Error(`fake workbook: Excel cannot store ${value === null ? "null" : kind} in a cell`);
  }
  if (kind === "string" && value.length > 32767) {
    throw new Error("fake workbook: a cell holds at most 32,767 characters");
  }
}

class FakeWorksheet {
  constructor(workbook, name, rows) {
    this.workbook = workbook;
    this.name = name;
    this.cells = new Map(); // "r,c" -> value
    (rows || []).forEach((cells, r) =>
      cells.forEach((value, c) => {
        if (value !== "" && value !== null && value !== undefined) {
          checkValue(value);
          this.cells.set(`${r},${c}`, value);
        }
      })
    );
  }

  getName() {
    return this.name;
  }

  getRange(address) {
    if (address === undefined) {
      return new FakeRange(this, 0, 0, MAX_ROWS, MAX_COLUMNS);
    }
    const a = parseAddress(address);
    return new FakeRange(this, a.row, a.column, a.rows, a.columns);
  }

  getUsedRange(valuesOnly) {
    void valuesOnly; // values are all this fake has
    let top = Infinity;
    let left = Infinity;
    let bottom = -1;
    let right = -1;
    for (const key of this.cells.keys()) {
      const [r, c] = key.split(",").map(Number);
      top = Math.min(top, r);
      left = Math.min(left, c);
      bottom = Math.max(bottom, r);
      right = Math.max(right, c);
    }
    if (bottom < 0) {
      return undefined;
    }
    return new FakeRange(this, top, left, bottom - top + 1, right - left + 1);
  }

  read(r, c) {
    const value = this.cells.get(`${r},${c}`);
    return value === undefined ? "" : value;
  }

  /** A value entered through setValues/setValue, as Excel takes it: a leading apostrophe marks text and is not
   * kept; text starting with "=", "+", "-" or "@" that is not a number is entered as a formula, which Excel would
   * run — recorded in `workbook.formulas` (the script must never cause one). */
  write(r, c, value) {
    checkValue(value);
    if (typeof value === "string") {
      if (value.startsWith("'")) {
        value = value.slice(1);
      } else if (/^[=+\-@]/.test(value) && !isFinite(Number(value))) {
        this.workbook.formulas.push({ cell: `${this.name}!${columnLetters(c)}${r + 1}`, formula: value });
      }
    }
    if (value === "") {
      this.cells.delete(`${r},${c}`);
    } else {
      this.cells.set(`${r},${c}`, value);
    }
  }

  /** Rows from A1 to the last used cell. */
  toRows() {
    const used = this.getUsedRange();
    if (!used) {
      return [];
    }
    const rows = [];
    for (let r = 0; r < used.row + used.rows; r++) {
      const row = [];
      for (let c = 0; c < used.column + used.columns; c++) {
        row.push(this.read(r, c));
      }
      rows.push(row);
    }
    return rows;
  }
}

class FakeRange {
  constructor(sheet, row, column, rows, columns) {
    if (row < 0 || column < 0 || rows < 1 || columns < 1 || row + rows > MAX_ROWS || column + columns > MAX_COLUMNS) {
      throw new Error(`fake workbook: range out of the sheet (row ${row}, column ${column}, ${rows}x${columns})`);
    }
    this.sheet = sheet;
    this.row = row;
    this.column = column;
    this.rows = rows;
    this.columns = columns;
  }

  getAddress() {
    const first = `${columnLetters(this.column)}${this.row + 1}`;
    const last = `${columnLetters(this.column + this.columns - 1)}${this.row + this.rows}`;
    return `${this.sheet.name}!${first === last ? first : `${first}:${last}`}`;
  }

  getWorksheet() {
    return this.sheet;
  }

  getRowIndex() {
    return this.row;
  }

  getColumnIndex() {
    return this.column;
  }

  getRowCount() {
    return this.rows;
  }

  getColumnCount() {
    return this.columns;
  }

  getValues() {
    if (this.rows * this.columns > 5_000_000) {
      throw new Error("fake workbook: a range is limited to five million cells");
    }
    const out = [];
    for (let r = 0; r < this.rows; r++) {
      const row = [];
      for (let c = 0; c < this.columns; c++) {
        row.push(this.sheet.read(this.row + r, this.column + c));
      }
      out.push(row);
    }
    return out;
  }

  getValue() {
    return this.sheet.read(this.row, this.column);
  }

  setValues(values) {
    if (!Array.isArray(values) || values.length !== this.rows || values.some((row) => row.length !== this.columns)) {
      const got = Array.isArray(values) ? `${values.length}x${(values[0] || []).length}` : typeof values;
      throw new Error(`fake workbook: setValues on ${this.getAddress()} needs ${this.rows}x${this.columns}, got ${got}`);
    }
    values.forEach((row) => row.forEach(checkValue));
    values.forEach((row, r) => row.forEach((value, c) => this.sheet.write(this.row + r, this.column + c, value)));
    this.sheet.workbook.setValuesCalls += 1;
  }

  setValue(value) {
    this.sheet.write(this.row, this.column, value);
    this.sheet.workbook.setValuesCalls += 1;
  }

  getCell(row, column) {
    return new FakeRange(this.sheet, this.row + row, this.column + column, 1, 1);
  }

  getOffsetRange(rowOffset, columnOffset) {
    return new FakeRange(this.sheet, this.row + rowOffset, this.column + columnOffset, this.rows, this.columns);
  }

  getResizedRange(deltaRows, deltaColumns) {
    return new FakeRange(this.sheet, this.row, this.column, this.rows + deltaRows, this.columns + deltaColumns);
  }

  getColumn(column) {
    if (column < 0 || column >= this.columns) {
      throw new Error(`fake workbook: column ${column} is outside ${this.getAddress()}`);
    }
    return new FakeRange(this.sheet, this.row, this.column + column, this.rows, 1);
  }
}

class FakeNamedItem {
  constructor(workbook, name, address) {
    this.workbook = workbook;
    this.name = name;
    this.address = address;
  }

  getName() {
    return this.name;
  }

  getRange() {
    return this.workbook.rangeAt(this.address);
  }
}

class FakeWorkbook {
  constructor({ sheets = {}, selection = null, names = {}, active = null } = {}) {
    this.sheets = new Map();
    this.setValuesCalls = 0;
    this.formulas = [];
    Object.entries(sheets).forEach(([name, rows]) => this.sheets.set(name, new FakeWorksheet(this, name, rows)));
    this.names = new Map(Object.entries(names).map(([name, address]) => [name, new FakeNamedItem(this, name, address)]));
    this.active = active || (this.sheets.size ? this.sheets.keys().next().value : null);
    this.selection = selection;
  }

  /** "Sheet1!B2:B9" (or "B2:B9" on the active sheet). */
  rangeAt(address) {
    const bang = address.lastIndexOf("!");
    const sheetName = bang >= 0 ? address.slice(0, bang).replace(/^'|'$/g, "") : this.active;
    const sheet = this.sheets.get(sheetName);
    if (!sheet) {
      throw new Error(`fake workbook: no sheet ${JSON.stringify(sheetName)}`);
    }
    return sheet.getRange(bang >= 0 ? address.slice(bang + 1) : address);
  }

  getWorksheet(name) {
    return this.sheets.get(name);
  }

  getNamedItem(name) {
    return this.names.get(name);
  }

  getSelectedRange() {
    if (!this.selection) {
      throw new Error("fake workbook: nothing is selected");
    }
    return this.rangeAt(this.selection);
  }

  getActiveWorksheet() {
    return this.sheets.get(this.active);
  }

  toJSON() {
    const sheets = {};
    for (const [name, sheet] of this.sheets) {
      sheets[name] = sheet.toRows();
    }
    return { sheets, setValuesCalls: this.setValuesCalls, formulas: this.formulas };
  }
}

module.exports = { FakeWorkbook, parseAddress, columnLetters };
