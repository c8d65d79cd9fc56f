/**
 * A policy snapshot (the JSON the workers write to Redis), checked as strictly as the Python
 * SDK's pydantic model, compiled for one router's paths; and the read-only views of it.
 */

import { ArgumentError } from "./errors.js";
import type { LocalArm } from "./local.js";
import { activeOverrides, nextEnd, pathOverride, type GoalOverrides, type PathOverride } from "./overrides.js";
import type { RandomSource } from "./random.js";
import {
  ArmSet,
  betaQuantiles,
  choose,
  coldArm,
  makeArm,
  type Arm,
  type Reason,
  type SamplingParams,
  type Tables,
} from "./sampling.js";
import { IDENTIFIER_MAX, IDENTIFIER_PATTERN } from "./validate.js";

export type PathStatus = "cold" | "healthy" | "degrading" | "stale";
const STATUSES: readonly string[] = ["cold", "healthy", "degrading", "stale"];

export interface PathStats {
  readonly alpha: number;
  readonly beta: number;
  readonly n: number;
  readonly recentN: number;
  readonly recentSuccesses: number;
  readonly baselineRate: number | null;
  readonly meanCostUsd: number | null;
  readonly meanLatencyMs: number | null;
  /** Milliseconds since the Unix epoch. */
  readonly lastOutcomeAt: number | null;
  readonly status: PathStatus;
}

export interface PolicySnapshot {
  readonly goal: string;
  readonly version: number;
  /** Milliseconds since the Unix epoch. */
  readonly generatedAt: number;
  readonly paths: ReadonlyMap<string, PathStats>;
}

/** A snapshot that does not follow the schema; the message names the field. */
export class InvalidSnapshot extends ArgumentError {
  override name = "InvalidSnapshot";
}

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

function fail(where: string, rule: string): never {
  throw new InvalidSnapshot(`snapshot ${where} ${rule}`);
}

function object(where: string, value: unknown, keys: readonly string[]): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) fail(where, "must be an object");
  for (const key of Object.keys(value)) if (!keys.includes(key)) fail(`${where}.${key}`, "is not a known field");
  return value as Record<string, unknown>;
}

function number(where: string, value: unknown, rule: { min?: number; max?: number; gt?: number; int?: boolean; nullable?: boolean }): number | null {
  if (value === null || value === undefined) {
    if (rule.nullable) return null;
    fail(where, "is required");
  }
  if (typeof value !== "number" || !Number.isFinite(value)) fail(where, "must be a finite number");
  if (rule.int && !Number.isSafeInteger(value)) fail(where, "must be an integer");
  if (rule.gt !== undefined && !(value > rule.gt)) fail(where, `must be > ${rule.gt}`);
  if (rule.min !== undefined && value < rule.min) fail(where, `must be >= ${rule.min}`);
  if (rule.max !== undefined && value > rule.max) fail(where, `must be <= ${rule.max}`);
  return value;
}

function timestamp(where: string, value: unknown, nullable: boolean): number | null {
  if ((value === null || value === undefined) && nullable) return null;
  if (typeof value !== "string" || !TIMESTAMP.test(value)) fail(where, "must be a timezone-aware ISO 8601 timestamp");
  const ms = Date.parse(value);
  if (!Number.isFinite(ms)) fail(where, "must be a valid timestamp");
  return ms;
}

function identifier(where: string, value: unknown): string {
  if (typeof value !== "string" || value.length === 0 || value.length > IDENTIFIER_MAX || !IDENTIFIER_PATTERN.test(value)) {
    fail(where, "must be an identifier (1-128 letters, digits or _.:/@+=-)");
  }
  return value;
}

const SNAPSHOT_KEYS = ["schema_version", "goal", "version", "generated_at", "paths"];
const PATH_KEYS = [
  "schema_version",
  "alpha",
  "beta",
  "n",
  "recent_n",
  "recent_successes",
  "baseline_rate",
  "mean_cost_usd",
  "mean_latency_ms",
  "last_outcome_at",
  "status",
];

