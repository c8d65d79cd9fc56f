/**
 * Overrides: a path taken out of rotation, or a goal pinned to one path, by an operator
 * (`outroute path disable`, `outroute goal pin`). Redis key `<prefix>:overrides:<goal>` holds
 * the goal's `GoalOverrides` JSON; the router reads it with the snapshot. An entry is in force
 * until its `until` (exclusive) by this process's clock: an override ends by itself.
 */

import { InvalidSnapshot } from "./policy.js";
import { IDENTIFIER_MAX, IDENTIFIER_PATTERN } from "./validate.js";

/** One override in force: who set it, when, why, until when (null: until undone). */
export interface OverrideEntry {
  readonly reason: string | null;
  readonly by: string;
  /** Milliseconds since the Unix epoch. */
  readonly at: number;
  readonly until: number | null;
}

export interface GoalOverrides {
  readonly goal: string;
  readonly version: number;
  readonly disabled: ReadonlyMap<string, OverrideEntry>;
  readonly pinned: (OverrideEntry & { readonly path: string }) | null;
}

/** An operator's override of one path, as `getPolicy()` shows it. */
export interface PathOverride {
  readonly kind: "disabled" | "pinned";
  readonly by: string;
  readonly at: Date;
  readonly until: Date | null;
  readonly reason: string | null;
}

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
const ONE_LINE = /^[^\x00-\x1f\x7f]*$/;

function fail(where: string, rule: string): never {
  throw new InvalidSnapshot(`overrides ${where} ${rule}`);
}

function object(where: string, value: unknown, keys: readonly string[] | null): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) fail(where, "must be an object");
  if (keys !== null) for (const key of Object.keys(value)) if (!keys.includes(key)) fail(`${where}.${key}`, "is not a known field");
  return value as Record<string, unknown>;
}

function identifier(where: string, value: unknown): string {
  if (typeof value !== "string" || value.length === 0 || value.length > IDENTIFIER_MAX || !IDENTIFIER_PATTERN.test(value)) {
    fail(where, "must be an identifier (1-128 letters, digits or _.:/@+=-)");
  }
  return value;
}

function time(where: string, value: unknown, nullable: boolean): number | null {
  if ((value === null || value === undefined) && nullable) return null;
  if (typeof value !== "string" || !TIMESTAMP.test(value) || !Number.isFinite(Date.parse(value))) {
    fail(where, "must be a timezone-aware ISO 8601 timestamp");
  }
  return Date.parse(value);
}

const ENTRY_KEYS = ["schema_version", "reason", "by", "at", "until"];

function entry(where: string, value: unknown, keys: readonly string[]): Record<string, unknown> & OverrideEntry {
  const o = object(where, value, keys);
  if (o.schema_version !== undefined && o.schema_version !== 1) fail(`${where}.schema_version`, "must be 1");
  const reason = o.reason ?? null;
  if (reason !== null && (typeof reason !== "string" || reason.length === 0 || reason.length > 500 || !ONE_LINE.test(reason))) {
    fail(`${where}.reason`, "must be 1-500 characters on one line");
  }
  const by = identifier(`${where}.by`, o.by);
  const at = time(`${where}.at`, o.at, false)!;
  const until = time(`${where}.until`, o.until, true);
  return { ...o, reason: reason as string | null, by, at, until };
}

/** Parse and check a `GoalOverrides` JSON; InvalidSnapshot names the first bad field. */
export function parseOverrides(raw: string): GoalOverrides {
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    fail("", "are not JSON");
  }
  const o = object("", body, ["schema_version", "goal", "version", "disabled", "pinned"]);
  if (o.schema_version !== undefined && o.schema_version !== 1) fail("schema_version", "must be 1");
  const goal = identifier("goal", o.goal);
  if (typeof o.version !== "number" || !Number.isSafeInteger(o.version) || o.version < 1) fail("version", "must be an integer >= 1");
  const disabled = new Map<string, OverrideEntry>();
  for (const [path, value] of Object.entries(object("disabled", o.disabled ?? {}, null))) {
    identifier(`disabled.${path} (name)`, path);
    const e = entry(`disabled.${path}`, value, ENTRY_KEYS);
    disabled.set(path, { reason: e.reason, by: e.by, at: e.at, until: e.until });
  }
  let pinned: GoalOverrides["pinned"] = null;
  if (o.pinned !== undefined && o.pinned !== null) {
    const e = entry("pinned", o.pinned, [...ENTRY_KEYS, "path"]);
    const path = identifier("pinned.path", e.path);
    if (disabled.has(path)) fail("pinned", `path ${path} is also disabled`);
    pinned = { reason: e.reason, by: e.by, at: e.at, until: e.until, path };
  }
  return { goal, version: o.version, disabled, pinned };
}

function inForce(e: OverrideEntry, now: number): boolean {
  return e.until === null || now < e.until;
}

/** The overrides without the entries that ended at or before `now` (null: none left). */
export function activeOverrides(overrides: GoalOverrides, now: number): GoalOverrides | null {
  const disabled = new Map([...overrides.disabled].filter(([, e]) => inForce(e, now)));
  const pinned = overrides.pinned !== null && inForce(overrides.pinned, now) ? overrides.pinned : null;
  if (disabled.size === 0 && pinned === null) return null;
  return { ...overrides, disabled, pinned };
}

/** The earliest `until` among the entries (null: nothing ends by itself). */
export function nextEnd(overrides: GoalOverrides): number | null {
  const ends = [...overrides.disabled.values(), ...(overrides.pinned ? [overrides.pinned] : [])]
    .map((e) => e.until)
    .filter((u): u is number => u !== null);
  return ends.length > 0 ? Math.min(...ends) : null;
}

export function pathOverride(overrides: GoalOverrides | null, path: string): PathOverride | null {
  if (overrides === null) return null;
  const view = (kind: PathOverride["kind"], e: OverrideEntry): PathOverride => ({
    kind,
    by: e.by,
    at: new Date(e.at),
    until: e.until === null ? null : new Date(e.until),
    reason: e.reason,
  });
  if (overrides.pinned !== null && overrides.pinned.path === path) return view("pinned", overrides.pinned);
  const e = overrides.disabled.get(path);
  return e === undefined ? null : view("disabled", e);
}
