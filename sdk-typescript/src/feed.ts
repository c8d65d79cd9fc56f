/**
 * The loops that keep routers' policies fresh (the Python SDK's `producer_sdk._impl.feed`).
 *
 * `RedisPolicyFeed`: one per Redis (URL and key prefix) in a process, shared by every router
 * that reads it, whatever its goal. One client for reads and one subscriber to
 * `<prefix>:policy-changes`, where a worker names the goals of each write together (one
 * message per write, the names separated by "\n"; the older per-goal `<prefix>:policy-updates`
 * messages are not followed). The goals announced that this process routes are read back in
 * one MGET of their snapshot and overrides keys, and each goal's read is handed to every cache
 * of that goal. Every `pollIntervalMs` (the shortest of its routers') one MGET reads every
 * goal as a safety net, in batches of `BATCH` goals. A router per goal each subscribed to
 * every goal's messages would wake G times per write in a process routing G goals; the feed
 * wakes once.
 *
 * `SourceLoop`: a router given its own `SnapshotSource` (an in-memory stand-in, a custom
 * store) gets a loop of its own.
 *
 * The shared feeds live in a registry of the process, one per Redis: a feed connects with its
 * first router and closes its connections when its last router closes (it then leaves the
 * registry; the next router makes a new one).
 */

import { createClient } from "redis";

import { MAX_TIMER_MS, pause, type FeedDriver, type PolicyCache, type SnapshotSource } from "./cache.js";

const MAX_BACKOFF_MS = 5000;
const OP_TIMEOUT_MS = 1000;
/** Goals per MGET of the safety-net poll (two keys each). */
const BATCH = 256;

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Wakes a loop that waits for work, a timeout or its stop. A poke while it is not waiting
 * is kept for its next wait. */
class Wakeup {
  private poked = false;
  private resolve: (() => void) | null = null;

  poke(): void {
    this.poked = true;
    this.resolve?.();
  }

  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.poked || signal.aborted) {
      this.poked = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.resolve = null;
        this.poked = false;
        resolve();
      };
      const timer = setTimeout(done, Math.min(ms, MAX_TIMER_MS));
      timer.unref();
      this.resolve = done;
      signal.addEventListener("abort", done, { once: true });
    });
  }
}

/** One cache's own loop over one SnapshotSource. */
export class SourceLoop implements FeedDriver {
  private loop: Promise<void> | null = null;
  private readonly stopper = new AbortController();

  constructor(private readonly sourceFactory: () => SnapshotSource) {}

  attach(cache: PolicyCache): void {
    this.loop ??= this.run(cache);
  }

  async detach(): Promise<void> {
    this.stopper.abort();
    await this.loop;
  }

