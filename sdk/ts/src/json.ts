/**
 * A strict RFC 8259 JSON parser that keeps the source text of every number.
 *
 * Why not `JSON.parse`: it turns `1` and `1.0` into the same value, but the contract says an
 * `epoch` written as `1.0` is malformed, and integers beyond 2^53 lose digits. Keeping the raw text
 * lets the PCS decoder check integer-ness and read big integers exactly. The parser also rejects
 * what the Rust server rejects: lone surrogate escapes, control characters in strings, numbers that
 * overflow a double.
 *
 * @module
 */

/** A JSON number with the exact text it was written as. */
export class JsonNumber {
  /** The number's source text, e.g. `1.0`, `-0`, `1e400`. */
  readonly raw: string;

  constructor(raw: string) {
    this.raw = raw;
  }

  /** True when written without fraction or exponent (`1`, `-3`), the only form integers accept. */
  get isIntegerLiteral(): boolean {
    return !/[.eE]/.test(this.raw);
  }

  /** The nearest double (correctly rounded by `Number()`); may be +-Infinity on overflow. */
  get value(): number {
    return Number(this.raw);
  }
}

/** A parsed JSON value; objects have a null prototype so keys like `__proto__` stay plain data. */
export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;

/** A parsed JSON object. Duplicate keys: the last one wins, as with `JSON.parse`. */
export interface JsonObject {
  [key: string]: JsonValue;
}

/** A syntax error, with the top-level key whose value contained it (null outside any key). */
export class JsonSyntaxError extends Error {
  /** Top-level object key being parsed when the error occurred, or null. */
  readonly key: string | null;
  /** Offset (UTF-16 code units) into the text. */
  readonly position: number;

  constructor(message: string, key: string | null, position: number) {
    super(key === null ? `${message} at position ${position}` : `${message} in \`${key}\` at position ${position}`);
    this.name = "JsonSyntaxError";
    this.key = key;
    this.position = position;
  }
}

/** Nesting bound: deeper documents are rejected instead of exhausting the stack. */
const MAX_DEPTH = 128;

const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** Options of {@link parseJson}. */
export interface ParseJsonOptions {
  /**
   * Refuse an object that repeats a key, as Rust's serde does for its typed records (audit leaves,
   * proof bundles). Off by default: the last one wins, as with `JSON.parse` and the PCS decoder.
   */
  rejectDuplicateKeys?: boolean;
}

class Parser {
  private pos = 0;
  private topKey: string | null = null;

  constructor(
    private readonly text: string,
    private readonly rejectDuplicateKeys = false,
  ) {}

  parseDocument(): JsonValue {
    this.skipWhitespace();
    const value = this.parseValue(0);
    this.skipWhitespace();
    if (this.pos !== this.text.length) {
      this.fail("unexpected text after the JSON value");
    }
    return value;
  }

  private fail(message: string): never {
    throw new JsonSyntaxError(message, this.topKey, this.pos);
  }

