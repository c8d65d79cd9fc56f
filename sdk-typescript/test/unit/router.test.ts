/** The Router's rules, events and concurrency, with in-memory stand-ins for Kafka and Redis. */

import assert from "node:assert/strict";
import { Agent, createServer, get as httpGet } from "node:http";
import { setImmediate as nextTurn } from "node:timers/promises";
import { after, test } from "node:test";

import {
  ArgumentError,
  connectionFromEnv,
  NoCurrentDecision,
  Router,
  silentLogger,
  type RouterOptions,
  type SnapshotSource,
} from "../../src/index.js";
import { InMemorySink, StaticSnapshotSource, UnavailableSnapshotSource } from "../../src/testing.js";
import { schemaValidators, snapshot, waitUntil } from "../support/helpers.js";

const schemas = schemaValidators();
const routers: Router[] = [];
after(async () => {
  for (const r of routers) await r.close(100);
});

function make(options: Partial<RouterOptions> & { source?: SnapshotSource | null } = {}): [Router, InMemorySink] {
  const sink = new InMemorySink();
  const { source, ...rest } = options;
  const router = new Router({
    goal: "summarize",
    paths: ["a", "b", "c"],
    eventSink: sink,
    snapshotSource: source === undefined ? new StaticSnapshotSource(null) : (source ?? undefined),
    logger: silentLogger,
    seed: 7,
    ...rest,
  });
  routers.push(router);
  return [router, sink];
}