  private async run(cache: PolicyCache): Promise<void> {
    const signal = this.stopper.signal;
    let source: SnapshotSource | null = null;
    let backoff = 100;
    while (!signal.aborted) {
      try {
        source ??= this.sourceFactory();
        await cache.refresh(source);
        backoff = 100;
        const untilDue = Math.max(0, cache.dueAt - performance.now());
        await source.waitForUpdate(Math.min(cache.options.pollIntervalMs, untilDue), signal);
      } catch (error) {
        // the source is down: keep the last policy, retry
        cache.failed(error);
        const due = cache.dueAt - performance.now();
        await pause(Math.max(0, Math.min(backoff, due)), signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
    if (source !== null) {
      try {
        await source.close();
      } catch (error) {
        cache.logger.debug(`closing the snapshot source failed: ${String(error)}`);
      }
    }
  }
}

/** What the feed needs of Redis: an MGET and a subscription that can break. */
export interface FeedConnection {
  mGet(keys: string[]): Promise<(string | null)[]>;
  /** Set when the subscription is lost: the feed reconnects. */
  readonly broken: Error | null;
  close(): void;
}

/** Opens a connection whose subscription to `channel` hands each message to `onMessage`
 * and calls `onBroken` when it is lost. */
export type FeedConnector = (
  channel: string,
  onMessage: (message: string) => void,
  onBroken: () => void,
) => Promise<FeedConnection>;

function newClient(url: string) {
  const client = createClient({
    url,
    disableOfflineQueue: true,
    socket: { connectTimeout: OP_TIMEOUT_MS, reconnectStrategy: false },
  });
  // Without a listener an error event would crash the host; the feed sees the failure
  // through the next command, or the subscriber's end.
  client.on("error", () => undefined);
  return client;
}

/** The feed's connection to a real Redis: a client for MGET, a second one subscribed. */
export function redisConnector(url: string): FeedConnector {
  return async (channel, onMessage, onBroken) => {
    const client = newClient(url);
    const subscriber = newClient(url);
    let broken: Error | null = null;
    const breaks = (error: Error) => {
      broken ??= error;
      onBroken();
    };
    const close = () => {
      subscriber.removeAllListeners("end");
      subscriber.destroy();
      client.destroy();
    };
    subscriber.on("error", breaks);
    subscriber.on("end", () => breaks(new Error("the subscription closed")));
    try {
      await withTimeout(client.connect(), OP_TIMEOUT_MS * 2, "connecting to Redis");
      await withTimeout(subscriber.connect(), OP_TIMEOUT_MS * 2, "connecting to Redis");
      await withTimeout(subscriber.subscribe(channel, onMessage), OP_TIMEOUT_MS, "SUBSCRIBE");
    } catch (error) {
      close();
      throw error;
    }
    return {
      async mGet(keys: string[]): Promise<(string | null)[]> {
        const values = await withTimeout(client.mGet(keys), OP_TIMEOUT_MS, "MGET");
        return values.map((v) => (v == null ? null : String(v)));
      },
      get broken() {
        return broken;
      },
      close,
    };
  };
}

/** Every router's policy from one Redis, in one loop (see the module comment). */
export class RedisPolicyFeed implements FeedDriver {
  private readonly caches = new Map<string, PolicyCache[]>();
  /** goals attached since the last read */
  private unread = new Set<string>();
  /** goals of this process announced since the last read */
  private announced = new Set<string>();
  private readonly wakeup = new Wakeup();
  private running: { done: Promise<void>; stopper: AbortController } | null = null;
  private readonly channel: string;
  /** what the loop did, for tests */
  messages = 0;
  reads = 0;
  connections = 0;

  constructor(
    readonly keyPrefix: string,
    private readonly connector: FeedConnector,
    private readonly onIdle: (feed: RedisPolicyFeed) => void = () => undefined,
  ) {
    this.channel = `${keyPrefix}:policy-changes`;
  }

  /** How many goals it serves. */
  get goals(): number {
    return this.caches.size;
  }

  attach(cache: PolicyCache): void {
    const group = this.caches.get(cache.goal);
    if (group === undefined) this.caches.set(cache.goal, [cache]);
    else group.push(cache);
    this.unread.add(cache.goal);
    if (this.running === null) {
      const stopper = new AbortController();
      this.running = { done: this.run(stopper.signal), stopper };
    }
    this.wakeup.poke();
  }

  async detach(cache: PolicyCache): Promise<void> {
    const group = this.caches.get(cache.goal) ?? [];
    const at = group.indexOf(cache);
    if (at >= 0) group.splice(at, 1);
    if (group.length === 0) this.caches.delete(cache.goal);
    const running = this.running;
    if (this.caches.size > 0 || running === null) return;
    this.running = null;
    this.onIdle(this);
    running.stopper.abort();
    await running.done;
  }

  private announce(message: string): void {
    this.messages += 1;
    let mine = false;
    for (const goal of message.split("\n")) {
      if (this.caches.has(goal)) {
        this.announced.add(goal);
        mine = true;
      }
    }
    if (mine) this.wakeup.poke();
  }

  /** The shortest poll interval of the routers now, and when the first policy must be
   * compiled again. */
  private schedule(): { poll: number; due: number } {
    let poll = Number.POSITIVE_INFINITY;
    let due = Number.POSITIVE_INFINITY;
    for (const group of this.caches.values()) {
      for (const cache of group) {
        poll = Math.min(poll, cache.options.pollIntervalMs);
        due = Math.min(due, cache.dueAt);
      }
    }
    return { poll: Number.isFinite(poll) ? poll : 1000, due };
  }

  private async run(signal: AbortSignal): Promise<void> {
    let backoff = 100;
    let lastPoll = Number.NEGATIVE_INFINITY; // read every goal at once on the first pass
    let connection: FeedConnection | null = null;
    while (!signal.aborted) {
      try {
        if (connection === null) {
          connection = await this.connector(
            this.channel,
            (message) => this.announce(message),
            () => this.wakeup.poke(),
          );
          this.connections += 1;
        }
        // Taken before the read: a goal announced while it runs is read again after it.
        const now = performance.now();
        const { poll } = this.schedule();
        let due: Set<string>;
        if (now >= lastPoll + poll) {
          due = new Set(this.caches.keys());
          lastPoll = now;
        } else {
          due = new Set([...this.unread, ...this.announced].filter((goal) => this.caches.has(goal)));
        }
        this.unread = new Set();
        this.announced = new Set();
        if (due.size > 0) await this.read(connection, [...due]);
        this.recompileDue();
        if (connection.broken !== null) throw connection.broken;
        backoff = 100;
        const { poll: interval, due: compileAt } = this.schedule();
        const next = Math.min(lastPoll + interval, compileAt);
        await this.wakeup.wait(Math.max(0, next - performance.now()), signal);
        if (connection.broken !== null) throw connection.broken;
      } catch (error) {
        // Redis down, DNS, auth: keep the last policies, retry
        connection?.close();
        connection = null;
        for (const group of this.caches.values()) for (const cache of group) cache.failed(error);
        for (const goal of this.caches.keys()) this.unread.add(goal);
        const due = this.schedule().due - performance.now();
        await pause(Math.max(0, Math.min(backoff, due)), signal);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        lastPoll = Number.NEGATIVE_INFINITY;
      }
    }
    connection?.close();
  }

  /** One MGET per batch of goals; each goal's snapshot and overrides to its caches. */
  private async read(connection: FeedConnection, goals: string[]): Promise<void> {
    const prefix = this.keyPrefix;
    for (let start = 0; start < goals.length; start += BATCH) {
      const batch = goals.slice(start, start + BATCH);
      const keys = batch.flatMap((goal) => [`${prefix}:policy:${goal}`, `${prefix}:overrides:${goal}`]);
      const values = await connection.mGet(keys);
      this.reads += 1;
      batch.forEach((goal, k) => {
        const raw = values[2 * k] ?? null;
        const overrides = values[2 * k + 1] ?? null;
        for (const cache of this.caches.get(goal) ?? []) {
          try {
            cache.apply(raw, overrides);
          } catch (error) {
            // one router's bug must not starve the others
            cache.logger.error(`applying the policy of goal ${goal} failed: ${String(error)}`);
          }
        }
      });
    }
  }

  private recompileDue(): void {
    const now = performance.now();
    for (const group of this.caches.values()) {
      for (const cache of group) if (now >= cache.dueAt) cache.recompileIfDue();
    }
  }
}

/**
 * The process's shared feeds, one per (Redis URL, key prefix). A feed leaves when its last
 * router closes.
 */
class FeedRegistry {
  private readonly feeds = new Map<string, RedisPolicyFeed>();

  feed(url: string, keyPrefix: string): RedisPolicyFeed {
    const key = JSON.stringify([url, keyPrefix]);
    let feed = this.feeds.get(key);
    if (feed === undefined) {
      const made = new RedisPolicyFeed(keyPrefix, redisConnector(url), (idle) => {
        if (this.feeds.get(key) === idle) this.feeds.delete(key);
      });
      this.feeds.set(key, made);
      feed = made;
    }
    return feed;
  }
}

const REGISTRY = new FeedRegistry();

/** The process's feed of the Redis at `url` under `keyPrefix`. */
export function sharedFeed(url: string, keyPrefix: string): RedisPolicyFeed {
  return REGISTRY.feed(url, keyPrefix);
}
