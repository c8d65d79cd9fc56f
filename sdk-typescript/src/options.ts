/** Value objects for the Router's rarer knobs: the event emitter and the policy cache. */

import type { KafkaConfig } from "kafkajs";

import { ArgumentError } from "./errors.js";
import { checkKeys, checkNumber, checkPrefix, show } from "./validate.js";

/**
 * Where Kafka and Redis are, and how topics and keys are named (the Python SDK's
 * `ConnectionOptions`). Building one reads no environment variable: `connectionFromEnv()`
 * does.
 */
export interface ConnectionOptions {
  /** Kafka bootstrap servers, comma separated. */
  readonly bootstrapServers: string;
  /** KafkaJS client settings passed through (ssl, sasl, clientId, timeouts). */
  readonly kafkaConfig: Readonly<Partial<Omit<KafkaConfig, "brokers" | "logCreator">>>;
  readonly redisUrl: string;
  readonly topicPrefix: string;
  readonly redisKeyPrefix: string;
}

export const DEFAULT_CONNECTION: ConnectionOptions = Object.freeze({
  bootstrapServers: "127.0.0.1:9092",
  kafkaConfig: Object.freeze({}),
  redisUrl: "redis://127.0.0.1:6379/0",
  topicPrefix: "outroute",
  redisKeyPrefix: "outroute",
});

export function connectionOptions(given: Partial<ConnectionOptions> = {}): ConnectionOptions {
  checkKeys("connection", given, Object.keys(DEFAULT_CONNECTION));
  const o = { ...DEFAULT_CONNECTION, ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) };
  if (typeof o.bootstrapServers !== "string" || !/^[^\s,]+(,[^\s,]+)*$/.test(o.bootstrapServers)) {
    throw new ArgumentError(
      `connection.bootstrapServers must be host:port[,host:port...], got ${show(o.bootstrapServers)}`,
    );
  }
  if (typeof o.redisUrl !== "string" || !/^rediss?:\/\/[^\s]+$/.test(o.redisUrl)) {
    throw new ArgumentError("connection.redisUrl must be a redis:// or rediss:// URL");
  }
  checkPrefix("connection.topicPrefix", o.topicPrefix);
  checkPrefix("connection.redisKeyPrefix", o.redisKeyPrefix);
  if (typeof o.kafkaConfig !== "object" || o.kafkaConfig === null) {
    throw new ArgumentError(`connection.kafkaConfig must be an object, got ${show(o.kafkaConfig)}`);
  }
  return Object.freeze(o as ConnectionOptions);
}

/**
 * Connection options from `OUTROUTE_BOOTSTRAP_SERVERS`, `OUTROUTE_REDIS_URL`,
 * `OUTROUTE_TOPIC_PREFIX` and `OUTROUTE_REDIS_KEY_PREFIX`; `overrides` win over them.
 */
export function connectionFromEnv(
  overrides: Partial<ConnectionOptions> = {},
  env: NodeJS.ProcessEnv = process.env,
): ConnectionOptions {
  const fromEnv: { -readonly [K in keyof ConnectionOptions]?: ConnectionOptions[K] } = {};
  if (env.OUTROUTE_BOOTSTRAP_SERVERS) fromEnv.bootstrapServers = env.OUTROUTE_BOOTSTRAP_SERVERS;
  if (env.OUTROUTE_REDIS_URL) fromEnv.redisUrl = env.OUTROUTE_REDIS_URL;
  if (env.OUTROUTE_TOPIC_PREFIX) fromEnv.topicPrefix = env.OUTROUTE_TOPIC_PREFIX;
  if (env.OUTROUTE_REDIS_KEY_PREFIX) fromEnv.redisKeyPrefix = env.OUTROUTE_REDIS_KEY_PREFIX;
  return connectionOptions({ ...fromEnv, ...overrides });
}

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
 * safety net (the process's shared feed polls every goal at the shortest interval of its
 * routers). When Redis cannot be read for `maxStalenessMs` the policy is reported stale (it
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