function reasons(router: Router, n: number): Map<string, number> {
  const seen = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const d = router.decide();
    const key = `${d.path}:${d.reason}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  return seen;
}

test("no snapshot ever loaded: the first path, reason fallback", async () => {
  const [router, sink] = make({ source: new UnavailableSnapshotSource() });
  await router.start(1000);
  assert.deepEqual([...reasons(router, 50)], [["a:fallback", 50]]);
  assert.equal(router.stats().policyLoaded, false);
  assert.ok(router.stats().policyErrors >= 1);
  assert.equal(sink.decisions.length, 50);
});

test("a decision before the first snapshot arrives is a fallback, never a wait", () => {
  const [router] = make({ source: new StaticSnapshotSource(snapshot("summarize", 1, { b: { alpha: 90, beta: 2, n: 100 } })) });
  const d = router.decide();
  assert.deepEqual([d.path, d.reason, d.policyVersion], ["a", "fallback", null]);
});

test("every path cold: uniform, reason cold_start", async () => {
  const [router] = make();
  await router.start();
  const seen = reasons(router, 3000);
  assert.deepEqual([...seen.keys()].sort(), ["a:cold_start", "b:cold_start", "c:cold_start"]);
  // Binomial(3000, 1/3): sd = 25.8; 5 sd either side.
  for (const count of seen.values()) assert.ok(Math.abs(count - 1000) < 130, `count ${count}`);
});

test("forcePath wins over everything; an unknown one is an ArgumentError naming it", async () => {
  const [router, sink] = make();
  await router.start();
  const d = router.decide({ forcePath: "c" });
  assert.deepEqual([d.path, d.reason], ["c", "forced"]);
  assert.throws(() => router.decide({ forcePath: "zz" }), (e: Error) => e instanceof ArgumentError && /forcePath "zz" is not one of paths a, b, c/.test(e.message));
  assert.equal(sink.decisions.length, 1);
});

test("with a snapshot the strong path wins, exploration is about the rate, versions are carried", async () => {
  const source = new StaticSnapshotSource(
    snapshot("summarize", 4, { a: { alpha: 10, beta: 90, n: 100 }, b: { alpha: 95, beta: 5, n: 100 }, c: { alpha: 50, beta: 50, n: 100 } }),
  );
  // A tie margin of 1: every path could be chosen, so every exploration draw is worth taking.
  const [router, sink] = make({ source, explorationRate: 0.2, tieMargin: 1 });
  await router.start();
  const n = 5000;
  const seen = reasons(router, n);
  const explored = [...seen].filter(([k]) => k.endsWith(":explore")).reduce((s, [, v]) => s + v, 0);
  // Binomial(5000, 0.2): sd = 28.3; 5 sd.
  assert.ok(Math.abs(explored - 1000) < 142, `explored ${explored}`);
  assert.ok((seen.get("b:exploit") ?? 0) > 0.78 * n, JSON.stringify([...seen]));
  assert.equal(seen.get("b:explore"), undefined, "exploration never picks the Thompson winner");
  assert.equal(sink.decisions[0]!.policy_version, 4);
});

test("the trust invariant: cost breaks ties within the margin only", async () => {
  const snap = snapshot("summarize", 1, {
    a: { alpha: 950, beta: 50, n: 1000, mean_cost_usd: 0.03 },
    b: { alpha: 940, beta: 60, n: 1000, mean_cost_usd: 0.001 },
    c: { alpha: 850, beta: 150, n: 1000, mean_cost_usd: 0.0001 },
  });
  const [router] = make({ source: new StaticSnapshotSource(snap), explorationRate: 0 });
  await router.start();
  const seen = reasons(router, 2000);
  // a and b are within 5 points: the cheaper b wins; c is cheaper still but 10 points worse.
  assert.equal(seen.get("b:exploit"), 2000, JSON.stringify([...seen]));
});

test("a degrading path gets only recovery probes", async () => {
  const snap = snapshot("summarize", 1, {
    a: { alpha: 80, beta: 20, n: 100 },
    b: { alpha: 3, beta: 40, n: 200, status: "degrading" },
    c: { alpha: 70, beta: 30, n: 100 },
  });
  const [router] = make({ source: new StaticSnapshotSource(snap), explorationRate: 0.1, recoveryProbeRate: 0.02 });
  await router.start();
  const seen = reasons(router, 20000);
  // The alert is seen at decision 0: decision d probes with 0.02 + 0.01 * 0.5^(d / 200), in
  // all 400 + 0.01 * 200 / ln 2 = 402.9 expected probes, sd <= 20; 5 sd.
  assert.ok(Math.abs((seen.get("b:explore") ?? 0) - 402.9) < 100, JSON.stringify([...seen]));
  assert.equal(seen.get("b:exploit") ?? 0, 0);
});

test("recovery probes start when the router first sees the alert and halve with its decisions", async () => {
  const healthy = { a: { alpha: 80, beta: 20, n: 100 }, b: { alpha: 75, beta: 25, n: 100 }, c: { alpha: 70, beta: 30, n: 100 } };
  const source = new StaticSnapshotSource(snapshot("summarize", 1, healthy));
  const [router] = make({
    source,
    explorationRate: 0.1,
    recoveryProbeRate: 0,
    probeStart: 0.5,
    probeHalfLife: 100,
    cache: { pollIntervalMs: 20 },
  });
  await router.start();
  reasons(router, 1000);
  const alerted = { ...healthy, b: { alpha: 3, beta: 40, n: 200, status: "degrading" as const } };
  source.set(snapshot("summarize", 2, alerted));
  assert.ok(await waitUntil(() => router.stats().policyVersion === 2));
  assert.equal(router.getPolicy().paths[1]!.status, "degrading");
  // Seen at decision 1000: over the next 100, sum of 0.5 * 0.5^(age / 100) = 36.1 expected
  // probes (sd 4.7). Had the clock started at 0, the rate would be under 0.0005.
  const early = reasons(router, 100).get("b:explore") ?? 0;
  assert.ok(early > 12 && early < 60, `early probes ${early}`);
  reasons(router, 1900);
  // A new snapshot with the same alert keeps its clock: 20 half-lives on, about no probes.
  source.set(snapshot("summarize", 3, alerted));
  assert.ok(await waitUntil(() => router.stats().policyVersion === 3));
  const late = reasons(router, 1000);
  assert.equal(late.get("b:explore") ?? 0, 0, JSON.stringify([...late]));
  assert.equal(late.get("b:exploit") ?? 0, 0);
});

test("exploration takes the other path whose draw came second, not a uniform pick", async () => {
  // Every decision explores; a wins the Thompson round and b's draw is far above c's, so every
  // one goes to b (a uniform pick would send half of them to c). A tie margin of 0.2 puts b's
  // draws (0.80) within reach of the tie set (0.95 less 0.2).
  const snap = snapshot("summarize", 1, {
    a: { alpha: 950, beta: 50, n: 1000 },
    b: { alpha: 800, beta: 200, n: 1000 },
    c: { alpha: 200, beta: 800, n: 1000 },
  });
  const [router] = make({ source: new StaticSnapshotSource(snap), explorationRate: 1, tieMargin: 0.2 });
  await router.start();
  const seen = reasons(router, 2000);
  assert.equal(seen.get("b:explore"), 2000, JSON.stringify([...seen]));
});

test("a path known to be worse is not explored: the decision takes the winner", async () => {
  // b (0.80) and c (0.20) never draw near the tie set of a (0.95 less the default 0.05).
  const snap = snapshot("summarize", 1, {
    a: { alpha: 950, beta: 50, n: 1000 },
    b: { alpha: 800, beta: 200, n: 1000 },
    c: { alpha: 200, beta: 800, n: 1000 },
  });
  const [router] = make({ source: new StaticSnapshotSource(snap), explorationRate: 1 });
  await router.start();
  const seen = reasons(router, 2000);
  assert.equal(seen.get("a:exploit"), 2000, JSON.stringify([...seen]));
});

test("a snapshot update is picked up; a snapshot that disappears keeps the last one, stale", async () => {
  const source = new StaticSnapshotSource(snapshot("summarize", 1, { a: { alpha: 90, beta: 10, n: 100 } }));
  const [router] = make({ source, cache: { pollIntervalMs: 50 } });
  await router.start();
  assert.equal(router.stats().policyVersion, 1);
  source.set(snapshot("summarize", 2, { a: { alpha: 5, beta: 95, n: 100 }, b: { alpha: 90, beta: 10, n: 100 } }));
  assert.ok(await waitUntil(() => router.stats().policyVersion === 2));
  assert.equal(router.getPolicy().paths.find((p) => p.name === "b")!.n, 100);
  source.set(null);
  assert.ok(await waitUntil(() => router.stats().policyStale));
  assert.equal(router.stats().policyVersion, 2);
  assert.equal(router.decide().policyVersion, 2);
});

test("an invalid snapshot is ignored, counted, and the last one stays", async () => {
  const source = new StaticSnapshotSource(snapshot("summarize", 3, { a: { alpha: 90, beta: 10, n: 100 } }));
  const [router] = make({ source, cache: { pollIntervalMs: 50 } });
  await router.start();
  source.set(JSON.stringify({ goal: "summarize", version: 4, generated_at: "yesterday", paths: {} }));
  // @ts-expect-error reaching into the cache's counter for the test
  assert.ok(await waitUntil(() => router.cache.invalidSnapshots === 1));
  assert.equal(router.stats().policyVersion, 3);
  source.set(snapshot("other-goal", 5, {}));
  // @ts-expect-error as above
  assert.ok(await waitUntil(() => router.cache.invalidSnapshots === 2));
  assert.equal(router.stats().policyVersion, 3);
});

test("Redis away: the last policy is used and marked stale after maxStalenessMs", async () => {
  let down = false;
  const inner = new StaticSnapshotSource(snapshot("summarize", 9, { a: { alpha: 90, beta: 10, n: 100 } }));
  const source: SnapshotSource = {
    fetch: () => (down ? Promise.reject(new Error("connection refused")) : inner.fetch()),
    waitForUpdate: (ms, signal) => inner.waitForUpdate(ms, signal),
    close: () => inner.close(),
  };
  const [router] = make({ source, cache: { pollIntervalMs: 20, maxStalenessMs: 200 } });
  await router.start();
  assert.equal(router.stats().policyStale, false);
  down = true;
  assert.ok(await waitUntil(() => router.stats().policyStale));
  assert.ok(router.stats().policyErrors >= 1);
  const d = router.decide();
  assert.equal(d.policyVersion, 9);
  assert.notEqual(d.reason, "fallback");
  down = false;
  assert.ok(await waitUntil(() => !router.stats().policyStale));
});

test("events are the JSON the exported schemas describe, keyed by trace id", async () => {
  const [router, sink] = make({ service: "checkout-api" });
  await router.start();
  const d = router.decide({ context: { tenant: "acme", tier: 2, beta: true, ratio: 0.5 } });
  assert.equal(d.report(true, { score: 0.75, costUsd: 0.002, latencyMs: 840, promptTokens: 12, completionTokens: 30 }), true);
  const d2 = router.decide();
  d2.report(false, { failureCategory: "timeout" });
  for (const e of sink.decisions) schemas.decision(e);
  for (const e of sink.outcomes) schemas.outcome(e);
  const [decision] = sink.decisions;
  assert.deepEqual(
    { ...decision, decided_at: undefined, event_id: undefined, trace_id: undefined },
    {
      schema_version: 1,
      event_id: undefined,
      trace_id: undefined,
      goal: "summarize",
      path: d.path,
      candidates: ["a", "b", "c"],
      reason: "cold_start",
      policy_version: null,
      context: { tenant: "acme", tier: 2, beta: true, ratio: 0.5 },
      decided_at: undefined,
      service: "checkout-api",
      sdk_version: "0.1.0",
    },
  );
  assert.equal(decision!.trace_id, d.traceId);
  assert.equal(decision!.event_id, `${d.traceId}.d`);
  assert.match(decision!.decided_at as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  assert.equal(Math.abs(Date.parse(decision!.decided_at as string) - Date.now()) < 60_000, true);
  assert.deepEqual(sink.raw.map((r) => r.key), [d.traceId, d.traceId, d2.traceId, d2.traceId]);
  assert.equal(sink.outcomes[1]!.failure_category, "timeout");
});

test("a second report is ignored and counted; bad report fields name the field and the rule", async () => {
  const [router, sink] = make();
  const d = router.decide();
  assert.throws(() => d.report(true, { score: 2 }), /score must be in \[0, 1\], got 2/);
  assert.throws(() => d.report(true, { latencyMs: -1 }), /latencyMs must be >= 0/);
  assert.throws(() => d.report(true, { failureCategory: "oops" as never }), /failureCategory must be one of timeout/);
  assert.throws(() => d.report(true, { latency: 3 } as never), /unknown option "latency"/);
  assert.throws(() => d.report("yes" as never), /success must be a boolean/);
  assert.equal(sink.outcomes.length, 0);
  assert.equal(d.report(true), true);
  assert.equal(d.report(false), false);
  assert.equal(d.reportedBy, "report()");
  assert.deepEqual([router.stats().reports, router.stats().duplicateReports], [1, 1]);
  assert.equal(sink.outcomes.length, 1);
});

test("bad options name the field and the rule", () => {
  const base = { goal: "g", paths: ["a"], eventSink: new InMemorySink(), snapshotSource: new StaticSnapshotSource(null) };
  const cases: [Partial<RouterOptions>, RegExp][] = [
    [{ goal: "has space" }, /goal "has space" has characters outside/],
    [{ paths: [] }, /paths must not be empty/],
    [{ paths: ["a", "a"] }, /paths must be unique; repeated: a/],
    [{ explorationRate: 1.5 }, /explorationRate must be a number in \[0, 1\], got 1.5/],
    [{ minSamples: -1 }, /minSamples must be a non-negative integer/],
    [{ tieMargin: Number.NaN }, /tieMargin must be a number in \[0, 1\]/],
    [{ probeStart: 1.5 }, /probeStart must be a number in \[0, 1\], got 1.5/],
    [{ probeHalfLife: 0 }, /probeHalfLife must be an integer >= 1 \(decisions\), got 0/],
    [{ probeHalfLife: 2.5 }, /probeHalfLife must be an integer >= 1 \(decisions\), got 2.5/],
    [{ localOutcomes: "yes" as never }, /localOutcomes must be a boolean, got yes/],
    [{ stalenessMs: 0 }, /stalenessMs must be a number > 0, got 0/],
    [{ connection: { topicPrefix: "bad prefix" } }, /connection.topicPrefix "bad prefix" is invalid/],
    [{ connection: { redisUrl: "http://x" } }, /connection.redisUrl must be a redis:\/\/ or rediss:\/\/ URL/],
    [{ connection: { bootstrapServers: "a b" } }, /connection.bootstrapServers must be host:port/],
    [{ cache: { initWaitMs: -5 } }, /cache.initWaitMs must be a number >= 0, got -5/],
    [{ emitter: { maxQueuedEvents: 0 } }, /emitter.maxQueuedEvents must be an integer > 0/],
    [{ explorationrate: 0.2 } as never, /Router: unknown option "explorationrate"/],
    [{ successOnReturn: true, successFn: () => true }, /pass successFn or successOnReturn: true, not both/],
  ];
  for (const [options, message] of cases) {
    assert.throws(() => new Router({ ...base, ...options } as RouterOptions), (e: Error) => e instanceof ArgumentError && message.test(e.message), String(message));
  }
  const router = new Router(base);
  assert.throws(() => router.decide({ context: { "bad key": 1 } }), /context key "bad key"/);
  assert.throws(() => router.decide({ context: { k: "x".repeat(300) } }), /at most 256 characters/);
  assert.throws(() => router.decide({ context: { k: {} as never } }), /must be a string, number or boolean/);
});

test("router.report() reports this async context's decision, never another's", async () => {
  const [router, sink] = make();
  await router.start();
  const expected = new Map<string, boolean>();
  await Promise.all(
    Array.from({ length: 200 }, async (_, i) => {
      await nextTurn();
      const d = router.decide();
      expected.set(d.traceId, i % 3 === 0);
      for (let k = 0; k < (i * 7) % 5; k++) await nextTurn();
      router.report(i % 3 === 0);
    }),
  );
  assert.equal(sink.outcomes.length, 200);
  for (const o of sink.outcomes) assert.equal(o.success, expected.get(o.trace_id as string));
  assert.equal(router.stats().duplicateReports, 0);
});

test("router.report() with no decision in this context is NoCurrentDecision", async () => {
  const [router] = make();
  await assert.rejects(
    (async () => {
      await nextTurn();
      router.report(true);
    })(),
    NoCurrentDecision,
  );
});

test("among offers only some paths; forcePath must be one of them", async () => {
  const [router, sink] = make({ source: new StaticSnapshotSource(snapshot("summarize", 1, { a: { alpha: 99, beta: 1, n: 100 }, b: { alpha: 50, beta: 50, n: 100 }, c: { alpha: 60, beta: 40, n: 100 } })), explorationRate: 0 });
  await router.start();
  for (let i = 0; i < 50; i++) {
    const d = router.decide({ among: ["c", "b"] });
    assert.notEqual(d.path, "a");
    assert.deepEqual(d.candidates, ["b", "c"]);
  }
  assert.deepEqual(sink.decisions[0]!.candidates, ["b", "c"]);
  assert.throws(() => router.decide({ among: ["b"], forcePath: "a" }), /forcePath "a" is not one of the paths offered \(among\) b/);
  assert.throws(() => router.decide({ among: ["z"] }), /among: "z" is not one of paths a, b, c/);
  assert.throws(() => router.decide({ among: [] }), /among must name at least one path/);
});

test("fromEnv: the OUTROUTE_* variables, and a connection given wins field by field", () => {
  const env = { OUTROUTE_BOOTSTRAP_SERVERS: "kafka:9092", OUTROUTE_TOPIC_PREFIX: "staging", OUTROUTE_REDIS_URL: "redis://r:6379/1" };
  const made = connectionFromEnv({ topicPrefix: "mine" }, env);
  assert.deepEqual([made.bootstrapServers, made.topicPrefix, made.redisUrl, made.redisKeyPrefix], ["kafka:9092", "mine", "redis://r:6379/1", "outroute"]);
  assert.throws(() => connectionFromEnv({}, { OUTROUTE_TOPIC_PREFIX: "no spaces allowed" }), /connection.topicPrefix/);
});

test("trace ids are unique and decisions never wait", () => {
  const [router] = make({ source: new UnavailableSnapshotSource() });
  const ids = new Set(Array.from({ length: 1000 }, () => router.decide().traceId));
  assert.equal(ids.size, 1000);
});

test("a sink that throws never reaches the host: decide() and report() go on, warned once", async () => {
  const warnings: string[] = [];
  const broken = new InMemorySink();
  broken.send = () => {
    throw new Error("sink bug");
  };
  const router = new Router({
    goal: "g",
    paths: ["a", "b"],
    eventSink: broken,
    snapshotSource: new StaticSnapshotSource(null),
    logger: { ...silentLogger, warn: (m) => warnings.push(m) },
  });
  routers.push(router);
  for (let i = 0; i < 5; i++) assert.equal(router.decide().report(true), true);
  assert.equal(router.stats().decisions, 5);
  assert.deepEqual(warnings.filter((w) => w.includes("sink bug")).length, 1);
});

test("requests of one keep-alive connection: scope() keeps one request's decision from the next", async () => {
  const [router, sink] = make();
  await router.start();
  const server = createServer((req, res) =>
    router.scope(async () => {
      if (req.url === "/decide") router.decide();
      await nextTurn();
      let outcome: string;
      try {
        outcome = router.report(true) ? "reported" : "duplicate";
      } catch (error) {
        outcome = (error as Error).name;
      }
      res.end(outcome);
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const port = (server.address() as { port: number }).port;
  const get = (path: string) =>
    new Promise<string>((resolve) =>
      httpGet({ host: "127.0.0.1", port, path, agent }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve(body));
      }),
    );
  const answers = [await get("/decide"), await get("/none"), await get("/decide"), await get("/none")];
  agent.destroy();
  server.close();
  assert.deepEqual(answers, ["reported", "NoCurrentDecision", "reported", "NoCurrentDecision"]);
  assert.equal(sink.outcomes.length, 2);
});

function overrides(version: number, body: { disabled?: Record<string, { until?: number }>; pinned?: { path: string; until?: number } }): string {
  const entry = (until?: number) => ({
    by: "oncall",
    at: new Date(Date.now() - 60_000).toISOString(),
    until: until === undefined ? null : new Date(until).toISOString(),
    reason: "incident 42",
  });
  return JSON.stringify({
    schema_version: 1,
    goal: "summarize",
    version,
    disabled: Object.fromEntries(Object.entries(body.disabled ?? {}).map(([p, e]) => [p, entry(e.until)])),
    pinned: body.pinned ? { path: body.pinned.path, ...entry(body.pinned.until) } : null,
  });
}

test("overrides: a disabled path is never chosen, a pin decides (reason override), forcePath wins", async () => {
  const snap = snapshot("summarize", 2, { a: { alpha: 90, beta: 10, n: 100 }, b: { alpha: 50, beta: 50, n: 100 }, c: { n: 3 } });
  const source = new StaticSnapshotSource(snap, overrides(1, { disabled: { a: {} } }));
  const [router] = make({ source, explorationRate: 0.5, cache: { pollIntervalMs: 60_000 } });
  await router.start();
  const seen = reasons(router, 2000);
  assert.equal([...seen.keys()].filter((k) => k.startsWith("a:")).length, 0, JSON.stringify([...seen]));
  const view = router.getPolicy();
  assert.equal(view.overridesVersion, 1);
  assert.deepEqual(view.paths.map((p) => p.override?.kind ?? null), ["disabled", null, null]);
  assert.equal(view.paths[0]!.override!.reason, "incident 42");
  assert.equal(view.paths[0]!.status, "healthy", "the status stays what the workers learned");

  source.setOverrides(overrides(2, { pinned: { path: "c" } }));
  assert.ok(await waitUntil(() => router.getPolicy().overridesVersion === 2));
  assert.deepEqual([...reasons(router, 100)], [["c:override", 100]]);
  assert.equal(router.decide({ forcePath: "a" }).reason, "forced");
  for (let i = 0; i < 20; i++) {
    assert.notEqual(router.decide({ among: ["a", "b"] }).reason, "override", "a pin not offered changes nothing");
  }
});

test("overrides end by themselves at their until, with no write and no poll", async () => {
  const snap = snapshot("summarize", 1, { a: { alpha: 90, beta: 10, n: 100 } });
  const until = Date.now() + 300;
  const source = new StaticSnapshotSource(snap, overrides(1, { pinned: { path: "b", until } }));
  const [router] = make({ source, explorationRate: 0, cache: { pollIntervalMs: 60_000 } });
  await router.start();
  assert.equal(router.decide().reason, "override");
  assert.ok(await waitUntil(() => router.getPolicy().overridesVersion === null));
  assert.ok(Date.now() >= until);
  assert.equal(router.decide().reason, "exploit");
});

test("overrides: every path offered disabled are used as if none were, warned once; invalid ones are ignored", async () => {
  const warnings: string[] = [];
  const snap = snapshot("summarize", 1, { a: { alpha: 90, beta: 10, n: 100 }, b: { alpha: 80, beta: 20, n: 100 } });
  const source = new StaticSnapshotSource(snap, overrides(1, { disabled: { a: {}, b: {} } }));
  const [router] = make({ source, cache: { pollIntervalMs: 50 }, logger: { ...silentLogger, warn: (m) => warnings.push(m) } });
  await router.start();
  for (let i = 0; i < 10; i++) assert.notEqual(router.decide({ among: ["a", "b"] }).reason, "override");
  assert.equal(warnings.filter((w) => w.includes("disabled by an override")).length, 1);
  source.setOverrides(JSON.stringify({ goal: "summarize", version: 3, pinned: { path: "a", by: "x", at: "now" } }));
  // @ts-expect-error reaching into the cache's counter for the test
  assert.ok(await waitUntil(() => router.cache.invalidSnapshots === 1));
  assert.equal(router.getPolicy().overridesVersion, 1, "the last valid overrides stay in use");
});

test("an override ends on time while Redis is away", async () => {
  let down = false;
  const snap = snapshot("summarize", 1, { a: { alpha: 90, beta: 10, n: 100 } });
  const inner = new StaticSnapshotSource(snap, overrides(1, { pinned: { path: "b", until: Date.now() + 400 } }));
  const source: SnapshotSource = {
    fetch: () => (down ? Promise.reject(new Error("connection refused")) : inner.fetch()),
    fetchOverrides: () => inner.fetchOverrides(),
    waitForUpdate: (ms, signal) => (down ? Promise.reject(new Error("connection refused")) : inner.waitForUpdate(ms, signal)),
    close: () => inner.close(),
  };
  const [router] = make({ source, explorationRate: 0, cache: { pollIntervalMs: 60_000 } });
  await router.start();
  assert.equal(router.decide().reason, "override");
  down = true;
  inner.set(snap); // wakes the loop, whose next read fails
  assert.ok(await waitUntil(() => router.stats().policyErrors >= 1));
  assert.ok(await waitUntil(() => router.getPolicy().overridesVersion === null));
  assert.equal(router.decide().reason, "exploit");
  assert.equal(router.stats().policyVersion, 1);
});
