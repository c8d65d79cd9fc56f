/** The Kafka sink's queue when no broker answers: bounded, drops counted, flush bounded. */

import assert from "node:assert/strict";
import { createServer } from "node:net";
import { test } from "node:test";

import { KafkaEventSink, Router, silentLogger } from "../../src/index.js";
import { StaticSnapshotSource } from "../../src/testing.js";

/** A port on loopback where nothing listens (taken, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test("with no broker, events wait in a bounded queue; beyond it they are dropped and counted", async () => {
  const port = await closedPort();
  const warnings: string[] = [];
  const sink = new KafkaEventSink({
    bootstrapServers: `127.0.0.1:${port}`,
    topicPrefix: "t",
    options: { maxQueuedEvents: 100, lingerMs: 1, maxBatchEvents: 10, deliveryTimeoutMs: 300_000, compression: "none" },
    logger: { ...silentLogger, warn: (m) => warnings.push(m) },
  });
  const router = new Router({
    goal: "g",
    paths: ["a", "b"],
    eventSink: sink,
    snapshotSource: new StaticSnapshotSource(null),
    logger: silentLogger,
  });
  for (let i = 0; i < 80; i++) router.decide().report(true);
  const stats = router.stats();
  assert.deepEqual([stats.decisions, stats.emitted, stats.dropped, stats.delivered], [80, 100, 60, 0]);
  assert.equal(stats.pending, 100);
  assert.equal(warnings.filter((w) => w.includes("event queue full")).length, 1, "warned once");
  assert.equal(await router.flush(50), 100, "flush returns what is still pending");
  assert.equal(await router.close(50), 100);
  assert.equal(await sink.close(50), 100, "the events left undelivered");
  assert.equal(sink.send("decision", "k", "{}"), false, "a closed sink drops");
});
