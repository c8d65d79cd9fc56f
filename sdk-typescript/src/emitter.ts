/**
 * Event emission: the EventSink interface and its Kafka implementation.
 *
 * `KafkaEventSink` wraps one KafkaJS producer, created on the first event (no sockets in
 * constructors). `send()` never blocks and never awaits: it appends to a bounded queue; when
 * the queue is full the event is dropped and counted. A drain loop sends the queue in batches
 * (one produce request per batch, acks from all in-sync replicas); while Kafka is away the
 * batch goes back to the head of the queue and is retried with backoff, so the broker down and
 * back delivers what waited. Keys are trace ids, hashed with murmur2 as the Python producer
 * does.
 */

import { CompressionTypes, Kafka, logLevel, type KafkaConfig, type Producer } from "kafkajs";

import type { Logger } from "./log.js";
import { partitionOf } from "./murmur2.js";
import { DEFAULT_EMITTER, type EmitterOptions } from "./options.js";

export type EventKind = "decision" | "outcome";

/**
 * `emitted` events were accepted into the queue; of those, `delivered` reached Kafka, `failed`
 * could not be delivered, `pending` are still on their way. `dropped` never entered the queue
 * (it was full, or the sink was closed).
 */
export interface EmitterStats {
  readonly emitted: number;
  readonly delivered: number;
  readonly pending: number;
  readonly dropped: number;
  readonly failed: number;
}

/** Where a router's events go. `send` must never block. */
export interface EventSink {
  /** Queue one event (key: the trace id; value: its JSON); false if it was dropped. */
  send(kind: EventKind, key: string, value: string): boolean;
  /** Wait up to `timeoutMs` for queued events; resolve to how many are still pending. */
  flush(timeoutMs?: number): Promise<number>;
  /** Flush, then release resources; resolve to how many events were left undelivered. */
  close(timeoutMs?: number): Promise<number>;
  stats(): EmitterStats;
}

interface Queued {
  readonly topic: string;
  readonly key: string;
  readonly value: string;
  readonly at: number;
}

const MAX_BACKOFF_MS = 1000;
const ERROR_LOG_INTERVAL_MS = 60_000;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

export interface KafkaSinkSettings {
  readonly bootstrapServers: string;
  readonly topicPrefix: string;
  /** KafkaJS client settings passed through (ssl, sasl, clientId, timeouts). */
  readonly kafkaConfig?: Partial<Omit<KafkaConfig, "brokers" | "logCreator">>;
  readonly options?: EmitterOptions;
  readonly logger: Logger;
}

/** Decisions and outcomes to their Kafka topics, keyed by trace id. */
export class KafkaEventSink implements EventSink {
  private readonly topics: Record<EventKind, string>;
  private readonly options: EmitterOptions;
  private readonly logger: Logger;
  private readonly kafka: Kafka;
  private producer: Producer | null = null;
  private queue: Queued[] = [];
  private head = 0;
  private inFlight = 0;
  private draining = false;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private emitted = 0;
  private delivered = 0;
  private dropped = 0;
  private failed = 0;
  private warnedFull = false;
  private lastErrorLog = -ERROR_LOG_INTERVAL_MS;
  private failing = false;

  constructor(settings: KafkaSinkSettings) {
    this.topics = {
      decision: `${settings.topicPrefix}.decisions`,
      outcome: `${settings.topicPrefix}.outcomes`,
    };
    this.options = settings.options ?? DEFAULT_EMITTER;
    this.logger = settings.logger;
    const logger = this.logger;
    this.kafka = new Kafka({
      clientId: "outroute-sdk",
      connectionTimeout: 3000,
      requestTimeout: 10_000,
      retry: { initialRetryTime: 100, maxRetryTime: MAX_BACKOFF_MS, retries: 3 },
      ...settings.kafkaConfig,
      brokers: settings.bootstrapServers.split(",").map((s) => s.trim()),
      // KafkaJS logs every reconnect attempt; those go to debug. What users need to know
      // (Kafka unreachable, events waiting) is logged here, once a minute at most.
      logLevel: logLevel.ERROR,
      logCreator:
        () =>
        ({ namespace, log }) =>
          logger.debug(`kafkajs ${namespace}: ${log.message}`),
    });
  }