  private skipWhitespace(): void {
    while (this.pos < this.text.length) {
      const c = this.text.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) {
        return;
      }
      this.pos++;
    }
  }

  private parseValue(depth: number): JsonValue {
    if (depth > MAX_DEPTH) {
      this.fail("JSON nested too deeply");
    }
    const c = this.text[this.pos];
    switch (c) {
      case "{":
        return this.parseObject(depth);
      case "[":
        return this.parseArray(depth);
      case '"':
        return this.parseString();
      case "t":
        return this.parseLiteral("true", true);
      case "f":
        return this.parseLiteral("false", false);
      case "n":
        return this.parseLiteral("null", null);
      default:
        return this.parseNumber();
    }
  }

  private parseLiteral<T extends JsonValue>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) {
      this.fail("invalid JSON value");
    }
    this.pos += word.length;
    return value;
  }

  private parseNumber(): JsonNumber {
    NUMBER.lastIndex = this.pos;
    const match = NUMBER.exec(this.text);
    if (match === null) {
      this.fail(this.pos >= this.text.length ? "unexpected end of JSON" : "invalid JSON value");
    }
    const raw = match[0];
    const next = this.text[this.pos + raw.length];
    if (next !== undefined && /[0-9.eE+-]/.test(next)) {
      this.fail("invalid number");
    }
    if (!Number.isFinite(Number(raw))) {
      this.fail("number out of range");
    }
    this.pos += raw.length;
    return new JsonNumber(raw);
  }

  private parseString(): string {
    this.pos++; // opening quote
    let out = "";
    let chunkStart = this.pos;
    for (;;) {
      if (this.pos >= this.text.length) {
        this.fail("unterminated string");
      }
      const c = this.text.charCodeAt(this.pos);
      if (c === 0x22) {
        out += this.text.slice(chunkStart, this.pos);
        this.pos++;
        break;
      }
      if (c < 0x20) {
        this.fail("control character in string");
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        // Source text comes from decoded UTF-8, but a JS caller may hand us a broken string.
        const pairOk =
          c <= 0xdbff && this.pos + 1 < this.text.length && isLowSurrogate(this.text.charCodeAt(this.pos + 1));
        if (!pairOk) {
          this.fail("lone surrogate in string");
        }
        this.pos += 2;
        continue;
      }
      if (c !== 0x5c) {
        this.pos++;
        continue;
      }
      out += this.text.slice(chunkStart, this.pos);
      this.pos++;
      const e = this.text[this.pos];
      this.pos++;
      switch (e) {
        case '"':
          out += '"';
          break;
        case "\\":
          out += "\\";
          break;
        case "/":
          out += "/";
          break;
        case "b":
          out += "\b";
          break;
        case "f":
          out += "\f";
          break;
        case "n":
          out += "\n";
          break;
        case "r":
          out += "\r";
          break;
        case "t":
          out += "\t";
          break;
        case "u": {
          const unit = this.readHex4();
          if (unit >= 0xd800 && unit <= 0xdbff) {
            if (this.text.startsWith("\\u", this.pos)) {
              this.pos += 2;
              const low = this.readHex4();
              if (!isLowSurrogate(low)) {
                this.fail("lone surrogate in \\u escape");
              }
              out += String.fromCharCode(unit, low);
            } else {
              this.fail("lone surrogate in \\u escape");
            }
          } else if (isLowSurrogate(unit)) {
            this.fail("lone surrogate in \\u escape");
          } else {
            out += String.fromCharCode(unit);
          }
          break;
        }
        default:
          this.pos--;
          this.fail("invalid escape in string");
      }
      chunkStart = this.pos;
    }
    return out;
  }

  private readHex4(): number {
    const hex = this.text.slice(this.pos, this.pos + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(hex)) {
      this.fail("invalid \\u escape");
    }
    this.pos += 4;
    return parseInt(hex, 16);
  }

  private parseArray(depth: number): JsonValue[] {
    this.pos++;
    const items: JsonValue[] = [];
    this.skipWhitespace();
    if (this.text[this.pos] === "]") {
      this.pos++;
      return items;
    }
    for (;;) {
      this.skipWhitespace();
      items.push(this.parseValue(depth + 1));
      this.skipWhitespace();
      const c = this.text[this.pos];
      this.pos++;
      if (c === "]") {
        return items;
      }
      if (c !== ",") {
        this.pos--;
        this.fail("expected ',' or ']' in array");
      }
    }
  }

  private parseObject(depth: number): JsonObject {
    this.pos++;
    const object: JsonObject = Object.create(null) as JsonObject;
    this.skipWhitespace();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return object;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.pos] !== '"') {
        this.fail("expected a string key in object");
      }
      const key = this.parseString();
      if (this.rejectDuplicateKeys && key in object) {
        this.fail(`duplicate key ${JSON.stringify(key)} in object`);
      }
      this.skipWhitespace();
      if (this.text[this.pos] !== ":") {
        this.fail("expected ':' after object key");
      }
      this.pos++;
      this.skipWhitespace();
      const outerKey = this.topKey;
      if (depth === 0) {
        this.topKey = key;
      }
      object[key] = this.parseValue(depth + 1);
      this.topKey = outerKey;
      this.skipWhitespace();
      const c = this.text[this.pos];
      this.pos++;
      if (c === "}") {
        return object;
      }
      if (c !== ",") {
        this.pos--;
        this.fail("expected ',' or '}' in object");
      }
    }
  }
}

function isLowSurrogate(unit: number): boolean {
  return unit >= 0xdc00 && unit <= 0xdfff;
}

/**
 * Parses JSON text, keeping number source text (see {@link JsonNumber}).
 * @throws JsonSyntaxError on any deviation from RFC 8259 (and on a repeated key, when asked).
 */
export function parseJson(text: string, options: ParseJsonOptions = {}): JsonValue {
  return new Parser(text, options.rejectDuplicateKeys === true).parseDocument();
}

/** True for a parsed JSON object (not an array, not null). */
export function isJsonObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof JsonNumber);
}

/**
 * Serializes a plain JS value as compact JSON, writing `bigint` as an exact integer (which
 * `JSON.stringify` refuses) so epochs beyond 2^53 survive. `undefined` object members are skipped.
 * This is the transport form of a PCS; the signed bytes come from the canonical module instead.
 * @throws TypeError for non-finite numbers and values JSON cannot hold.
 */
export function stringifyJson(value: unknown): string {
  if (value === null || typeof value === "boolean" || typeof value === "string") {
    return JSON.stringify(value);
  }
  if (typeof value === "number") {
    if (!Number.isFinite(value)) {
      throw new TypeError(`${value} cannot appear in JSON`);
    }
    return JSON.stringify(value);
  }
  if (typeof value === "bigint") {
    return value.toString();
  }
  if (value instanceof JsonNumber) {
    return value.raw;
  }
  if (Array.isArray(value)) {
    return `[${value.map((item) => stringifyJson(item)).join(",")}]`;
  }
  if (typeof value === "object") {
    const members = Object.entries(value)
      .filter(([, item]) => item !== undefined)
      .map(([key, item]) => `${JSON.stringify(key)}:${stringifyJson(item)}`);
    return `{${members.join(",")}}`;
  }
  throw new TypeError(`a ${typeof value} cannot appear in JSON`);
}
