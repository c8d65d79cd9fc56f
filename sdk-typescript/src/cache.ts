/**
 * PolicyCache: one router's compiled policy, kept fresh by a feed (feed.ts).
 *
 * A feed reads `<prefix>:policy:<goal>` and the goal's overrides `<prefix>:overrides:<goal>`
 * in one round trip, follows `<prefix>:policy-changes` (a worker names every goal of a write
 * in one message) and polls as a safety net, then hands what it read to `PolicyCache.apply`.
 * Every router of a process that reads the same Redis shares one feed: one client, one
 * subscriber. A router given its own `SnapshotSource` (an in-memory stand-in, a custom store)
 * gets a loop of its own that drives the same cache.
 *
 * The cache compiles again when the earliest override in force ends, so an override expires
 * by this process's clock without a write; and at once when the router's own outcomes open or
 * end an alarm on a path (`localChanged`, see local.ts). `decide()` only reads
 * `PolicyCache.current`, an immutable object swapped in one assignment, so deciding never
 * waits for Redis. When Redis is away the last policy stays in use, marked stale after
 * `maxStalenessMs`, overrides included; errors are logged once per outage.
 */

import type { LocalEvidence } from "./local.js";
import type { Logger } from "./log.js";
import { parseOverrides, type GoalOverrides } from "./overrides.js";
import {
  CompiledPolicy,
  InvalidSnapshot,
  parseSnapshot,
  type PathStats,
  type PolicySnapshot,
  type PolicyView,
} from "./policy.js";
import type { CacheOptions } from "./options.js";
import type { SamplingParams } from "./sampling.js";

/**
 * Where snapshots come from. `fetch` rejects when the source is unavailable and resolves to
 * null when it answered but holds no snapshot for the goal. `fetchOverrides`, called right
 * after each `fetch`, returns the goal's overrides (`GoalOverrides` JSON) as of that fetch, or
 * null when there are none; a source without it has no overrides. `waitForUpdate` resolves to
 * true as soon as an update may be available, false after `timeoutMs` or when `signal` aborts.
 */
export interface SnapshotSource {
  fetch(): Promise<string | null>;
  fetchOverrides?(): string | null;
  waitForUpdate(timeoutMs: number, signal: AbortSignal): Promise<boolean>;
  close(): Promise<void>;
}

/** What keeps caches fresh: the process's shared Redis feed, or one source's own loop. */
export interface FeedDriver {
  /** Start serving `cache`: its first read is made as soon as possible. */
  attach(cache: PolicyCache): void;
  /** Stop serving `cache`; a driver left serving nothing closes its connections. */
  detach(cache: PolicyCache): Promise<void>;
}

/** The longest delay setTimeout keeps (a longer one fires at once). */
export const MAX_TIMER_MS = 2_147_483_647;

/** Resolves after `ms` (at most MAX_TIMER_MS), or at once when `signal` aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, Math.min(ms, MAX_TIMER_MS));
    timer.unref();
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Keeps `current` up to date from what a FeedDriver reads, and from the router's own outcomes
 * (`local`: see local.ts). `decisions` counts the router's decisions: the clock of its
 * recovery probes.
 */
export class PolicyCache {
  current: CompiledPolicy;
  /** per alerted path, the router's count of decisions when this cache first saw the alert */
  private readonly alertedAt = new Map<string, number>();
  private driver: FeedDriver | null = null;
  private stopped = false;
  private readonly firstAttempt: Promise<void>;
  private markFirstAttempt!: () => void;
  private lastOk: number | null = null;
  private failing = false;
  private vanished = false;
  errors = 0;
  invalidSnapshots = 0;

  constructor(
    readonly goal: string,
    private readonly paths: readonly string[],
    private readonly params: SamplingParams,
    readonly options: CacheOptions,
    private readonly pathStalenessMs: number,
    private readonly driverFactory: () => FeedDriver,
    readonly logger: Logger,
    private readonly decisions: () => number,
    readonly local: LocalEvidence | null = null,
  ) {
    this.current = CompiledPolicy.neverLoaded(paths, params.tieMargin);
    this.firstAttempt = new Promise((resolve) => (this.markFirstAttempt = resolve));
  }

  get started(): boolean {
    return this.driver !== null;
  }

  /** Attach to the feed (once); resolve when the first read succeeded or failed, or after
   * `waitMs` (default `initWaitMs`), whichever comes first. */
  async start(waitMs?: number): Promise<void> {
    if (this.driver === null && !this.stopped) {
      const driver = this.driverFactory();
      this.driver = driver;
      driver.attach(this);
    }
    await Promise.race([this.firstAttempt, pause(waitMs ?? this.options.initWaitMs)]);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const driver = this.driver;
    this.driver = null;
    if (driver !== null) await driver.detach(this);
  }

  get stale(): boolean {
    if (this.vanished) return true;
    if (this.lastOk === null) return false;
    return performance.now() - this.lastOk > this.options.maxStalenessMs;
  }

  /** When the current policy must be compiled again (performance.now() milliseconds);
   * never for a policy that was never loaded (there is nothing to compile again). */
  get dueAt(): number {
    return this.current.loaded ? this.current.recompileAt : Number.POSITIVE_INFINITY;
  }

  view(): PolicyView {
    return this.current.view(this.goal, this.stale);
  }

