/**
 * PolicyCache: a background loop on the event loop that keeps one goal's compiled policy
 * fresh.
 *
 * It GETs `<prefix>:policy:<goal>`, subscribes to `<prefix>:policy-updates` (a goal name is
 * published after each write) and polls as a safety net. `decide()` only reads
 * `PolicyCache.current`, an immutable object swapped in one assignment, so deciding never
 * waits for Redis. When Redis is away the last policy stays in use, marked stale after
 * `maxStalenessMs`; errors are logged once per outage.
 */

import { createClient } from "redis";

import type { Logger } from "./log.js";
import { parseOverrides, type GoalOverrides } from "./overrides.js";
import { CompiledPolicy, InvalidSnapshot, parseSnapshot, type PolicySnapshot, type PolicyView } from "./policy.js";
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

const MAX_BACKOFF_MS = 5000;
const OP_TIMEOUT_MS = 1000;

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    timer.unref();
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

function newClient(url: string) {
  const client = createClient({
    url,
    disableOfflineQueue: true,
    socket: { connectTimeout: OP_TIMEOUT_MS, reconnectStrategy: false },
  });
  // Without a listener an error event would crash the host; the loop sees the failure
  // through the next command instead.
  client.on("error", () => undefined);
  return client;
}

type Client = ReturnType<typeof newClient>;

/**
 * Snapshots of one goal from Redis: its snapshot and overrides in one MGET, SUBSCRIBE for the
 * nudge (keys under `keyPrefix`: `<prefix>:policy:<goal>`, `<prefix>:overrides:<goal>`,
 * channel `<prefix>:policy-updates`).
 */
export class RedisSnapshotSource implements SnapshotSource {
  private client: Client | null = null;
  private subscriber: Client | null = null;
  private broken: Error | null = null;
  private nudged = false;
  private wake: (() => void) | null = null;
  private overrides: string | null = null;
  private readonly key: string;
  private readonly overridesKey: string;
  private readonly channel: string;

  constructor(
    private readonly url: string,
    keyPrefix: string,
    private readonly goal: string,
  ) {
    this.key = `${keyPrefix}:policy:${goal}`;
    this.overridesKey = `${keyPrefix}:overrides:${goal}`;
    this.channel = `${keyPrefix}:policy-updates`;
  }

  private make(): Client {
    return newClient(this.url);
  }

  private async redis(): Promise<Client> {
    if (this.client !== null && this.client.isReady) return this.client;
    this.client?.destroy();
    this.client = null;
    const client = this.make();
    this.client = client;
    await withTimeout(client.connect(), OP_TIMEOUT_MS * 2, "connecting to Redis");
    return client;
  }

  async fetch(): Promise<string | null> {
    try {
      const client = await this.redis();
      const [value, overrides] = await withTimeout(client.mGet([this.key, this.overridesKey]), OP_TIMEOUT_MS, "MGET");
      this.overrides = overrides == null ? null : String(overrides);
      return value == null ? null : String(value);
    } catch (error) {
      this.client?.destroy();
      this.client = null;
      throw error;
    }
  }

  private async subscribe(): Promise<void> {
    const subscriber = this.make();
    subscriber.on("error", (error: Error) => this.breakSubscription(error));
    subscriber.on("end", () => this.breakSubscription(new Error("the subscription closed")));
    this.subscriber = subscriber;
    this.broken = null;
    await withTimeout(subscriber.connect(), OP_TIMEOUT_MS * 2, "connecting to Redis");
    await withTimeout(
      subscriber.subscribe(this.channel, (message) => {
        if (message === this.goal) {
          this.nudged = true;
          this.wake?.();
        }
      }),
      OP_TIMEOUT_MS,
      "SUBSCRIBE",
    );
  }

  private breakSubscription(error: Error): void {
    if (this.broken === null) this.broken = error;
    this.wake?.();
  }

  private resetSubscription(): void {
    const subscriber = this.subscriber;
    this.subscriber = null;
    if (subscriber !== null) {
      subscriber.removeAllListeners("end");
      subscriber.destroy();
    }
  }

  /** The overrides read by the last `fetch()`, in the same round trip. */
  fetchOverrides(): string | null {
    return this.overrides;
  }