/** Parse and check a snapshot's JSON; InvalidSnapshot names the first bad field. */
export function parseSnapshot(raw: string): PolicySnapshot {
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    fail("", "is not JSON");
  }
  const o = object("", body, SNAPSHOT_KEYS);
  if (o.schema_version !== undefined && o.schema_version !== 1) fail("schema_version", "must be 1");
  const goal = identifier("goal", o.goal);
  const version = number("version", o.version, { int: true, min: 1 })!;
  const generatedAt = timestamp("generated_at", o.generated_at, false)!;
  const paths = new Map<string, PathStats>();
  const given = o.paths === undefined ? {} : object("paths", o.paths, Object.keys(o.paths ?? {}));
  for (const [name, value] of Object.entries(given)) {
    const where = `paths.${name}`;
    identifier(`${where} (name)`, name);
    const p = object(where, value, PATH_KEYS);
    if (p.schema_version !== undefined && p.schema_version !== 1) fail(`${where}.schema_version`, "must be 1");
    const n = number(`${where}.n`, p.n, { int: true, min: 0 })!;
    const recentN = number(`${where}.recent_n`, p.recent_n, { int: true, min: 0 })!;
    const recentSuccesses = number(`${where}.recent_successes`, p.recent_successes, { min: 0 })!;
    if (recentN > n) fail(`${where}.recent_n`, `(${recentN}) cannot exceed n (${n})`);
    if (recentSuccesses > recentN) fail(`${where}.recent_successes`, `cannot exceed recent_n (${recentN})`);
    const status = p.status ?? "cold";
    if (typeof status !== "string" || !STATUSES.includes(status)) fail(`${where}.status`, `must be one of ${STATUSES.join(", ")}`);
    paths.set(name, {
      alpha: number(`${where}.alpha`, p.alpha, { gt: 0 })!,
      beta: number(`${where}.beta`, p.beta, { gt: 0 })!,
      n,
      recentN,
      recentSuccesses,
      baselineRate: number(`${where}.baseline_rate`, p.baseline_rate, { min: 0, max: 1, nullable: true }),
      meanCostUsd: number(`${where}.mean_cost_usd`, p.mean_cost_usd, { min: 0, nullable: true }),
      meanLatencyMs: number(`${where}.mean_latency_ms`, p.mean_latency_ms, { min: 0, nullable: true }),
      lastOutcomeAt: timestamp(`${where}.last_outcome_at`, p.last_outcome_at, true),
      status: status as PathStatus,
    });
  }
  return { goal, version, generatedAt, paths };
}

/** What the router knows about one path. */
export interface PathView {
  readonly name: string;
  readonly mean: number;
  readonly alpha: number;
  readonly beta: number;
  readonly n: number;
  readonly status: PathStatus;
  readonly lastOutcomeAt: Date | null;
  readonly meanCostUsd: number | null;
  readonly meanLatencyMs: number | null;
  /** In force when the policy was compiled; null: the path is routed by the rules. */
  readonly override: PathOverride | null;
}

/**
 * The policy a router decides with. `loaded` is false until a snapshot source answered at
 * least once; `stale` is true when the source has not answered for `maxStalenessMs`.
 */
export interface PolicyView {
  readonly goal: string;
  readonly loaded: boolean;
  readonly version: number | null;
  readonly generatedAt: Date | null;
  readonly ageSeconds: number | null;
  readonly stale: boolean;
  readonly paths: readonly PathView[];
  /** The version of the goal's overrides in force (null: none). */
  readonly overridesVersion: number | null;
}

/** A compiled policy is compiled again after this long even if nothing changed, so that path
 * staleness (judged by this process's clock) stays true. */
const RECOMPILE_AFTER_MS = 60_000;

/**
 * Immutable: arms for every path of the router, ready for the sampling rules, and the
 * overrides in force at compile time (the cache compiles again when the earliest one ends):
 *
 * - a pinned path that the router offers is the choice of every decision (reason `override`);
 * - disabled paths are left out of every other choice: the sampling rules run over the paths
 *   that are not disabled, so exploration, cold start and recovery probes never pick them;
 * - when that leaves no path (every path offered is disabled), the paths offered are used as
 *   if there were no override, and `onIgnored` is called (the router warns once).
 */