  // -- what drivers call -------------------------------------------------------------------

  /** Fetch once from `source` and apply it. Rejects if the source is down. */
  async refresh(source: SnapshotSource): Promise<boolean> {
    const raw = await source.fetch();
    return this.apply(raw, source.fetchOverrides?.() ?? null);
  }

  /**
   * A read of the goal's snapshot and overrides (null: no such key): swap in a new policy if
   * it changed. True when a new policy was compiled.
   */
  apply(raw: string | null, overridesRaw: string | null): boolean {
    this.lastOk = performance.now();
    if (this.failing) {
      this.logger.warn(`policy source for goal ${this.goal} is reachable again`);
      this.failing = false;
    }
    try {
      return this.applyRead(raw, overridesRaw);
    } finally {
      this.markFirstAttempt();
    }
  }

  private applyRead(raw: string | null, overridesRaw: string | null): boolean {
    const current = this.current;
    if (
      current.loaded &&
      raw === current.raw &&
      overridesRaw === current.overridesRaw &&
      performance.now() < current.recompileAt
    ) {
      // Unchanged. Compiled again once a minute so that path staleness stays true, and when
      // the earliest override in force ends.
      return false;
    }
    if (raw === null && current.raw !== null) {
      // The key is gone (a Redis restarted empty, a flush): what was learned is not.
      if (!this.vanished) {
        this.vanished = true;
        this.logger.warn(
          `the policy snapshot of goal ${this.goal} is gone from Redis; deciding with the last ` +
            "one (marked stale) until the workers write it again",
        );
      }
      this.recompileIfDue();
      return false;
    }
    this.vanished = false;
    let snapshot: PolicySnapshot | null = null;
    if (raw !== null) {
      try {
        snapshot = parseSnapshot(raw);
      } catch (error) {
        if (!(error instanceof InvalidSnapshot)) throw error;
        this.invalidSnapshots += 1;
        this.logger.error(`ignoring an invalid snapshot for goal ${this.goal}: ${error.message}`);
        return false;
      }
      if (snapshot.goal !== this.goal) {
        this.invalidSnapshots += 1;
        this.logger.error(`ignoring a snapshot of goal ${snapshot.goal} under goal ${this.goal}`);
        return false;
      }
    }
    this.compile(snapshot, raw, this.parseOverrides(overridesRaw, current), overridesRaw);
    return true;
  }

  /** The source could not be read: keep the last policy (logged once per outage). */
  failed(error: unknown): void {
    this.errors += 1;
    if (!this.failing) {
      const message = error instanceof Error ? error.message : String(error);
      this.logger.warn(`cannot read the policy for goal ${this.goal} (${message}); using the last one, retrying`);
      this.failing = true;
    }
    this.recompileIfDue();
    this.markFirstAttempt();
  }

  /**
   * While no new policy can be read: compile the last one again once its earliest override
   * has ended (or a minute has passed), so that overrides still end on time.
   */
  recompileIfDue(): void {
    const current = this.current;
    if (current.loaded && performance.now() >= current.recompileAt) {
      this.compile(current.snapshot, current.raw, current.storedOverrides, current.overridesRaw);
    }
  }

  /** The router's own outcomes opened or ended an alarm: compile now. */
  localChanged(): void {
    const current = this.current;
    if (current.loaded) {
      this.compile(current.snapshot, current.raw, current.storedOverrides, current.overridesRaw);
    }
  }

  /**
   * Swap in the policy of this snapshot and overrides, with the router's own outcomes folded
   * in; note when each alert (the workers', or the router's own alarm) was first seen.
   */
  private compile(
    snapshot: PolicySnapshot | null,
    raw: string | null,
    overrides: GoalOverrides | null,
    overridesRaw: string | null,
  ): void {
    const known: ReadonlyMap<string, PathStats> = snapshot?.paths ?? new Map();
    const local = this.local === null ? null : this.local.arms(known);
    const alerted = new Set(
      this.paths.filter(
        (name, k) => known.get(name)?.status === "degrading" || (local !== null && local[k]!.alarm !== null),
      ),
    );
    const seen = this.alertedAt;
    for (const name of [...seen.keys()]) if (!alerted.has(name)) seen.delete(name);
    for (const name of alerted) if (!seen.has(name)) seen.set(name, this.decisions());
    this.current = CompiledPolicy.compile(snapshot, this.paths, {
      minSamples: this.params.minSamples,
      tieMargin: this.params.tieMargin,
      pathStalenessMs: this.pathStalenessMs,
      previous: this.current,
      raw,
      overrides,
      overridesRaw,
      local,
      alertedAt: seen,
    });
  }

  /** The overrides in `raw`; when they are invalid, the last ones (logged, counted). */
  private parseOverrides(raw: string | null, current: CompiledPolicy): GoalOverrides | null {
    if (raw === null) return null;
    let problem: string;
    try {
      const overrides = parseOverrides(raw);
      if (overrides.goal === this.goal) return overrides;
      problem = `they are the overrides of goal ${overrides.goal}`;
    } catch (error) {
      if (!(error instanceof InvalidSnapshot)) throw error;
      problem = error.message;
    }
    this.invalidSnapshots += 1;
    this.logger.error(`ignoring invalid overrides for goal ${this.goal}: ${problem}`);
    return current.storedOverrides;
  }
}
