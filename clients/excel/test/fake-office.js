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

  root.__excel = {
    functions: functions,
    storage: store,
    /** Calls a registered function the way a cell does; an exception becomes the cell's error. */
    calculate: async function (id, args) {
      if (!functions[id]) return { error: "#NAME?", message: "no function " + id };
      try {
        var value = await functions[id].apply(null, args);
        if (Array.isArray(value)) {
          // A spilled array: each cell a value or its own error, as Excel shows them.
          value = value.map(function (row) {
            return row.map(function (cell) {
              return cell instanceof CustomFunctionsError ? { error: cell.code, message: cell.message } : cell;
            });
          });
        }
        return { value: value };
      } catch (error) {
        if (error instanceof CustomFunctionsError) return { error: error.code, message: error.message };
        return { error: "#VALUE!", message: String(error) };
      }
    },
  };
})(self);