  async waitForUpdate(timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    try {
      if (this.subscriber === null || this.broken !== null) {
        this.resetSubscription();
        await this.subscribe();
      }
    } catch (error) {
      this.resetSubscription();
      throw error;
    }
    if (!this.nudged) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        void pause(timeoutMs, signal).then(resolve);
      });
      this.wake = null;
    }
    if (this.broken !== null) {
      const error = this.broken;
      this.resetSubscription();
      throw error;
    }
    const nudged = this.nudged;
    this.nudged = false;
    return nudged;
  }

  async close(): Promise<void> {
    this.resetSubscription();
    this.client?.destroy();
    this.client = null;
  }
}

/** Keeps `current` up to date from a SnapshotSource in a background loop. */
export class PolicyCache {
  current: CompiledPolicy;
  private loop: Promise<void> | null = null;
  private readonly stopper = new AbortController();
  private firstAttempt: Promise<void>;
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
    private readonly options: CacheOptions,
    private readonly pathStalenessMs: number,
    private readonly sourceFactory: () => SnapshotSource,
    private readonly logger: Logger,
  ) {
    this.current = CompiledPolicy.neverLoaded(paths, params.tieMargin);
    this.firstAttempt = new Promise((resolve) => (this.markFirstAttempt = resolve));
  }

  get started(): boolean {
    return this.loop !== null;
  }

  /** Start the loop (once); resolve when the first fetch succeeded or failed, or after
   * `waitMs` (default `initWaitMs`), whichever comes first. */
  async start(waitMs?: number): Promise<void> {
    if (this.loop === null && !this.stopper.signal.aborted) this.loop = this.run();
    await Promise.race([this.firstAttempt, pause(waitMs ?? this.options.initWaitMs)]);
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    if (this.loop !== null) await this.loop;
  }

  get stale(): boolean {
    if (this.vanished) return true;
    if (this.lastOk === null) return false;
    return performance.now() - this.lastOk > this.options.maxStalenessMs;
  }

  view(): PolicyView {
    return this.current.view(this.goal, this.stale);
  }

  /** Fetch once and swap in a new policy if it changed. Rejects if the source is down. */
  async refresh(source: SnapshotSource): Promise<boolean> {
    const raw = await source.fetch();
    const overridesRaw = source.fetchOverrides?.() ?? null;
    this.lastOk = performance.now();
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
    this.current = CompiledPolicy.compile(snapshot, this.paths, {
      minSamples: this.params.minSamples,
      tieMargin: this.params.tieMargin,
      pathStalenessMs: this.pathStalenessMs,
      previous: current,
      raw,
      overrides: this.parseOverrides(overridesRaw, current),
      overridesRaw,
    });
    return true;
  }

  /**
   * While no new policy can be read: compile the last one again once its earliest override
   * has ended (or a minute has passed), so that overrides still end on time.
   */
  private recompileIfDue(): void {
    const current = this.current;
    if (current.loaded && performance.now() >= current.recompileAt) {
      this.current = CompiledPolicy.compile(current.snapshot, this.paths, {
        minSamples: this.params.minSamples,
        tieMargin: this.params.tieMargin,
        pathStalenessMs: this.pathStalenessMs,
        previous: current,
        raw: current.raw,
        overrides: current.storedOverrides,
        overridesRaw: current.overridesRaw,
      });
    }
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

  private async run(): Promise<void> {
    const signal = this.stopper.signal;
    let source: SnapshotSource | null = null;
    let backoff = 100;
    while (!signal.aborted) {
      try {
        source ??= this.sourceFactory();
        await this.refresh(source);
        if (this.failing) {
          this.logger.warn(`policy source for goal ${this.goal} is reachable again`);
          this.failing = false;
        }
        backoff = 100;
        this.markFirstAttempt();
        const untilRecompile = Math.max(0, this.current.recompileAt - performance.now());
        await source.waitForUpdate(Math.min(this.options.pollIntervalMs, untilRecompile), signal);
      } catch (error) {
        // Redis down, DNS, auth: keep the last policy, retry
        this.errors += 1;
        this.markFirstAttempt();
        if (!this.failing) {
          const message = error instanceof Error ? error.message : String(error);
          this.logger.warn(
            `cannot read the policy for goal ${this.goal} (${message}); using the last one, retrying`,
          );
          this.failing = true;
        }
        this.recompileIfDue();
        const due = this.current.recompileAt - performance.now();
        await pause(Math.max(0, Math.min(backoff, due)), signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
    if (source !== null) {
      try {
        await source.close();
      } catch (error) {
        this.logger.debug(`closing the snapshot source failed: ${String(error)}`);
      }
    }
  }
}
