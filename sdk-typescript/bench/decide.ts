/**
 * The TypeScript SDK's benchmark.
 *
 *     npm run bench                                      # decide() latency only
 *     ../.venv/bin/python bench/run.py [--broker kafka]  # and events/s into a fresh broker
 *
 * decide() p50/p99 with 2, 10 and 50 paths (a cached snapshot, every path warm, events
 * discarded) against, in the same run, a plain Thompson pick: a textbook Beta draw per path
 * (Marsaglia-Tsang gamma variates) and the largest wins. With OUTROUTE_BOOTSTRAP_SERVERS set:
 * decide() + report() events/s into the broker, every event delivered, against raw KafkaJS
 * sendBatch of the same pre-encoded events. Prints one JSON object.
 */

import { Kafka, logLevel } from "kafkajs";

import { Router, silentLogger } from "../src/index.js";
import { partitionOf } from "../src/murmur2.js";
import { Rng } from "../src/random.js";
import { betaVariate } from "../src/sampling.js";
import { NullSink, StaticSnapshotSource } from "../src/testing.js";

const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 200_000);
const EVENTS_LOOP = Number(process.env.BENCH_LOOP ?? 100_000);

function snapshot(goal: string, paths: string[]): string {
  const rng = new Rng(1);
  const body: Record<string, object> = {};
  for (const p of paths) {
    const n = 200 + Math.floor(rng.random() * 1800);
    const rate = 0.6 + rng.random() * 0.37;
    body[p] = {
      alpha: 1 + n * rate, beta: 1 + n * (1 - rate), n, recent_n: 50, recent_successes: 50 * rate,
      baseline_rate: rate, mean_cost_usd: 0.001 + rng.random() * 0.009, mean_latency_ms: 200 + rng.random() * 800,
      last_outcome_at: new Date().toISOString(), status: "healthy",
    };
  }
  return JSON.stringify({ goal, version: 1, generated_at: new Date().toISOString(), paths: body });
}

function percentiles(samples: Float64Array): { p50: number; p99: number; p999: number; mean: number } {
  const sorted = Float64Array.from(samples).sort();
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return { p50: round(at(0.5)), p99: round(at(0.99)), p999: round(at(0.999)), mean: round(mean) };
}

/** Microseconds per call of `fn`, each call timed on its own. */
function time(fn: () => unknown, n: number): Float64Array {
  for (let i = 0; i < Math.min(20_000, n); i++) fn(); // warm up (JIT)
  const samples = new Float64Array(n);
  const now = process.hrtime.bigint;
  for (let i = 0; i < n; i++) {
    const t0 = now();
    fn();
    samples[i] = Number(now() - t0) / 1000;
  }
  return samples;
}

async function decideLatency(count: number) {
  const paths = Array.from({ length: count }, (_, i) => `path-${i}`);
  const source = new StaticSnapshotSource(snapshot("bench", paths));
  const router = new Router({ goal: "bench", paths, eventSink: new NullSink(), snapshotSource: source, logger: silentLogger, seed: 1 });
  await router.start(5000);
  if (router.stats().policyVersion !== 1) throw new Error("the snapshot did not load");
  const outroute = percentiles(time(() => router.decide(), ITERATIONS));
  // The baseline: the same posteriors, a textbook Beta draw per path, the largest wins.
  const arms = router.getPolicy().paths.map((p) => [p.alpha, p.beta] as const);
  const rng = new Rng(2);
  const plain = percentiles(
    time(() => {
      let best = -1;
      let winner = 0;
      for (let i = 0; i < arms.length; i++) {
        const d = betaVariate(rng, arms[i]![0], arms[i]![1]);
        if (d > best) {
          best = d;
          winner = i;
        }
      }
      return winner;
    }, ITERATIONS),
  );
  await router.close(100);
  return { paths: count, outroute, plainThompson: plain, p50Ratio: Math.round((outroute.p50 / plain.p50) * 1000) / 1000 };
}

