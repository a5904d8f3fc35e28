#!/usr/bin/env node
/*
 * Checks an Office Script for the rules Excel's Code Editor enforces on top of `tsc --strict` (implicit `any` is
 * already a tsc error): https://learn.microsoft.com/office/dev/scripts/develop/typescript-restrictions
 *
 *   - no explicit `any` (a type annotation, `as any`, `<any>`, a generic argument);
 *   - no `eval`;
 *   - `Excel`, `ExcelScript` and `console` are reserved: the script may not declare them;
 *   - only arrow functions as callbacks of Array methods (no `function` expressions, no function identifiers);
 *   - `main(workbook: ExcelScript.Workbook)` is declared at the top level.
 *
 * Usage: node check-office-script.js FILE.ts ...   Exit status 1 and one "file:line:col message" line per problem.
 */
"use strict";

const fs = require("fs");
const path = require("path");
const ts = require(path.join(__dirname, "..", "..", "node_modules", "typescript"));

const RESERVED = new Set(["Excel", "ExcelScript", "console"]);
const ARRAY_METHODS = new Set([
  "every",
  "filter",
  "find",
  "findIndex",
  "flatMap",
  "forEach",
  "map",
  "reduce",
  "reduceRight",
  "some",
  "sort",
]);

function check(file) {
  const text = fs.readFileSync(file, "utf8");
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2017, true, ts.ScriptKind.TS);
  const problems = [];
  const report = (node, message) => {
    const { line, character } = source.getLineAndCharacterOfPosition(node.getStart(source));
    problems.push(`${file}:${line + 1}:${character + 1} ${message}`);
  };
  let hasMain = false;

  const visit = (node) => {
    if (node.kind === ts.SyntaxKind.AnyKeyword) {
      report(node, "explicit `any` is not allowed in Office Scripts");
    }
    if (ts.isIdentifier(node) && node.text === "eval") {
      report(node, "`eval` is not supported in Office Scripts");
    }
    const declared =
      (ts.isVariableDeclaration(node) ||
        ts.isFunctionDeclaration(node) ||
        ts.isClassDeclaration(node) ||
        ts.isParameter(node) ||
        ts.isInterfaceDeclaration(node)) &&
      node.name &&
      ts.isIdentifier(node.name)
        ? node.name.text
        : null;
    if (declared && RESERVED.has(declared)) {
      report(node, `\`${declared}\` is a reserved identifier in Office Scripts`);
    }
    if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      ARRAY_METHODS.has(node.expression.name.text) &&
      node.arguments.length > 0
    ) {
      const callback = node.arguments[0];
      if (ts.isFunctionExpression(callback) || ts.isIdentifier(callback)) {
        report(callback, `pass an arrow function to .${node.expression.name.text}() (Office Scripts rule)`);
      }
    }
    if (ts.isFunctionDeclaration(node) && node.name && node.name.text === "main" && node.parent === source) {
      const first = node.parameters[0];
      hasMain = Boolean(first && first.type && first.type.getText(source) === "ExcelScript.Workbook");
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  if (!hasMain) {
    problems.push(`${file}:1:1 no top-level \`function main(workbook: ExcelScript.Workbook)\``);
  }
  return problems;
}

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write("usage: check-office-script.js FILE.ts ...\n");
  process.exit(2);
}
const problems = files.flatMap(check);
problems.forEach((line) => process.stdout.write(`${line}\n`));
process.exit(problems.length ? 1 : 0);