export class CompiledPolicy {
  readonly armSet: ArmSet;
  readonly fetchedAt = performance.now();
  readonly recompileAt: number;
  /** the part of the overrides in force at compile time (null: none) */
  readonly overrides: GoalOverrides | null = null;
  /** index of the pinned path among the router's paths (null: no pin this router offers) */
  readonly pinned: number | null;
  readonly disabled: ReadonlySet<number>;
  /** every path of the router is disabled: the overrides are ignored */
  readonly unroutable: boolean;
  /** the paths not disabled, and their arms (null: no path of the router is disabled) */
  readonly enabled: readonly number[] | null = null;
  readonly enabledSet: ArmSet | null = null;

  constructor(
    arms: readonly Arm[],
    tieMargin: number,
    readonly snapshot: PolicySnapshot | null,
    readonly loaded: boolean,
    readonly raw: string | null = null,
    /** the goal's overrides as read (all entries), and their JSON */
    readonly storedOverrides: GoalOverrides | null = null,
    readonly overridesRaw: string | null = null,
    now: number = Date.now(),
  ) {
    this.armSet = new ArmSet(arms, tieMargin);
    let recompileAt = this.fetchedAt + RECOMPILE_AFTER_MS;
    if (storedOverrides !== null) {
      const active = activeOverrides(storedOverrides, now);
      const ends = active === null ? null : nextEnd(active);
      if (ends !== null) recompileAt = Math.min(recompileAt, this.fetchedAt + (ends - now));
      this.overrides = active;
    }
    this.recompileAt = recompileAt;
    const names = arms.map((a) => a.name);
    const pin = this.overrides?.pinned ?? null;
    this.pinned = pin !== null && names.includes(pin.path) ? names.indexOf(pin.path) : null;
    const off = this.overrides?.disabled;
    this.disabled = new Set(names.flatMap((name, i) => (off?.has(name) ? [i] : [])));
    const enabled = names.flatMap((_, i) => (this.disabled.has(i) ? [] : [i]));
    this.unroutable = enabled.length === 0;
    if (enabled.length > 0 && this.disabled.size > 0) {
      this.enabled = enabled;
      this.enabledSet = new ArmSet(enabled.map((i) => arms[i]!), tieMargin);
    }
  }

  /**
   * Which of the paths offered (indexes `among`, ascending; null: all) to take, as an index
   * into them, and why: the pinned path (`override`), else by the sampling rules over the
   * paths not disabled; the first one (`fallback`) while no snapshot could ever be loaded.
   * `onIgnored` is called when every path offered is disabled; `decisions` is the router's
   * count of decisions (the recovery probes' clock).
   */
  choose(
    among: readonly number[] | null,
    rng: RandomSource,
    params: SamplingParams,
    onIgnored?: () => void,
    decisions = 0,
  ): [number, Reason] {
    if (!this.loaded) return [0, "fallback"];
    const pinned = this.pinned;
    if (among === null) {
      if (pinned !== null) return [pinned, "override"];
      const enabled = this.enabled;
      if (enabled === null) {
        if (this.unroutable) onIgnored?.();
        return choose(this.armSet, rng, params, decisions);
      }
      const [i, reason] = choose(this.enabledSet!, rng, params, decisions);
      return [enabled[i]!, reason];
    }
    if (pinned !== null && among.includes(pinned)) return [among.indexOf(pinned), "override"];
    let allowed = among.flatMap((path, k) => (this.disabled.has(path) ? [] : [k]));
    if (allowed.length === 0) {
      // every path offered is disabled
      allowed = among.map((_, k) => k);
      onIgnored?.();
    }
    const arms = this.armSet.arms;
    const set = new ArmSet(allowed.map((k) => arms[among[k]!]!), params.tieMargin);
    const [j, reason] = choose(set, rng, params, decisions);
    return [allowed[j]!, reason];
  }

  get version(): number | null {
    return this.snapshot?.version ?? null;
  }

  static neverLoaded(paths: readonly string[], tieMargin: number): CompiledPolicy {
    return new CompiledPolicy(paths.map(coldArm), tieMargin, null, false);
  }

