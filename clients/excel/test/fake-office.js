/*
 * A stand-in for office.js in the add-in's browser tests (served in place of Microsoft's CDN file, so nothing leaves
 * the machine). It provides what the add-in uses, behaving as in Excel's shared runtime:
 *
 *   Office.onReady(callback)                    resolves at once, host Excel
 *   OfficeRuntime.storage                       getItem / setItem / removeItem / getKeys, in memory, shared by the
 *                                               task pane and the functions (one page: the shared runtime)
 *   CustomFunctions.associate(id, fn)           registers a function as Excel does at load
 *   CustomFunctions.Error, CustomFunctions.ErrorCode
 *
 * and, for the test, Excel's side of a cell:
 *
 *   await __excel.calculate("PROMPT", ["text", "sentiment"])
 *       -> {value: "..."} or {error: "#N/A", message: "THROTTLED: retry"}: what the cell would show
 *   await __excel.calculate("EACH", [[["a"], ["b"]], "translate"])
 *       -> {value: [["..."], [{error: "#N/A", message: "..."}]]}: a spilled array, an error per cell
 */
(function (root) {
  "use strict";

  var store = new Map();
  var functions = {};

  function CustomFunctionsError(code, message) {
    this.code = code;
    this.message = message || "";
  }
  CustomFunctionsError.prototype = Object.create(Error.prototype);
  CustomFunctionsError.prototype.name = "CustomFunctions.Error";

  root.CustomFunctions = {
    associate: function (id, fn) {
      functions[id] = fn;
    },
    Error: CustomFunctionsError,
    ErrorCode: {
      invalidValue: "#VALUE!",
      notAvailable: "#N/A",
      divisionByZero: "#DIV/0!",
      invalidNumber: "#NUM!",
      nullReference: "#NULL!",
      invalidName: "#NAME?",
      invalidReference: "#REF!",
      busy: "#BUSY!",
    },
  };

  root.OfficeRuntime = {
    storage: {
      getItem: function (key) {
        return Promise.resolve(store.has(key) ? store.get(key) : null);
      },
      setItem: function (key, value) {
        store.set(key, String(value));
        return Promise.resolve();
      },
      removeItem: function (key) {
        store.delete(key);
        return Promise.resolve();
      },
      getKeys: function () {
        return Promise.resolve(Array.from(store.keys()));
      },
    },
  };

  root.Office = {
    HostType: { Excel: "Excel" },
    onReady: function (callback) {
      var info = { host: "Excel", platform: "OfficeOnline" };
      return Promise.resolve().then(function () {
        if (callback) callback(info);
        return info;
      });
    },
  };

  // Excel's JavaScript API, for what the task pane does with the selection: Excel.run(context =>
  // context.workbook.getSelectedRange()), load(["values", "formulas", "address"]), context.sync(), and writing
  // `formulas` or `values`. The test sets __excel.selection = {address, values, formulas}; a write lands in
  // __excel.selection as Excel would take it (a leading apostrophe: text, not shown; "=…": a formula, recorded in
  // __excel.entered unless the cell already held that formula).
  function SelectedRange(selection) {
    this._selection = selection;
    this._pending = null;
  }
  SelectedRange.prototype.load = function () {
    this.address = this._selection.address;
    this.values = this._selection.values.map(function (row) {
      return row.slice();
    });
    this._formulas = this._selection.formulas.map(function (row) {
      return row.slice();
    });
    return this;
  };
  function typed(selection, written) {
    selection.values = written.map(function (row, r) {
      return row.map(function (cell, c) {
        if (typeof cell === "string" && cell.charAt(0) === "'") {
          selection.formulas[r][c] = cell.slice(1);
          return cell.slice(1);
        }
        if (typeof cell === "string" && /^[=+\-@]/.test(cell) && !isFinite(Number(cell))) {
          if (selection.formulas[r][c] !== cell) root.__excel.entered.push(cell);
          selection.formulas[r][c] = cell;
          return selection.values[r][c];
        }
        selection.formulas[r][c] = cell;
        return cell;
      });
    });
  }
  Object.defineProperty(SelectedRange.prototype, "formulas", {
    get: function () {
      return this._formulas;
    },
    set: function (value) {
      this._pending = value; // written at the next context.sync(), as Excel does
      this._formulas = value;
    },
  });
  root.Excel = {
    run: async function (callback) {
      var range = null;
      var context = {
        workbook: {
          getSelectedRange: function () {
            range = new SelectedRange(root.__excel.selection);
            return range;
          },
        },
        sync: async function () {
          if (range && range._pending) {
            typed(root.__excel.selection, range._pending);
            root.__excel.writes += 1;
            range._pending = null;
          }
        },
      };
      return callback(context);
    },
  };

  /** A result as the cells show it: a spilled array's errors per cell, an error as {error, message}. */
  function shown(value) {
    if (value instanceof CustomFunctionsError) return { error: value.code, message: value.message };
    if (!Array.isArray(value)) return value;
    return value.map(function (row) {
      return row.map(function (cell) {
        return cell instanceof CustomFunctionsError ? { error: cell.code, message: cell.message } : cell;
      });
    });
  }

  root.__excel = {
    selection: { address: "Sheet1!A1", values: [[""]], formulas: [[""]] },
    entered: [],
    writes: 0,
    functions: functions,
    storage: store,
    /** Calls a registered function the way a cell does; an exception becomes the cell's error. */
    streamed: [], // every setResult of a streaming function: {id, value} as the cells showed it
    calculate: async function (id, args) {
      if (!functions[id]) return { error: "#NAME?", message: "no function " + id };
      var fn = functions[id];
      if (fn.streaming) {
        // Excel passes every declared parameter (null when omitted), then the invocation.
        args = args.slice();
        while (args.length < fn.length - 1) args.push(null);
        args.push({
          setResult: function (value) {
            root.__excel.streamed.push({ id: id, value: shown(value) });
          },
        });
      }
      try {
        return { value: shown(await fn.apply(null, args)) };
      } catch (error) {
        if (error instanceof CustomFunctionsError) return { error: error.code, message: error.message };
        return { error: "#VALUE!", message: String(error) };
      }
    },
  };
})(self);
