/** Value objects for the Router's rarer knobs: the event emitter and the policy cache. */

import { checkKeys, checkNumber } from "./validate.js";
import { ArgumentError } from "./errors.js";

/**
 * How events leave the process.
 *
 * `maxQueuedEvents` bounds the local buffer: while Kafka is away, events wait there and are
 * delivered when it returns. When it is full, new events are dropped and counted (sending
 * never blocks the event loop). Events not delivered within `deliveryTimeoutMs` are counted
 * as failed. Delivery is at least once: a retried batch can duplicate events, which the
 * pipeline drops by event_id.
 */
export interface EmitterOptions {
  readonly maxQueuedEvents: number;
  readonly lingerMs: number;
  /** At most this many events per produce request. */
  readonly maxBatchEvents: number;
  readonly deliveryTimeoutMs: number;
  /** "none" or "gzip" (the codecs KafkaJS carries without extra packages). */
  readonly compression: "none" | "gzip";
}

export const DEFAULT_EMITTER: EmitterOptions = Object.freeze({
  maxQueuedEvents: 100_000,
  lingerMs: 5,
  maxBatchEvents: 10_000,
  deliveryTimeoutMs: 300_000,
  compression: "none",
});

export function emitterOptions(given: Partial<EmitterOptions> = {}): EmitterOptions {
  checkKeys("emitter", given, Object.keys(DEFAULT_EMITTER));
  const o = { ...DEFAULT_EMITTER, ...given };
  checkNumber("emitter.maxQueuedEvents", o.maxQueuedEvents, { integer: true, positive: true });
  checkNumber("emitter.lingerMs", o.lingerMs, { min: 0 });
  checkNumber("emitter.maxBatchEvents", o.maxBatchEvents, { integer: true, positive: true });
  checkNumber("emitter.deliveryTimeoutMs", o.deliveryTimeoutMs, { positive: true });
  if (o.compression !== "none" && o.compression !== "gzip") {
    throw new ArgumentError(`emitter.compression must be "none" or "gzip", got ${String(o.compression)}`);
  }
  return Object.freeze(o);
}

/**
 * How the policy snapshot is kept fresh.
 *
 * `await router.start()` waits at most `initWaitMs` for a first snapshot; until one is loaded
 * `decide()` falls back to the first path. Updates arrive by pub/sub; `pollIntervalMs` is the
 * safety net. When Redis cannot be read for `maxStalenessMs` the policy is reported stale (it
 * is still used).
 */
export interface CacheOptions {
  readonly initWaitMs: number;
  readonly pollIntervalMs: number;
  readonly maxStalenessMs: number;
}

export const DEFAULT_CACHE: CacheOptions = Object.freeze({
  initWaitMs: 500,
  pollIntervalMs: 1000,
  maxStalenessMs: 60_000,
});

export function cacheOptions(given: Partial<CacheOptions> = {}): CacheOptions {
  checkKeys("cache", given, Object.keys(DEFAULT_CACHE));
  const o = { ...DEFAULT_CACHE, ...given };
  checkNumber("cache.initWaitMs", o.initWaitMs, { min: 0 });
  checkNumber("cache.pollIntervalMs", o.pollIntervalMs, { positive: true });
  checkNumber("cache.maxStalenessMs", o.maxStalenessMs, { positive: true });
  return Object.freeze(o);
}