  /**
   * Arms for `paths` from `snapshot` (null: Redis answered but has no snapshot for the goal
   * yet, so every path is cold), with the overrides in force at `now`, and what the router's
   * own outcomes add (`local`, one per path: see local.ts): folded outcomes add to the
   * posterior and to its count; an alarm restarts the posterior from the alarm's run and
   * marks the path alerted. `alertedAt` gives, per alerted path, the router's count of
   * decisions when it first saw the alert. Quantile tables of unchanged posteriors come from
   * `previous`.
   */
  static compile(
    snapshot: PolicySnapshot | null,
    paths: readonly string[],
    settings: {
      minSamples: number;
      tieMargin: number;
      pathStalenessMs: number;
      previous?: CompiledPolicy | null;
      raw?: string | null;
      overrides?: GoalOverrides | null;
      overridesRaw?: string | null;
      now?: number;
      local?: readonly LocalArm[] | null;
      alertedAt?: ReadonlyMap<string, number>;
    },
  ): CompiledPolicy {
    const now = settings.now ?? Date.now();
    const reuse = new Map<string, Tables>();
    for (const a of settings.previous?.armSet.arms ?? []) reuse.set(`${a.alpha}:${a.beta}`, a.tables);
    const local = settings.local ?? null;
    const arms = paths.map((name, k) => {
      const stats = snapshot?.paths.get(name);
      const extra = local === null ? null : local[k]!;
      if (stats === undefined && (extra === null || extra.count === 0)) return coldArm(name);
      let alpha = stats?.alpha ?? 1.0;
      let beta = stats?.beta ?? 1.0;
      let n = stats?.n ?? 0;
      let degrading = stats?.status === "degrading";
      if (extra !== null) {
        n += extra.count;
        if (extra.alarm !== null) {
          alpha = 1.0 + extra.alarm[0];
          beta = 1.0 + extra.alarm[1];
          degrading = true;
        } else {
          alpha += extra.successes;
          beta += extra.failures;
        }
      }
      const last = stats?.lastOutcomeAt ?? null;
      const stale = stats?.status === "stale" || (last !== null && now - last > settings.pathStalenessMs);
      return makeArm({
        name,
        alpha,
        beta,
        n,
        cold: n < settings.minSamples,
        stale,
        degrading,
        alertedAt: settings.alertedAt?.get(name) ?? 0,
        meanCost: stats?.meanCostUsd ?? null,
        meanLatency: stats?.meanLatencyMs ?? null,
        tables: reuse.get(`${alpha}:${beta}`) ?? betaQuantiles(alpha, beta),
      });
    });
    return new CompiledPolicy(
      arms,
      settings.tieMargin,
      snapshot,
      true,
      settings.raw ?? null,
      settings.overrides ?? null,
      settings.overridesRaw ?? null,
      now,
    );
  }

  view(goal: string, stale: boolean): PolicyView {
    const known = this.snapshot?.paths;
    const paths = this.armSet.arms.map((arm): PathView => {
      const stats = known?.get(arm.name);
      let status: PathStatus = "cold";
      if (arm.degrading) status = "degrading";
      else if (stats !== undefined) status = arm.stale ? "stale" : stats.status;
      return {
        name: arm.name,
        mean: arm.alpha / (arm.alpha + arm.beta),
        alpha: arm.alpha,
        beta: arm.beta,
        n: arm.n,
        status,
        lastOutcomeAt: stats?.lastOutcomeAt != null ? new Date(stats.lastOutcomeAt) : null,
        meanCostUsd: arm.meanCost,
        meanLatencyMs: arm.meanLatency,
        override: pathOverride(this.overrides, arm.name),
      };
    });
    const generated = this.snapshot?.generatedAt ?? null;
    return {
      goal,
      loaded: this.loaded,
      version: this.version,
      generatedAt: generated === null ? null : new Date(generated),
      ageSeconds: generated === null ? null : (Date.now() - generated) / 1000,
      stale,
      paths,
      overridesVersion: this.overrides?.version ?? null,
    };
  }
}