  send(kind: EventKind, key: string, value: string): boolean {
    if (this.closed) {
      this.dropped += 1;
      return false;
    }
    if (this.queue.length - this.head >= this.options.maxQueuedEvents) {
      this.dropped += 1;
      if (!this.warnedFull) {
        this.warnedFull = true;
        this.logger.warn(
          `event queue full (${this.options.maxQueuedEvents} events): dropping events until ` +
            "Kafka catches up; drops are counted in stats()",
        );
      }
      return false;
    }
    this.queue.push({ topic: this.topics[kind], key, value, at: Date.now() });
    this.emitted += 1;
    if (!this.draining && this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        void this.drain();
      }, this.options.lingerMs);
      this.timer.unref();
    }
    return true;
  }

  private queued(): number {
    return this.queue.length - this.head;
  }

  private take(max: number): Queued[] {
    const end = Math.min(this.queue.length, this.head + max);
    const batch = this.queue.slice(this.head, end);
    this.head = end;
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return batch;
  }

  private putBack(batch: Queued[]): void {
    const now = Date.now();
    const keep = batch.filter((e) => now - e.at < this.options.deliveryTimeoutMs);
    const expired = batch.length - keep.length;
    if (expired > 0) {
      this.failed += expired;
      this.logger.error(
        `${expired} events not delivered within ${this.options.deliveryTimeoutMs} ms; ` +
          "counted as failed in stats()",
      );
    }
    this.queue = keep.concat(this.queue.slice(this.head));
    this.head = 0;
  }

  private async connected(): Promise<Producer> {
    if (this.producer !== null) return this.producer;
    const producer = this.kafka.producer({
      allowAutoTopicCreation: false,
      createPartitioner: () => (args) =>
        partitionOf(args.message.key as string, args.partitionMetadata.length),
    });
    await producer.connect();
    this.producer = producer;
    return producer;
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    let backoff = 100;
    try {
      while (this.queued() > 0) {
        const batch = this.take(this.options.maxBatchEvents);
        this.inFlight = batch.length;
        try {
          const producer = await this.connected();
          const byTopic = new Map<string, { key: string; value: string }[]>();
          for (const e of batch) {
            let messages = byTopic.get(e.topic);
            if (messages === undefined) byTopic.set(e.topic, (messages = []));
            messages.push({ key: e.key, value: e.value });
          }
          await producer.sendBatch({
            topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
            acks: -1,
            compression:
              this.options.compression === "gzip" ? CompressionTypes.GZIP : CompressionTypes.None,
          });
          this.inFlight = 0;
          this.delivered += batch.length;
          backoff = 100;
          if (this.failing) {
            this.failing = false;
            this.logger.warn("kafka is reachable again; queued events are being delivered");
          }
        } catch (error) {
          this.inFlight = 0;
          this.putBack(batch);
          this.reportError(error);
          await this.resetProducer();
          if (this.closed && this.stopping) return;
          await sleep(backoff);
          backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
        }
      }
    } finally {
      this.draining = false;
    }
  }

  private stopping = false;

  private reportError(error: unknown): void {
    this.failing = true;
    const now = Date.now();
    if (now - this.lastErrorLog >= ERROR_LOG_INTERVAL_MS) {
      this.lastErrorLog = now;
      const message = error instanceof Error ? error.message : String(error);
      this.logger.warn(`kafka: ${message}; events wait in the queue and are retried`);
    }
  }

  private async resetProducer(): Promise<void> {
    const producer = this.producer;
    this.producer = null;
    if (producer !== null) {
      await Promise.race([producer.disconnect().catch(() => undefined), sleep(1000)]);
    }
  }

  async flush(timeoutMs = 5000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    void this.drain();
    while (this.pending() > 0 && Date.now() < deadline) {
      await sleep(Math.min(5, Math.max(0, deadline - Date.now())));
      if (!this.draining && this.queued() > 0) void this.drain();
    }
    return this.pending();
  }

  async close(timeoutMs = 5000): Promise<number> {
    if (this.closed && this.stopping) return this.pending();
    const pending = await this.flush(timeoutMs);
    this.closed = true;
    this.stopping = true;
    await this.resetProducer();
    return pending;
  }

  private pending(): number {
    return this.queued() + this.inFlight;
  }

  stats(): EmitterStats {
    return {
      emitted: this.emitted,
      delivered: this.delivered,
      pending: this.pending(),
      dropped: this.dropped,
      failed: this.failed,
    };
  }

  toString(): string {
    return `KafkaEventSink(topics=${this.topics.decision},${this.topics.outcome})`;
  }
}
