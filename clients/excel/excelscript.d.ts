/**
 * The subset of Excel's Office Scripts API (the `ExcelScript` namespace) that `djllm.ts` uses, so that `tsc` can
 * check the script outside Excel. Signatures follow Microsoft's reference
 * (https://learn.microsoft.com/javascript/api/office-scripts/excelscript); anything the script does not call is
 * left out on purpose: a call to a method missing here fails the build instead of failing inside Excel.
 *
 * `tests/test_excel_office_script.py` runs the compiled script against `test/fake-workbook.js`, which implements
 * exactly these members.
 */
declare namespace ExcelScript {
  /** What a cell holds, as Office Scripts reads and writes it (an empty cell reads as ""). */
  type CellValue = string | number | boolean;

  interface Workbook {
    /** The worksheet with this name, or undefined. */
    getWorksheet(name: string): Worksheet | undefined;
    /** The workbook-scoped named item (Formulas > Name Manager) with this name, or undefined. */
    getNamedItem(name: string): NamedItem | undefined;
    /** The range the user has selected (the first area of a multi-area selection). */
    getSelectedRange(): Range;
    getActiveWorksheet(): Worksheet;
  }

  interface Worksheet {
    getName(): string;
    /** A range by A1 address on this sheet ("B2:B20", "B:B"). */
    getRange(address?: string): Range;
    /** The smallest range holding every used cell, or undefined for an empty sheet. */
    getUsedRange(valuesOnly?: boolean): Range | undefined;
  }

  interface NamedItem {
    getName(): string;
    /** The range the name refers to (undefined if it refers to a constant or formula instead). */
    getRange(): Range | undefined;
  }

  interface Range {
    getAddress(): string;
    getWorksheet(): Worksheet;
    /** Zero-based index of the first row / column of the range on its sheet. */
    getRowIndex(): number;
    getColumnIndex(): number;
    getRowCount(): number;
    getColumnCount(): number;
    getValues(): CellValue[][];
    /** The value of the top-left cell. */
    getValue(): CellValue;
    /** Writes every cell; the array must have exactly the range's dimensions. */
    setValues(values: CellValue[][]): void;
    setValue(value: CellValue): void;
    /** One cell, relative to the top-left cell of this range. */
    getCell(row: number, column: number): Range;
    /** A range of the same size, shifted by this many rows / columns. */
    getOffsetRange(rowOffset: number, columnOffset: number): Range;
    /** A range with the same top-left cell and this many more (or fewer) rows / columns. */
    getResizedRange(deltaRows: number, deltaColumns: number): Range;
    /** One column of this range (zero-based). */
    getColumn(column: number): Range;
  }
}