async function emission(bootstrap: string, prefix: string) {
  const paths = Array.from({ length: 10 }, (_, i) => `path-${i}`);
  const router = new Router({
    goal: "bench-emit", paths, connection: { bootstrapServers: bootstrap, topicPrefix: prefix },
    snapshotSource: new StaticSnapshotSource(snapshot("bench-emit", paths)), logger: silentLogger, seed: 3,
  });
  await router.start(5000);
  // Warm the connection and the JIT; not counted.
  for (let i = 0; i < 2000; i++) router.decide().report(true, { latencyMs: 100 });
  if ((await router.flush(30_000)) !== 0) throw new Error("warm-up not delivered");
  const before = router.stats();
  const started = performance.now();
  let callerUs = 0;
  for (let done = 0; done < EVENTS_LOOP; ) {
    const t0 = performance.now();
    for (let i = 0; i < 1000 && done < EVENTS_LOOP; i++, done++) router.decide().report(i % 10 !== 0, { latencyMs: 120 });
    callerUs += (performance.now() - t0) * 1000;
    // A service yields to the event loop between requests; here once per 1,000.
    await new Promise((r) => setImmediate(r));
    while (router.stats().pending > 50_000) await new Promise((r) => setTimeout(r, 1));
  }
  const pending = await router.flush(120_000);
  const seconds = (performance.now() - started) / 1000;
  const after = router.stats();
  await router.close(5000);
  const produced = after.emitted - before.emitted;
  const delivered = after.delivered - before.delivered;

  // Raw: the same number of pre-encoded events, sent by a plain KafkaJS producer.
  const kafka = new Kafka({ clientId: "bench-raw", brokers: bootstrap.split(","), logLevel: logLevel.NOTHING });
  const producer = kafka.producer({
    allowAutoTopicCreation: false,
    createPartitioner: () => (args) => partitionOf(args.message.key as string, args.partitionMetadata.length),
  });
  await producer.connect();
  const value = '{"schema_version":1,"event_id":"0123456789ab-1.o","trace_id":"0123456789ab-1","success":true,"score":null,"cost_usd":null,"latency_ms":120,"failure_category":null,"prompt_tokens":null,"completion_tokens":null,"source":"sdk","occurred_at":"2026-12-05T19:00:00.000000Z"}';
  const messages = Array.from({ length: 10_000 }, (_, i) => ({ key: `0123456789ab-${i.toString(16)}`, value }));
  const rawStarted = performance.now();
  for (let sent = 0; sent < produced; sent += messages.length) {
    await producer.sendBatch({ topicMessages: [{ topic: `${prefix}.outcomes`, messages: messages.slice(0, Math.min(messages.length, produced - sent)) }], acks: -1 });
  }
  const rawSeconds = (performance.now() - rawStarted) / 1000;
  await producer.disconnect();
  const eventsPerSecond = Math.round(produced / seconds);
  const rawPerSecond = Math.round(produced / rawSeconds);
  return {
    iterations: EVENTS_LOOP,
    produced,
    delivered,
    pending,
    dropped: after.dropped - before.dropped,
    failed: after.failed - before.failed,
    eventsPerSecond,
    callerUsPerDecideReport: Math.round((callerUs / EVENTS_LOOP) * 1000) / 1000,
    rawSendBatchEventsPerSecond: rawPerSecond,
    ratioToRaw: Math.round((eventsPerSecond / rawPerSecond) * 1000) / 1000,
  };
}

const latency = [];
for (const count of [2, 10, 50]) latency.push(await decideLatency(count));
const bootstrap = process.env.OUTROUTE_BOOTSTRAP_SERVERS;
const result: Record<string, unknown> = { node: process.version, iterations: ITERATIONS, decide: latency };
if (bootstrap) result.emission = await emission(bootstrap, process.env.OUTROUTE_TOPIC_PREFIX ?? "outroute");
process.stdout.write(`${JSON.stringify(result)}\n`);
