/**
 * The shared policy feed (src/feed.ts) over an in-memory Redis: the routers of a process
 * share one connection; one `policy-changes` message naming several goals is read in one
 * MGET of those this process routes and reaches every router of them; the safety-net poll
 * runs at the shortest interval of the routers; an outage is survived; the connection closes
 * with the last router. (tests/integration/test_typescript_sdk.py runs it on a real Redis.)
 */

import assert from "node:assert/strict";
import { test } from "node:test";

import { PolicyCache } from "../../src/cache.js";
import { RedisPolicyFeed, sharedFeed, type FeedConnection, type FeedConnector } from "../../src/feed.js";
import { silentLogger } from "../../src/log.js";
import { cacheOptions, type CacheOptions } from "../../src/options.js";
import { samplingParams } from "../../src/sampling.js";
import { snapshot, waitUntil } from "../support/helpers.js";

/** Keys and a channel in memory; `down` makes every command and connection fail. */
class MemoryRedis {
  readonly store = new Map<string, string>();
  readonly mgets: string[][] = [];
  readonly channels: string[] = [];
  connects = 0;
  closed = 0;
  down = false;
  private listeners = new Set<(message: string) => void>();
  private current: { broken: Error | null; onBroken: () => void } | null = null;

  readonly connector: FeedConnector = async (channel, onMessage, onBroken) => {
    if (this.down) throw new Error("connection refused");
    this.connects += 1;
    this.channels.push(channel);
    this.listeners.add(onMessage);
    const state = { broken: null as Error | null, onBroken };
    this.current = state;
    const connection: FeedConnection = {
      mGet: async (keys) => {
        if (this.down) throw new Error("connection reset");
        this.mgets.push(keys);
        return keys.map((k) => this.store.get(k) ?? null);
      },
      get broken() {
        return state.broken;
      },
      close: () => {
        this.closed += 1;
        this.listeners.delete(onMessage);
      },
    };
    return connection;
  };

  publish(message: string): void {
    for (const listener of this.listeners) listener(message);
  }

  /** The subscriber's connection drops. */
  breakSubscription(): void {
    const state = this.current;
    if (state === null) return;
    state.broken = new Error("the subscription closed");
    state.onBroken();
  }
}

function cacheOf(goal: string, feed: RedisPolicyFeed, options: Partial<CacheOptions> = {}): PolicyCache {
  return new PolicyCache(
    goal,
    ["a", "b"],
    samplingParams(),
    cacheOptions({ pollIntervalMs: 60_000, ...options }),
    7 * 24 * 3600 * 1000,
    () => feed,
    silentLogger,
    () => 0,
  );
}

function write(redis: MemoryRedis, goal: string, version: number): void {
  redis.store.set(`p:policy:${goal}`, snapshot(goal, version, { a: { alpha: 90, beta: 10, n: 100 } }));
}

test("the routers of a process share one feed; one message of several goals reaches every router of them", async () => {
  const redis = new MemoryRedis();
  const feed = new RedisPolicyFeed("p", redis.connector);
  const caches = [cacheOf("g1", feed), cacheOf("g1", feed), cacheOf("g2", feed), cacheOf("g3", feed)];
  for (const cache of caches) await cache.start(1000);
  assert.ok(caches.every((c) => c.current.loaded && c.current.version === null), "each read at start");
  assert.deepEqual([redis.connects, redis.channels, feed.goals], [1, ["p:policy-changes"], 3]);

  for (const [goal, version] of [["g1", 5], ["g2", 6], ["g3", 7]] as const) write(redis, goal, version);
  redis.store.set("p:overrides:g1", JSON.stringify({ goal: "g1", version: 2, disabled: {}, pinned: { path: "b", by: "x", at: new Date().toISOString(), until: null, reason: null } }));
  const before = redis.mgets.length;
  redis.publish("g1\ng3\nsomeone-else");
  assert.ok(await waitUntil(() => caches[0]!.current.version === 5 && caches[1]!.current.version === 5 && caches[3]!.current.version === 7, 5));
  // One MGET of the snapshot and overrides of the goals announced that this process routes.
  assert.deepEqual(redis.mgets.slice(before).map((keys) => [...keys].sort()), [
    ["p:overrides:g1", "p:overrides:g3", "p:policy:g1", "p:policy:g3"],
  ]);
  assert.equal(caches[0]!.view().overridesVersion, 2);
  assert.equal(caches[2]!.current.version, null, "g2 was not announced (and the poll is a minute away)");
  assert.equal(feed.messages, 1);

  for (const cache of caches.slice(0, 3)) await cache.stop();
  assert.equal(redis.closed, 0, "a router left: the connection stays");
  await caches[3]!.stop();
  assert.deepEqual([redis.closed, feed.goals], [1, 0]);
});

test("the safety-net poll reads every goal at the shortest poll interval of its routers", async () => {
  const redis = new MemoryRedis();
  const feed = new RedisPolicyFeed("p", redis.connector);
  const slow = cacheOf("slow", feed);
  const fast = cacheOf("fast", feed, { pollIntervalMs: 30 });
  await slow.start(1000);
  await fast.start(1000);
  write(redis, "slow", 3); // never announced
  assert.ok(await waitUntil(() => slow.current.version === 3, 5));
  await slow.stop();
  await fast.stop();
});

test("Redis away: every router keeps its policy and counts the error; back, the feed reconnects", async () => {
  const redis = new MemoryRedis();
  const feed = new RedisPolicyFeed("p", redis.connector);
  const caches = [cacheOf("g1", feed, { pollIntervalMs: 20 }), cacheOf("g2", feed, { pollIntervalMs: 20 })];
  write(redis, "g1", 1);
  write(redis, "g2", 1);
  for (const cache of caches) await cache.start(1000);
  assert.ok(caches.every((c) => c.current.version === 1));
  redis.down = true;
  assert.ok(await waitUntil(() => caches.every((c) => c.errors >= 1), 5));
  assert.ok(caches.every((c) => c.current.version === 1), "the last policy stays in use");
  write(redis, "g1", 2);
  redis.down = false;
  assert.ok(await waitUntil(() => caches[0]!.current.version === 2, 5));
  assert.equal(redis.connects, 2);
  // A subscription that drops is opened again, and the feed reads every goal then.
  write(redis, "g2", 3);
  redis.breakSubscription();
  assert.ok(await waitUntil(() => redis.connects === 3 && caches[1]!.current.version === 3, 5));
  for (const cache of caches) await cache.stop();
  assert.equal(redis.closed, 3);
});

test("one shared feed per Redis URL and key prefix", () => {
  const feed = sharedFeed("redis://127.0.0.1:1/0", "one");
  assert.equal(sharedFeed("redis://127.0.0.1:1/0", "one"), feed);
  assert.notEqual(sharedFeed("redis://127.0.0.1:1/0", "two"), feed);
  assert.notEqual(sharedFeed("redis://127.0.0.1:2/0", "one"), feed);
});
