/** Checks of identifiers, context labels and durations: the rules of the event schemas. */

import { ArgumentError } from "./errors.js";

export const IDENTIFIER_MAX = 128;
/** Letters, digits and `_ . : / @ + = -`; the first character is a letter or digit. */
export const IDENTIFIER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.:/@+=-]*$/;
export const PREFIX_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
export const MAX_CANDIDATES = 64;
export const CONTEXT_MAX_KEYS = 32;
export const CONTEXT_KEY_MAX = 64;
export const CONTEXT_VALUE_MAX = 256;

export type ContextValue = string | number | boolean;
export type Context = Readonly<Record<string, ContextValue>>;

export function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "function") return `function ${value.name || "(anonymous)"}`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

export function checkIdentifier(name: string, value: unknown): string {
  if (typeof value !== "string" || value.length === 0 || value.length > IDENTIFIER_MAX) {
    throw new ArgumentError(
      `${name} must be a string of 1-${IDENTIFIER_MAX} characters, got ${show(value)}`,
    );
  }
  if (!IDENTIFIER_PATTERN.test(value)) {
    throw new ArgumentError(
      `${name} ${show(value)} has characters outside letters, digits and _.:/@+=- ` +
        "(or does not start with a letter or digit)",
    );
  }
  return value;
}

export function checkPrefix(name: string, value: unknown): string {
  if (typeof value !== "string" || !PREFIX_PATTERN.test(value)) {
    throw new ArgumentError(
      `${name} ${show(value)} is invalid: use 1-100 letters, digits, '.', '_' or '-', ` +
        "starting with a letter or digit",
    );
  }
  return value;
}

/** A small flat object of labels: at most 32 keys, scalar values, strings up to 256 chars. */
export function checkContext(value: unknown): Context {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ArgumentError(`context must be a plain object of labels, got ${show(value)}`);
  }
  const entries = Object.entries(value);
  if (entries.length > CONTEXT_MAX_KEYS) {
    throw new ArgumentError(
      `context may hold at most ${CONTEXT_MAX_KEYS} labels, got ${entries.length}`,
    );
  }
  for (const [key, v] of entries) {
    if (key.length > CONTEXT_KEY_MAX || !IDENTIFIER_PATTERN.test(key)) {
      throw new ArgumentError(
        `context key ${show(key)} must be 1-${CONTEXT_KEY_MAX} letters, digits or _.:/@+=-`,
      );
    }
    if (typeof v === "string") {
      if (v.length > CONTEXT_VALUE_MAX) {
        throw new ArgumentError(
          `context[${show(key)}] must be at most ${CONTEXT_VALUE_MAX} characters, got ${v.length}`,
        );
      }
    } else if (typeof v === "number") {
      if (!Number.isFinite(v)) {
        throw new ArgumentError(`context[${show(key)}] must be a finite number, got ${v}`);
      }
    } else if (typeof v !== "boolean") {
      throw new ArgumentError(
        `context[${show(key)}] must be a string, number or boolean, got ${show(v)}`,
      );
    }
  }
  return value as Context;
}

/** A number >= 0 (or > 0); `name` and the rule in the error. */
export function checkNumber(
  name: string,
  value: unknown,
  rule: { min?: number; max?: number; positive?: boolean; integer?: boolean } = {},
): number {
  const ok =
    typeof value === "number" &&
    Number.isFinite(value) &&
    (rule.integer !== true || Number.isSafeInteger(value)) &&
    (rule.positive !== true || value > 0) &&
    (rule.min === undefined || value >= rule.min) &&
    (rule.max === undefined || value <= rule.max);
  if (!ok) {
    const parts: string[] = [];
    if (rule.integer) parts.push("an integer");
    else parts.push("a number");
    if (rule.positive) parts.push("> 0");
    if (rule.min !== undefined && rule.max !== undefined) parts.push(`in [${rule.min}, ${rule.max}]`);
    else if (rule.min !== undefined) parts.push(`>= ${rule.min}`);
    else if (rule.max !== undefined) parts.push(`<= ${rule.max}`);
    throw new ArgumentError(`${name} must be ${parts.join(" ")}, got ${show(value)}`);
  }
  return value as number;
}

/** Options objects reject keys they do not know (a typo fails loudly). */
export function checkKeys(what: string, value: object, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new ArgumentError(`${what}: unknown option ${show(key)}; known: ${known.join(", ")}`);
    }
  }
}
